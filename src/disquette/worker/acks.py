"""The ack batcher: records job outcomes (acks with results, nacks, failures) in batches,
and keeps track of the deliveries whose leases were lost."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Iterable, Sequence
from typing import Any, Final

from ..errors import (
    BodyNotSerializable,
    BodyTooLarge,
    InvalidState,
    JobNotFound,
    LeaseLost,
    StoreUnavailable,
)
from ..job import Job, JobState
from .handlers import log_extras
from .state import EngineState

logger: Final = logging.getLogger("disquette.worker")

#: While jobs run, acks wait up to ACK_DELAY seconds to be sent ACK_BATCH at a time.
ACK_BATCH: Final = 64
ACK_DELAY: Final = 0.001


class AckBatcher:
    """Outcomes waiting to be sent, and the loop that sends them (``flush_flag`` wakes it).

    Acks, nacks and failures belong to the delivery the worker got: the store refuses
    those of a redelivered job with :class:`LeaseLost`; each such delivery is counted and
    logged once, and nothing more is sent for it.
    """

    def __init__(self, state: EngineState) -> None:
        self.state = state
        #: Jobs done, with their handler's result (None: no result), acked in batches.
        self.to_ack: list[tuple[Job, Any]] = []
        self.to_fail: collections.deque[tuple[Job, str]] = collections.deque()
        self.to_nack: list[Job] = []
        #: Jobs whose handler stopped on a cancel request: they end ``cancelled``.
        self.to_cancel: list[Job] = []
        #: Deliveries (job id, attempts) the store said were redelivered: their outcome
        #: is not sent, and each is logged once.
        self.lost: set[tuple[str, int]] = set()
        self.closing = False
        #: When the oldest ack in ``to_ack`` was queued (loop time): it waits ACK_DELAY
        #: from then, not from when the loop below woke up (see :meth:`_linger`).
        self._oldest = 0.0

    def ack(self, job: Job, result: Any) -> None:
        """Queue an ack of ``job`` with its handler's result."""
        if not self.to_ack:
            self._oldest = self.state.loop.time()
        self.to_ack.append((job, result))
        self.state.flush_flag.set_in_loop()

    def nack(self, jobs: Iterable[Job]) -> None:
        """Queue jobs to give back."""
        self.to_nack.extend(jobs)
        self.state.flush_flag.set_in_loop()

    def cancelled(self, job: Job) -> None:
        """Queue the end of ``job`` as cancelled (its cancel was requested)."""
        self.to_cancel.append(job)
        self.state.flush_flag.set_in_loop()

    def fail(self, job: Job, text: str) -> None:
        """Queue a failure of ``job`` (``text``: its ``last_error``)."""
        self.to_fail.append((job, text))
        self.state.flush_flag.set_in_loop()

    def close(self) -> None:
        """Send what is left, then end the loop."""
        self.closing = True
        self.state.flush_flag.set_in_loop()

    def pending(self) -> bool:
        """Whether outcomes wait to be sent."""
        return bool(self.to_ack or self.to_fail or self.to_nack or self.to_cancel)

    async def run(self) -> None:
        """Send outcomes as they come, until closed and nothing is left."""
        state = self.state
        failures = 0
        while True:
            await state.flush_flag.wait(None)
            await self._linger()
            sending = self.pending()
            try:
                await self.flush()
            except StoreUnavailable as exc:
                failures += 1
                pause = min(0.1 * 2**failures, 5.0)
                logger.warning("cannot record job outcomes (%s); retrying in %.1fs", exc, pause)
                if self.closing and failures >= 5:
                    logger.error("giving up: their leases will redeliver the unrecorded jobs")
                    return
                await asyncio.sleep(pause)
                state.flush_flag.set_in_loop()
                continue
            failures = 0
            if sending and state.drained:
                # Finished jobs did not wake the fetcher (drained): with their outcomes
                # sent, a queue's concurrency limit may have room again.
                state.fetch_flag.set_in_loop()
            if self.closing and not self.pending():
                return

    async def flush(self) -> None:
        """Send every queued outcome. On a store error, what was not sent stays queued."""
        client = self.state.client
        if self.lost:
            # Delivered again: their outcome is the newer delivery's to record.
            self.to_ack = [(job, value) for job, value in self.to_ack if self._held(job)]
            self.to_nack = [job for job in self.to_nack if self._held(job)]
            self.to_fail = collections.deque(item for item in self.to_fail if self._held(item[0]))
            self.to_cancel = [job for job in self.to_cancel if self._held(job)]
        if self.to_nack:
            jobs, self.to_nack = self.to_nack, []
            try:
                await client.nack_many(jobs)
            except LeaseLost as exc:
                self.lease_lost(exc)  # the others were given back
            except BaseException:
                self.to_nack[:0] = jobs
                raise
        if self.to_ack:
            done, self.to_ack = self.to_ack, []
            try:
                await self._send_acks(done)
            except BaseException:
                self.to_ack[:0] = done  # acking again a job already acked does nothing
                raise
        await self._send_cancels()
        while self.to_fail:
            job, text = self.to_fail[0]
            try:
                current = await client.fail(job, text)
            except JobNotFound:
                logger.warning("job %s was deleted while it ran", job.id, extra=log_extras(job))
            except LeaseLost as exc:
                self.lease_lost(exc)
            else:
                self._log_failure(current)
            self.to_fail.popleft()

    async def _linger(self) -> None:
        """Before a flush: while jobs run, let more outcomes come (one store call for many
        is cheaper), up to ACK_DELAY; with none running, let the fetcher about to claim
        take the acks along (take_acks)."""
        state = self.state
        if state.running and not self.closing and len(self.to_ack) < ACK_BATCH:
            await asyncio.sleep(ACK_DELAY)
            # Meanwhile the fetcher may have taken the acks waited for with its claim: those
            # queued since wait their own ACK_DELAY (they may ride along with the next
            # claim too), rather than going alone in a store call of a few.
            while (
                self.to_ack
                and state.running
                and not self.closing
                and len(self.to_ack) < ACK_BATCH
                and not (self.to_nack or self.to_fail or self.to_cancel)
            ):
                left = self._oldest + ACK_DELAY - state.loop.time()
                if left <= 0:
                    break
                await asyncio.sleep(left)
        elif self.to_ack and not self.closing and state.claim_room() > 0:
            await asyncio.sleep(0)

    def take_acks(self) -> list[tuple[Job, Any]]:
        """Hand the acks waiting to be sent to the fetcher, which sends them with its claim
        (:meth:`send_with_claim`); those of deliveries known lost are dropped."""
        done, self.to_ack = self.to_ack, []
        if self.lost:
            done = [item for item in done if self._held(item[0])]
        return done

    async def send_with_claim(
        self, done: list[tuple[Job, Any]], queues: Sequence[str], count: int
    ) -> list[Job] | None:
        """Ack ``done`` and claim up to ``count`` jobs in one store call; return the jobs
        claimed. None, claiming nothing, when a result cannot be stored: the acks go back
        to the queue, where :meth:`flush` fails that job alone. On a store error they go
        back too, and the error is raised."""
        jobs = [job for job, _ in done]
        try:
            claimed, lost = await self.state.client.ack_many_and_get(
                jobs, [result for _, result in done], *queues, count=count
            )
        except (BodyNotSerializable, BodyTooLarge):
            self.to_ack[:0] = done
            self.state.flush_flag.set_in_loop()
            return None
        except BaseException:
            self.to_ack[:0] = done  # acking again a job already acked does nothing
            self.state.flush_flag.set_in_loop()
            raise
        if lost is not None:
            self.lease_lost(lost)
        return claimed

    async def _send_cancels(self) -> None:
        """End the jobs stopped on a cancel request as cancelled, one store call each."""
        while self.to_cancel:
            job = self.to_cancel[0]
            try:
                await self.state.client.ack_cancelled(job)
            except LeaseLost as exc:
                self.lease_lost(exc)
            except (JobNotFound, InvalidState) as exc:
                logger.warning("job %s: %s", job.id, exc, extra=log_extras(job))
            else:
                logger.info("job %s (%s) cancelled", job.id, job.type, extra=log_extras(job))
            del self.to_cancel[0]

    async def _send_acks(self, done: list[tuple[Job, Any]]) -> None:
        """Ack jobs and keep their results, in one store call. When a store error
        interrupts, ``done`` holds the jobs not yet handled (the caller puts them back)."""
        client = self.state.client
        try:
            await client.ack_many([job for job, _ in done], [result for _, result in done])
        except LeaseLost as exc:
            self.lease_lost(exc)  # the others were acked
        except (BodyNotSerializable, BodyTooLarge):
            # A result that cannot be stored fails its own job only: ack one by one.
            while done:
                job, result = done[0]
                try:
                    await client.ack(job, result)
                except (BodyNotSerializable, BodyTooLarge) as exc:
                    self.to_fail.append((job, f"the handler's result cannot be stored: {exc}"))
                except JobNotFound:
                    logger.warning("job %s was deleted while it ran", job.id, extra=log_extras(job))
                except LeaseLost as exc:
                    self.lease_lost(exc)
                del done[0]

    def _held(self, job: Job) -> bool:
        """Whether this delivery of the job was not refused as redelivered."""
        return (job.id, job.attempts) not in self.lost

    def lease_lost(self, error: LeaseLost) -> None:
        """The store refused calls of deliveries that were redelivered: count and log each
        once, and drop anything still to be sent for them."""
        for lost in error.lost:
            delivery = (lost.job_id, lost.attempt)
            if delivery in self.lost:
                continue
            self.lost.add(delivery)
            self.state.worker.leases_lost += 1
            logger.warning(
                "job %s: this worker's delivery (attempt %d) lost its lease; the job is on "
                "attempt %d (%s) and is left to it",
                lost.job_id,
                lost.attempt,
                lost.current_attempt,
                lost.state,
                extra={"job_id": lost.job_id, "attempt": lost.attempt},
            )

    def _log_failure(self, job: Job) -> None:
        if job.state is JobState.FAILED:
            logger.error(
                "job %s (%s) failed for good after %d error(s)",
                job.id,
                job.type,
                job.error_count,
                extra=log_extras(job),
            )
        elif job.state in (JobState.SCHEDULED, JobState.QUEUED):
            delay = max(0.0, job.run_at - self.state.client.store.clock.now())
            logger.info(
                "job %s (%s) will be retried in %.1fs (error %d of at most %d)",
                job.id,
                job.type,
                delay,
                job.error_count,
                job.max_attempts,
                extra=log_extras(job),
            )
