"""The engine: one run of a worker (claims, dispatches, records outcomes, heartbeats,
shuts down)."""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from typing import TYPE_CHECKING, Any, Final

from .._async.client import AsyncClient
from .._concurrency import AsyncSignal
from ..errors import (
    BodyNotSerializable,
    BodyTooLarge,
    HandlerTimeout,
    InvalidState,
    JobNotFound,
    LeaseLost,
    StoreUnavailable,
    UnknownJobType,
)
from ..job import Job, JobState
from .handlers import HandlerThreads, InFlight, Outcome, describe_exception, log_extras
from .registry import HandlerSpec

if TYPE_CHECKING:
    from .worker import Worker

logger: Final = logging.getLogger("disquette.worker")

#: Without an explicit ``prefetch``, buffer about this much work, and at most this many.
BUFFER_SECONDS: Final = 0.1
DEFAULT_MAX_PREFETCH: Final = 100
#: While jobs run, acks wait up to ACK_DELAY seconds to be sent ACK_BATCH at a time.
ACK_BATCH: Final = 64
ACK_DELAY: Final = 0.001
#: How often the watchdog looks at leases and exec deadlines while jobs are held.
_TICK: Final = 0.05
_IDLE_TICK: Final = 0.5


class Engine:
    """One run of a worker: claims, dispatches, records outcomes, heartbeats, shuts down."""

    def __init__(self, worker: Worker, client: AsyncClient) -> None:
        self.loop = asyncio.get_running_loop()
        self.worker = worker
        self.client = client
        self.claimer = client.timeout(0)
        self.queues = worker.queues
        self.registry = worker.registry
        self.concurrency = worker.concurrency
        # How many jobs to keep buffered: fixed, or adapted to the pace (see _adapt).
        self.adaptive = worker.prefetch is None
        self.max_buffer = DEFAULT_MAX_PREFETCH if worker.prefetch is None else worker.prefetch
        self.buffer_target = min(self.max_buffer, self.concurrency)
        if not self.adaptive:
            self.buffer_target = self.max_buffer
        self.finished = 0
        self.pace = 0.0  # jobs finished per second, smoothed
        self._paced_at = (time.monotonic(), 0)
        self.poll_interval = worker.poll_interval or client.store.poll_interval
        self.buffer: collections.deque[InFlight] = collections.deque()
        self.running: set[InFlight] = set()
        #: Jobs done, with their handler's result (None: no result), acked in batches.
        self.to_ack: list[tuple[Job, Any]] = []
        self.to_fail: collections.deque[tuple[Job, str]] = collections.deque()
        self.to_nack: list[Job] = []
        #: Deliveries (job id, attempts) the store said were redelivered: their outcome
        #: is not sent, and each is logged once.
        self.lost: set[tuple[str, int]] = set()
        self.fetch_flag = AsyncSignal()
        self.flush_flag = AsyncSignal()
        self.changed = AsyncSignal()
        self.stop_flag = AsyncSignal()
        self.watch_flag = AsyncSignal()
        self.watch_idle = False
        self.threads = HandlerThreads(self.loop, self.concurrency, self._deliver)
        self.stopping = False
        self.force = False
        self.closing = False
        self.grace = worker.grace

    # -- control ---------------------------------------------------------------------

    def request_stop(self, force: bool = False, grace: float | None = None) -> None:
        """First call: graceful. A forced call (or a second request): NACK running jobs."""
        if grace is not None:
            self.grace = grace
        if self.stopping and not force:
            force = True
        if force:
            self.force = True
            self.changed.set_in_loop()
        if not self.stopping:
            logger.info("worker stopping: finishing running jobs (grace %gs)", self.grace)
        elif force:
            logger.warning("worker stopping now: running jobs are given back")
        self.stopping = True
        self.stop_flag.set_in_loop()
        self.fetch_flag.set_in_loop()

    async def run(self) -> None:
        tasks = [
            asyncio.create_task(self._fetch_loop(), name="disquette-fetch"),
            asyncio.create_task(self._flush_loop(), name="disquette-flush"),
            asyncio.create_task(self._watch_loop(), name="disquette-watch"),
        ]
        fetcher, flusher, _ = tasks
        stop = asyncio.create_task(self.stop_flag.wait(None))
        try:
            await asyncio.wait([*tasks, stop], return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                if task.done() and task.exception() is not None:
                    self.request_stop(force=True)
            self.stopping = True
            self.fetch_flag.set_in_loop()
            await asyncio.wait([fetcher])
            await self._drain_running()
            self.closing = True
            self.flush_flag.set_in_loop()
            await asyncio.wait([flusher])
        finally:
            stop.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, stop, return_exceptions=True)
            self.threads.close()
        for task in tasks:
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise error

    async def _drain_running(self) -> None:
        """Stop: NACK the buffer, wait for running jobs (up to grace), then give them back."""
        self._give_back_buffer()
        deadline = self.loop.time() + self.grace
        while self.running and not self.force:
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                break
            await self.changed.wait(remaining)
        if not self.running:
            return
        logger.warning("giving back %d running job(s)", len(self.running))
        tasks = []
        for item in list(self.running):
            if item.task is not None:
                item.task.cancel()
                tasks.append(item.task)
            else:
                self.threads.abandon(item)
                self._finish(item, Outcome("cancelled"))
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        for item in list(self.running):  # an async handler that ignored its cancellation
            item.abandoned = True
            self._finish(item, Outcome("cancelled"))

    def _give_back_buffer(self) -> None:
        if self.buffer:
            logger.info("giving back %d prefetched job(s)", len(self.buffer))
            self.to_nack.extend(item.job for item in self.buffer)
            self.buffer.clear()
            self.flush_flag.set_in_loop()

    # -- claiming and dispatching -----------------------------------------------------

    async def _fetch_loop(self) -> None:
        # Subscribe before the first claim, so an add between a claim and the wait wakes us.
        unsubscribe = self.client.store.wakeups.subscribe(self.queues, self.fetch_flag.set)
        failures = 0
        try:
            while not self.stopping:
                target = self.buffer_target
                room = self.concurrency + target - len(self.buffer) - len(self.running)
                # Claim once the buffer is half empty: claims come in batches.
                if room <= 0 or len(self.buffer) > target // 2:
                    await self.fetch_flag.wait(None)
                    continue
                try:
                    jobs = await self.claimer.get_many(*self.queues, count=room)
                except StoreUnavailable as exc:
                    failures += 1
                    pause = min(0.1 * 2**failures, 5.0)
                    logger.warning("cannot claim jobs (%s); retrying in %.1fs", exc, pause)
                    await self.fetch_flag.wait(pause)
                    continue
                failures = 0
                if jobs:
                    self._accept(jobs)
                else:
                    await self.fetch_flag.wait(self.poll_interval)
        finally:
            unsubscribe()

    def _accept(self, jobs: list[Job]) -> None:
        if self.watch_idle:  # from a long idle tick to short busy ones
            self._paced_at = (time.monotonic(), self.finished)
            self.watch_flag.set_in_loop()
        for job in jobs:
            item = InFlight(job, self.registry.resolve(job.type, job.queue))
            if len(self.running) < self.concurrency and not self.stopping:
                self._start(item)
            else:
                self.buffer.append(item)
        if self.stopping:
            self._give_back_buffer()

    def _start(self, item: InFlight) -> None:
        self.running.add(item)
        item.started = time.monotonic()
        spec = item.spec
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("job %s started", item.job.id, extra=log_extras(item.job))
        if spec is None:
            error = UnknownJobType(item.job.type, sorted(self.registry))
            logger.error(
                "%s: job %s in queue %r",
                error,
                item.job.id,
                item.job.queue,
                extra=log_extras(item.job),
            )
            self._finish(item, Outcome("error", error))
        elif spec.is_async:
            item.task = self.loop.create_task(self._run_async(item, spec))
        else:
            timeout = spec.exec_timeout or self.worker.exec_timeout
            if timeout is not None:
                item.deadline = item.started + timeout
            self.threads.submit(item)

    async def _run_async(self, item: InFlight, spec: HandlerSpec) -> None:
        timeout = spec.exec_timeout or self.worker.exec_timeout
        scope = asyncio.timeout(timeout)
        try:
            async with scope:
                result = await spec.function(item.job)
        except asyncio.CancelledError:
            self._finish(item, Outcome("cancelled"))
            return
        except Exception as exc:
            if scope.expired():
                self._finish(item, Outcome("timeout", timeout))
            else:
                self._finish(item, Outcome("error", exc))
            return
        self._finish(item, Outcome("ok", result))

    def _deliver(self, done: list[tuple[InFlight, Outcome]]) -> None:
        for item, outcome in done:
            self._finish(item, outcome)

    def _finish(self, item: InFlight, outcome: Outcome) -> None:
        if item.finished:
            return
        item.finished = True
        self.running.discard(item)
        job = item.job
        duration = time.monotonic() - item.started
        if outcome.kind == "ok":
            self.worker.processed += 1
            self.to_ack.append((job, outcome.value))
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("job %s done", job.id, extra=log_extras(job, duration))
        elif outcome.kind == "cancelled":
            self.to_nack.append(job)
        else:
            self.worker.errors += 1
            if outcome.kind == "timeout":
                error: BaseException = HandlerTimeout(job.type, outcome.value)
                text = str(error)
            else:
                error = outcome.value
                text = describe_exception(error)
            self.to_fail.append((job, text))
            if not isinstance(error, UnknownJobType):
                logger.warning(
                    "job %s (%s, attempt %d) raised %s: %s",
                    job.id,
                    job.type,
                    job.attempts,
                    type(error).__name__,
                    error,
                    extra=log_extras(job, duration),
                )
        self.flush_flag.set_in_loop()
        self.changed.set_in_loop()
        while self.buffer and len(self.running) < self.concurrency and not self.stopping:
            self._start(self.buffer.popleft())
        self.finished += 1
        if len(self.buffer) <= self.buffer_target // 2 and not self.stopping:
            self.fetch_flag.set_in_loop()

    # -- recording outcomes ------------------------------------------------------------

    def _pending(self) -> bool:
        return bool(self.to_ack or self.to_fail or self.to_nack)

    async def _flush_loop(self) -> None:
        failures = 0
        while True:
            await self.flush_flag.wait(None)
            if self.running and not self.closing and len(self.to_ack) < ACK_BATCH:
                # More jobs are about to finish: one store call for many acks is cheaper.
                await asyncio.sleep(ACK_DELAY)
            try:
                await self._flush()
            except StoreUnavailable as exc:
                failures += 1
                pause = min(0.1 * 2**failures, 5.0)
                logger.warning("cannot record job outcomes (%s); retrying in %.1fs", exc, pause)
                if self.closing and failures >= 5:
                    logger.error("giving up: their leases will redeliver the unrecorded jobs")
                    return
                await asyncio.sleep(pause)
                self.flush_flag.set_in_loop()
                continue
            failures = 0
            if self.closing and not self._pending():
                return

    async def _flush(self) -> None:
        if self.lost:
            # Delivered again: their outcome is the newer delivery's to record.
            self.to_ack = [(job, value) for job, value in self.to_ack if self._held(job)]
            self.to_nack = [job for job in self.to_nack if self._held(job)]
            self.to_fail = collections.deque(item for item in self.to_fail if self._held(item[0]))
        if self.to_nack:
            jobs, self.to_nack = self.to_nack, []
            try:
                await self.client.nack_many(jobs)
            except LeaseLost as exc:
                self._lease_lost(exc)  # the others were given back
            except BaseException:
                self.to_nack[:0] = jobs
                raise
        if self.to_ack:
            done, self.to_ack = self.to_ack, []
            try:
                await self._ack(done)
            except BaseException:
                self.to_ack[:0] = done  # acking again a job already acked does nothing
                raise
        while self.to_fail:
            job, text = self.to_fail[0]
            try:
                current = await self.client.fail(job, text)
            except JobNotFound:
                logger.warning("job %s was deleted while it ran", job.id, extra=log_extras(job))
            except LeaseLost as exc:
                self._lease_lost(exc)
            else:
                self._log_failure(current)
            self.to_fail.popleft()

    async def _ack(self, done: list[tuple[Job, Any]]) -> None:
        """Ack jobs and keep their results, in one store call. When a store error
        interrupts, ``done`` holds the jobs not yet handled (the caller puts them back)."""
        try:
            await self.client.ack_many([job for job, _ in done], [result for _, result in done])
        except LeaseLost as exc:
            self._lease_lost(exc)  # the others were acked
        except (BodyNotSerializable, BodyTooLarge):
            # A result that cannot be stored fails its own job only: ack one by one.
            while done:
                job, result = done[0]
                try:
                    await self.client.ack(job, result)
                except (BodyNotSerializable, BodyTooLarge) as exc:
                    self.to_fail.append((job, f"the handler's result cannot be stored: {exc}"))
                except JobNotFound:
                    logger.warning("job %s was deleted while it ran", job.id, extra=log_extras(job))
                except LeaseLost as exc:
                    self._lease_lost(exc)
                del done[0]

    def _held(self, job: Job) -> bool:
        """Whether this delivery of the job was not refused as redelivered."""
        return (job.id, job.attempts) not in self.lost

    def _lease_lost(self, error: LeaseLost) -> None:
        """The store refused calls of deliveries that were redelivered: count and log each
        once, and drop anything still to be sent for them."""
        for lost in error.lost:
            delivery = (lost.job_id, lost.attempt)
            if delivery in self.lost:
                continue
            self.lost.add(delivery)
            self.worker.leases_lost += 1
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
            delay = max(0.0, job.run_at - self.client.store.clock.now())
            logger.info(
                "job %s (%s) will be retried in %.1fs (error %d of at most %d)",
                job.id,
                job.type,
                delay,
                job.error_count,
                job.max_attempts,
                extra=log_extras(job),
            )

    # -- heartbeats, exec timeouts, parent watch ---------------------------------------

    async def _watch_loop(self) -> None:
        while True:
            self.watch_idle = not (self.running or self.buffer)
            await self.watch_flag.wait(_IDLE_TICK if self.watch_idle else _TICK)
            self.watch_idle = False
            parent = self.worker.parent_pid
            if parent is not None and os.getppid() != parent and not self.stopping:
                logger.warning("the supervisor (pid %d) is gone: stopping", parent)
                self.request_stop()
            self._adapt()
            self._check_deadlines()
            await self._heartbeat()

    def _adapt(self) -> None:
        """Follow the pace jobs finish at; buffer about BUFFER_SECONDS of it."""
        now = time.monotonic()
        since, finished_then = self._paced_at
        if now - since < _TICK:
            return
        self._paced_at = (now, self.finished)
        sample = (self.finished - finished_then) / (now - since)
        self.pace = 0.5 * self.pace + 0.5 * sample
        if self.adaptive:
            self.buffer_target = min(self.max_buffer, int(self.pace * BUFFER_SECONDS))

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for item in list(self.running):
            if item.deadline is None or now < item.deadline or item.finished:
                continue
            assert item.spec is not None
            self.threads.abandon(item)
            logger.error(
                "job %s: sync handler %r passed its exec timeout; its thread is abandoned",
                item.job.id,
                item.spec.name,
                extra=log_extras(item.job, now - item.started),
            )
            self._finish(item, Outcome("timeout", item.deadline - item.started))
            self.worker.abandoned += 1
            if self.worker.replace_on_abandon and not self.stopping:
                logger.warning("stopping so that this process is replaced")
                self.worker.replace_requested = True
                self.request_stop()

    async def _heartbeat(self) -> None:
        now = self.client.store.clock.now()
        for item in [*self.running, *self.buffer]:
            job = item.job
            if item.finished or job.lease_until is None or job.retry_after <= 0:
                continue
            if now < job.lease_until - job.retry_after / 2:
                continue
            try:
                job.lease_until = await self.client.working(job)
            except LeaseLost as exc:
                job.lease_until = None
                self._lease_lost(exc)
            except (InvalidState, JobNotFound) as exc:
                job.lease_until = None
                logger.warning("job %s lost its lease: %s", job.id, exc, extra=log_extras(job))
            except StoreUnavailable as exc:
                logger.warning("cannot extend the lease of job %s: %s", job.id, exc)
                return
            else:
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("job %s lease extended", job.id, extra=log_extras(job))
