"""The engine: one run of a worker. It starts jobs, runs their handlers and takes their
outcomes, and stops; its roles do the rest (:class:`Fetcher`, :class:`AckBatcher`,
:class:`Watchdog`, :class:`Heartbeat`, sharing one :class:`EngineState`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Final

from .. import metrics, tracing
from .._concurrency import AsyncSignal
from ..client_async import AsyncClient
from ..errors import HandlerTimeout, UnknownJobType
from ..job import Job
from .acks import AckBatcher
from .fetcher import Fetcher
from .handlers import HandlerThreads, InFlight, Outcome, describe_exception, log_extras
from .heartbeat import Heartbeat
from .presence import Presence
from .registry import HandlerSpec
from .scheduler import Scheduler
from .state import EngineState
from .watchdog import Watchdog

if TYPE_CHECKING:
    from .worker import Worker

logger: Final = logging.getLogger("disquette.worker")


class Engine:
    """One run of a worker: claims, dispatches, records outcomes, heartbeats, shuts down."""

    def __init__(self, worker: Worker, client: AsyncClient) -> None:
        self.state = state = EngineState(worker, client)
        self.loop = state.loop
        self.worker = worker
        self.stop_flag = AsyncSignal()
        self.grace = worker.grace
        self.threads = HandlerThreads(self.loop, state.concurrency, self._deliver)
        self.acks = AckBatcher(state)
        self.fetcher = Fetcher(state, self.acks, self._start)
        self.heartbeat = Heartbeat(state, self.acks, self._cancel_requested)
        self.watchdog = Watchdog(
            state,
            fetcher=self.fetcher,
            heartbeat=self.heartbeat,
            threads=self.threads,
            finish=self._finish,
            request_stop=self.request_stop,
        )
        #: The worker registry and rollups (issue 14).
        self.presence = Presence(state)
        schedules = state.registry.schedules if worker.schedules else []
        #: Fires the app's periodic jobs (every worker does: the store keeps one per slot).
        self.scheduler = Scheduler(client, schedules) if schedules else None

    # -- control ---------------------------------------------------------------------

    def request_stop(self, force: bool = False, grace: float | None = None) -> None:
        """First call: graceful. A forced call (or a second request): NACK running jobs."""
        state = self.state
        if grace is not None:
            self.grace = grace
        if state.stopping and not force:
            force = True
        if force:
            state.force = True
            state.changed.set_in_loop()
        if not state.stopping:
            logger.info("worker stopping: finishing running jobs (grace %gs)", self.grace)
        elif force:
            logger.warning("worker stopping now: running jobs are given back")
        state.stopping = True
        self.stop_flag.set_in_loop()
        state.fetch_flag.set_in_loop()

    async def run(self) -> None:
        """Work until stopped, then give back what is not done and record every outcome."""
        state = self.state
        tasks = [
            asyncio.create_task(self.fetcher.run(), name="disquette-fetch"),
            asyncio.create_task(self.acks.run(), name="disquette-flush"),
            asyncio.create_task(self.watchdog.run(), name="disquette-watch"),
            asyncio.create_task(self.heartbeat.watch_cancels(), name="disquette-cancels"),
            asyncio.create_task(self.presence.run(), name="disquette-presence"),
        ]
        fetcher, flusher = tasks[0], tasks[1]
        scheduler = self.scheduler
        if scheduler is not None:
            tasks.append(asyncio.create_task(scheduler.run(), name="disquette-schedule"))
        stop = asyncio.create_task(self.stop_flag.wait(None))
        try:
            await asyncio.wait([*tasks, stop], return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                if task.done() and task.exception() is not None:
                    self.request_stop(force=True)
            state.stopping = True
            state.fetch_flag.set_in_loop()
            if scheduler is not None:
                scheduler.stop()
            await asyncio.wait([fetcher])
            await self._drain_running()
            self.acks.close()
            await asyncio.wait([flusher])
            await self.presence.stop()
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

    async def work_one(self, jobs: list[Job]) -> None:
        """Run claimed jobs one at a time (``Worker.work_one``), then record the outcomes."""
        state = self.state
        state.concurrency = 1
        self.fetcher.accept(jobs)
        watchers = [
            asyncio.create_task(self.watchdog.run()),
            asyncio.create_task(self.heartbeat.watch_cancels()),
        ]
        try:
            while state.running:
                await state.changed.wait(None)
        finally:
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            self.threads.close()
        await self.acks.flush()
        await self.presence.flush()

    async def _drain_running(self) -> None:
        """Stop: NACK the buffer, wait for running jobs (up to grace), then give them back."""
        state = self.state
        self.fetcher.give_back_buffer()
        deadline = self.loop.time() + self.grace
        while state.running and not state.force:
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                break
            await state.changed.wait(remaining)
        if not state.running:
            return
        logger.warning("giving back %d running job(s)", len(state.running))
        tasks = []
        for item in list(state.running):
            if item.task is not None:
                item.task.cancel()
                tasks.append(item.task)
            else:
                self.threads.abandon(item)
                self._finish(item, Outcome("cancelled"))
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        for item in list(state.running):  # an async handler that ignored its cancellation
            item.abandoned = True
            self._finish(item, Outcome("cancelled"))

    # -- running jobs ----------------------------------------------------------------

    def _cancel_requested(self, item: InFlight) -> None:
        """Someone asked to cancel a held job: stop it, and end it cancelled. A buffered job
        never starts; a task is cancelled (its handler gets ``CancelledError``); a sync
        handler sees ``job.cancel_requested`` (or its exec timeout stops it)."""
        if item.finished:
            return
        item.job.cancel_requested = True
        logger.info("job %s: cancel requested", item.job.id, extra=log_extras(item.job))
        if item not in self.state.running:
            with contextlib.suppress(ValueError):
                self.state.buffer.remove(item)
            self._finish(item, Outcome("cancelled"))
        elif item.task is not None:
            item.task.cancel()

    def _start(self, item: InFlight) -> None:
        self.state.running.add(item)
        item.started = time.monotonic()
        spec = item.spec
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("job %s started", item.job.id, extra=log_extras(item.job))
        if item.job.cancel_requested:  # delivered again after its cancel was requested
            self._finish(item, Outcome("cancelled"))
        elif spec is None:
            error = UnknownJobType(item.job.type, sorted(self.state.registry))
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
        # Without a time limit, no timeout scope (entering and leaving one costs more than
        # a no-op handler's whole run); untraced, no do-nothing span either.
        scope = None if timeout is None else asyncio.timeout(timeout)
        try:
            if scope is None:
                result = await _call(spec, item.job)
            else:
                async with scope:
                    result = await _call(spec, item.job)
        except asyncio.CancelledError:
            self._finish(item, Outcome("cancelled"))
            return
        except Exception as exc:
            if scope is not None and scope.expired():
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
        state = self.state
        state.running.discard(item)
        job = item.job
        duration = time.monotonic() - item.started
        raised: BaseException | None = None
        if outcome.kind == "timeout":
            raised = HandlerTimeout(job.type, outcome.value)
        elif outcome.kind == "error":
            raised = outcome.value
        if item.spec is not None:  # a handler ran, not an unknown type
            metrics.handled(job, outcome.kind, duration, raised)
            self.presence.record(job, outcome.kind, duration)
        if job.cancel_requested:
            # However the handler ended (stopped at its check, CancelledError, timeout,
            # a result), the request wins: the job ends cancelled, not done or retried.
            self.acks.cancelled(job)
        elif outcome.kind == "ok":
            self.worker.processed += 1
            self.acks.ack(job, outcome.value)
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("job %s done", job.id, extra=log_extras(job, duration))
        elif outcome.kind == "cancelled":
            self.acks.nack((job,))
        else:
            self.worker.errors += 1
            assert raised is not None  # "error" and "timeout" outcomes carry one
            error = raised
            text = str(error) if outcome.kind == "timeout" else describe_exception(error)
            self.acks.fail(job, text)
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
        state.changed.set_in_loop()
        buffer = state.buffer
        while buffer and len(state.running) < state.concurrency and not state.stopping:
            self._start(buffer.popleft())
        state.finished += 1
        if len(buffer) <= state.buffer_target // 2 and not (state.stopping or state.drained):
            state.fetch_flag.set_in_loop()


def _call(spec: HandlerSpec, job: Job) -> Awaitable[Any]:
    """An async handler's run: in its ``process`` span when tracing is instrumented, else
    the handler's own awaitable."""
    return _traced(spec, job) if tracing.is_instrumented() else spec.function(job)


async def _traced(spec: HandlerSpec, job: Job) -> Any:
    with tracing.processing(job):
        return await spec.function(job)
