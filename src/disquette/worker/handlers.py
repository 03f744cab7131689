"""Running handlers: the jobs in a worker's hands, their outcomes, the threads that run
sync handlers, and what is logged about them."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import queue as queue_module
import threading
import traceback
from collections.abc import Callable
from typing import Any, Literal

from .. import tracing
from ..job import Job
from .config import MAX_ERROR_CHARS
from .registry import HandlerSpec


def describe_exception(exc: BaseException) -> str:
    """The text stored as a job's ``last_error``: the traceback, ending with the error."""
    text = "".join(traceback.format_exception(exc)).rstrip()
    if len(text) > MAX_ERROR_CHARS:
        text = "...\n" + text[-MAX_ERROR_CHARS:]
    return text


def log_extras(job: Job, duration: float | None = None) -> dict[str, object]:
    """The structured extras of a log record about ``job``."""
    extras: dict[str, object] = {
        "job_id": job.id,
        "queue": job.queue,
        "job_type": job.type,
        "attempt": job.attempts,
    }
    if duration is not None:
        extras["duration"] = duration
    return extras


@dataclasses.dataclass(eq=False, slots=True)
class InFlight:
    """A job in this worker's hands: buffered, then running."""

    job: Job
    spec: HandlerSpec | None
    started: float = 0.0
    #: ``time.monotonic()`` after which a sync handler is abandoned.
    deadline: float | None = None
    task: asyncio.Task[None] | None = None
    finished: bool = False
    abandoned: bool = False


OutcomeKind = Literal["ok", "error", "timeout", "cancelled"]


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """How a handler ended, and its result, error or timeout."""

    kind: OutcomeKind
    value: Any = None


def call_sync(item: InFlight) -> Outcome:
    """Run a sync handler on the calling thread; whatever it raises is the outcome."""
    spec = item.spec
    assert spec is not None
    try:
        # Untraced, no do-nothing span: entering and leaving one costs three calls a job.
        if tracing.is_instrumented():
            with tracing.processing(item.job):
                result = _run_sync(spec, item.job)
        else:
            result = _run_sync(spec, item.job)
        return Outcome("ok", result)
    except BaseException as exc:  # a thread cannot propagate; everything is the job's error
        return Outcome("error", exc)


def _run_sync(spec: HandlerSpec, job: Job) -> Any:
    """A sync handler's result; TypeError if it returned an awaitable (it was meant to be
    ``async def``)."""
    result = spec.function(job)
    # None (most handlers' result) is not awaitable: no isawaitable call for it.
    if result is not None and inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()
        raise TypeError(f"handler {spec.name!r} returned an awaitable: declare it `async def`")
    return result


class HandlerThreads:
    """Daemon threads that run sync handlers, reporting back to the loop in batches.

    A thread stuck in a handler past its exec timeout is abandoned: it is replaced at once
    and exits when (if ever) its handler returns. Daemon threads, so a stuck one never
    keeps the process alive.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        limit: int,
        deliver: Callable[[list[tuple[InFlight, Outcome]]], None],
    ) -> None:
        self._loop = loop
        self._limit = limit
        self._deliver = deliver
        self._inbox: queue_module.SimpleQueue[InFlight | None] = queue_module.SimpleQueue()
        self._lock = threading.Lock()
        self._done: list[tuple[InFlight, Outcome]] = []
        self._drain_scheduled = False
        # Both counted on the loop's thread only.
        self._live = 0
        self._outstanding = 0

    def submit(self, item: InFlight) -> None:
        """Run ``item``'s handler on a thread, starting one if none is free."""
        self._outstanding += 1
        if self._outstanding > self._live and self._live < self._limit:
            self._live += 1
            name = f"disquette-handler-{self._live}"
            threading.Thread(target=self._work, name=name, daemon=True).start()
        self._inbox.put(item)

    def abandon(self, item: InFlight) -> None:
        """Give up on a running item; its thread no longer counts."""
        item.abandoned = True
        self._outstanding -= 1
        self._live -= 1

    def close(self) -> None:
        """Let the idle threads exit."""
        for _ in range(self._live):
            self._inbox.put(None)
        self._live = 0

    def _work(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            outcome = call_sync(item)
            if item.abandoned:
                return  # a replacement thread was started in our place
            with self._lock:
                self._done.append((item, outcome))
                schedule = not self._drain_scheduled
                self._drain_scheduled = True
            if schedule:
                try:
                    self._loop.call_soon_threadsafe(self._drain)
                except RuntimeError:  # the loop is closed: the worker is gone
                    return

    def _drain(self) -> None:
        with self._lock:
            done, self._done = self._done, []
            self._drain_scheduled = False
        live = [(item, outcome) for item, outcome in done if not item.abandoned]
        self._outstanding -= len(live)
        self._deliver(live)
