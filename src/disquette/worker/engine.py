"""The worker runtime: handlers by job type, workers, pools, and a process supervisor.

    from disquette.worker import Worker

    def send_email(job):                       # sync: runs in the worker's thread pool
        deliver(job.body["to"])
        return "sent"                          # becomes the job's result (``wait`` returns it)

    async def resize(job):                     # async: runs as a task on the event loop
        ...

    Worker("sqlite:///jobs.db", {"send_email": send_email, "resize": resize},
           queues=["mail", "images"], concurrency=8).run()

One engine, written on asyncio over :class:`~disquette.AsyncClient`, serves every entry
point: :meth:`Worker.run` runs it in its own event loop, :meth:`Worker.start` in a thread,
:meth:`Worker.run_async` inside the caller's loop. It uses the client API only, so it works
the same on every store.

What a worker does with a job:

- it claims jobs in batches (``concurrency`` running plus a buffer), and waits for new ones
  on the store's wake-ups, polling only as often as ``poll_interval``; the buffer is
  ``prefetch`` jobs, or by default about 0.1 s of work at the pace jobs finish (at most
  100), so quick jobs are claimed in big batches and slow ones are not hoarded;
- the handler's return value is the job's result (acks are batched when there is none);
- an exception (or an exec timeout) is recorded with its traceback through
  :meth:`AsyncClient.fail`: retried with exponential backoff, failed after ``max_attempts``;
  a job whose type has no handler is an error handled the same way, and logged loudly;
- while a job (running or buffered) is past half its lease, the worker extends it
  (:meth:`AsyncClient.working`), so long jobs are not redelivered; a frozen worker stops
  doing so and its jobs are redelivered to others;
- acks, nacks, failures and lease extensions belong to the delivery the worker got: once
  a job was delivered again (the lease ran out and another worker has it), the store
  refuses them with :class:`~disquette.errors.LeaseLost`; the worker logs that once per
  job at warning, counts it (``Worker.leases_lost``), and leaves the job to the newer
  delivery (it never fails or retries it itself);
- on stop (or SIGTERM/SIGINT) it stops claiming, NACKs the buffered jobs at once, lets
  running jobs finish within ``grace`` seconds, then NACKs what is still running (a second
  signal does that at once). Nothing is lost either way.

Environment (read when the argument is not given): ``DISQUETTE_URL`` (the store),
``DISQUETTE_QUEUES`` (comma-separated, leftmost first), ``DISQUETTE_CONCURRENCY``.

Logging goes to the ``disquette.worker`` logger with structured extras on job records:
``job_id``, ``queue``, ``job_type``, ``attempt``, ``duration``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import inspect
import logging
import math
import os
import queue as queue_module
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final, Literal, Protocol, TypeAlias, cast

from .._async.client import ENV_HOLDER, AsyncClient, connect_async
from .._sync.client import Client
from ..errors import (  # the worker's own errors are re-exported here for convenience
    AlreadyRunning,
    BodyNotSerializable,
    BodyTooLarge,
    HandlerTimeout,
    InvalidOption,
    InvalidState,
    JobNotFound,
    LeaseLost,
    NoHandlers,
    NotRunning,
    NotSupported,
    StoreUnavailable,
    UnknownJobType,
    WorkerError,
)
from ..job import Job, JobState, Options, check_queue_names
from ..stores.adapter import SyncStoreAdapter

logger: Final = logging.getLogger("disquette.worker")

ENV_URL: Final = "DISQUETTE_URL"
ENV_QUEUES: Final = "DISQUETTE_QUEUES"
ENV_CONCURRENCY: Final = "DISQUETTE_CONCURRENCY"
#: Set by :class:`Supervisor` in its children: the supervisor's pid, watched by the child.
ENV_SUPERVISOR_PID: Final = "DISQUETTE_SUPERVISOR_PID"
DEFAULT_QUEUE: Final = "default"
DEFAULT_CONCURRENCY: Final = 10
DEFAULT_GRACE: Final = 30.0
#: A handler registered under this name receives jobs whose type has no handler of its own.
CATCH_ALL: Final = "*"
#: Exit status of a worker process that asks to be replaced (it abandoned a stuck thread).
EXIT_REPLACE: Final = 75
#: Longest ``last_error`` kept: the end of a traceback says the most.
MAX_ERROR_CHARS: Final = 16_384
#: Without an explicit ``prefetch``, buffer about this much work, and at most this many.
BUFFER_SECONDS: Final = 0.1
DEFAULT_MAX_PREFETCH: Final = 100
#: While jobs run, acks wait up to ACK_DELAY seconds to be sent ACK_BATCH at a time.
ACK_BATCH: Final = 64
ACK_DELAY: Final = 0.001
#: How often the watchdog looks at leases and exec deadlines while jobs are held.
_TICK: Final = 0.05
_IDLE_TICK: Final = 0.5

Handler: TypeAlias = Callable[[Job], Any]
"""A job handler: ``def f(job) -> result`` or ``async def f(job) -> result``."""


# -- handlers -----------------------------------------------------------------------------


def is_async_handler(function: Callable[..., Any]) -> bool:
    """Whether calling ``function`` returns a coroutine: ``async def``, a callable object
    whose ``__call__`` is one, a ``functools.partial`` of one, or a wrapper of one made by
    ``functools.wraps`` (an App's decorated job)."""
    with contextlib.suppress(ValueError):  # a cycle of __wrapped__
        function = inspect.unwrap(function)
    if inspect.iscoroutinefunction(function):
        return True
    call = getattr(function, "__call__", None)  # noqa: B004 (callable objects)
    return call is not None and inspect.iscoroutinefunction(call)


@dataclasses.dataclass(frozen=True, slots=True)
class HandlerSpec:
    """A registered handler and how the worker runs it."""

    #: The job type it handles (``Options.type`` of the jobs).
    name: str
    function: Handler
    is_async: bool
    #: Seconds after which the handler is cancelled (async) or abandoned (sync).
    exec_timeout: float | None = None
    #: The queue its jobs go to by default (used to pick a worker's queues).
    queue: str | None = None


class Registry(Mapping[str, HandlerSpec]):
    """Handlers by job type: a plain mapping (Que's WorkMap) with per-handler settings."""

    def __init__(self, handlers: Mapping[str, Handler] | None = None) -> None:
        self._specs: dict[str, HandlerSpec] = {}
        for name, function in (handlers or {}).items():
            self.register(name, function)

    def register(
        self,
        name: str,
        function: Handler,
        *,
        exec_timeout: float | None = None,
        queue: str | None = None,
    ) -> HandlerSpec:
        """Add a handler for job type ``name``; return its spec."""
        if name != CATCH_ALL:
            Options(type=name)  # the same rules as the job's type
        if not callable(function):
            raise InvalidOption("handler", function, "a handler is callable")
        if exec_timeout is not None:
            _check_positive("exec_timeout", exec_timeout)
        if queue is not None:
            check_queue_names([queue])
        if name in self._specs:
            raise InvalidOption("type", name, "a handler is already registered for this type")
        spec = HandlerSpec(name, function, is_async_handler(function), exec_timeout, queue)
        self._specs[name] = spec
        return spec

    def resolve(self, job_type: str | None, queue: str | None = None) -> HandlerSpec | None:
        """The handler for a job of this type in this queue: its type's own; for a job
        without a type (one a Disque client of another language added), the one handler
        that declared its queue; else the catch-all; else ``None``."""
        if job_type is not None:
            spec = self._specs.get(job_type)
            if spec is not None:
                return spec
        elif queue is not None:
            declared = [s for s in self._specs.values() if s.queue == queue]
            if len(declared) == 1:
                return declared[0]
        return self._specs.get(CATCH_ALL)

    def serves(self, queue: str) -> bool:
        """Whether these handlers are meant for ``queue``: a catch-all, a handler that
        declared it, or one that declared no queue (a plain mapping's, which takes jobs of
        its type from any queue). Else only jobs added there with a handled type would run:
        a worker on such a queue says so."""
        return any(
            spec.name == CATCH_ALL or spec.queue in (None, queue) for spec in self._specs.values()
        )

    @property
    def queues(self) -> list[str]:
        """The queues the handlers declared, in registration order, without repeats."""
        return list(dict.fromkeys(s.queue for s in self._specs.values() if s.queue is not None))

    def __getitem__(self, name: str) -> HandlerSpec:
        return self._specs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        return f"Registry({sorted(self._specs)})"


class HasRegistry(Protocol):
    """Anything with a ``registry`` (an :class:`~disquette.app.App`)."""

    @property
    def registry(self) -> Registry:
        """The handlers."""
        ...


Handlers: TypeAlias = Mapping[str, Handler] | Registry | HasRegistry


def as_registry(handlers: Handlers) -> Registry:
    """Turn a mapping, a :class:`Registry` or an app into a :class:`Registry`."""
    if isinstance(handlers, Registry):
        return handlers
    registry = getattr(handlers, "registry", None)
    if isinstance(registry, Registry):
        return registry
    if isinstance(handlers, Mapping):
        return Registry(cast("Mapping[str, Handler]", handlers))
    raise InvalidOption("handlers", handlers, "a mapping of job type to handler, or an App")


# -- settings from the environment ---------------------------------------------------------


def queues_from_env() -> list[str] | None:
    """``$DISQUETTE_QUEUES`` as a list (comma-separated), or ``None`` when unset."""
    value = os.environ.get(ENV_QUEUES, "").strip()
    if not value:
        return None
    return check_queue_names(name.strip() for name in value.split(",") if name.strip())


def concurrency_from_env() -> int | None:
    """``$DISQUETTE_CONCURRENCY`` as an int, or ``None`` when unset."""
    value = os.environ.get(ENV_CONCURRENCY, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidOption(ENV_CONCURRENCY, value, "must be an int") from None


def _check_positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidOption(name, value, "seconds are an int or a float")
    if not math.isfinite(value) or value <= 0:
        raise InvalidOption(name, value, "must be positive and finite")
    return float(value)


def _check_count(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 100_000:
        raise InvalidOption(name, value, f"must be an int between {low} and 100000")
    return value


def describe_exception(exc: BaseException) -> str:
    """The text stored as a job's ``last_error``: the traceback, ending with the error."""
    text = "".join(traceback.format_exception(exc)).rstrip()
    if len(text) > MAX_ERROR_CHARS:
        text = "...\n" + text[-MAX_ERROR_CHARS:]
    return text


def _extras(job: Job, duration: float | None = None) -> dict[str, object]:
    extras: dict[str, object] = {
        "job_id": job.id,
        "queue": job.queue,
        "job_type": job.type,
        "attempt": job.attempts,
    }
    if duration is not None:
        extras["duration"] = duration
    return extras


# -- clients ------------------------------------------------------------------------------

ClientSource: TypeAlias = AsyncClient | Client | Callable[[], AsyncClient] | str | None
"""What a worker works through: a client (not closed by the worker), or what opens one
(a URL, ``None`` for the default URL, a factory; closed by the worker when it stops)."""


def async_twin(client: Client) -> AsyncClient:
    """An :class:`AsyncClient` sharing a sync client's store, options and settings.

    Closing the twin would close the shared store: leave that to the sync client.
    """
    adapter = SyncStoreAdapter(client.store)
    return AsyncClient(adapter, client.options, owns_store=False, **client.settings)


def open_client(source: ClientSource) -> tuple[AsyncClient, bool]:
    """The async client to work with, and whether we opened it (and so must close it)."""
    if isinstance(source, AsyncClient):
        return source, False
    if isinstance(source, Client):
        return async_twin(source), False
    if callable(source):
        return source(), True
    return connect_async(source), True


# -- the engine ---------------------------------------------------------------------------


class _Flag:
    """An asyncio event any thread may set; ``wait`` clears it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()

    def set(self) -> None:
        """Set from the loop's thread."""
        self._event.set()

    def set_threadsafe(self) -> None:
        """Set from any thread; a no-op once the loop is closed."""
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self, timeout: float | None) -> None:
        """Wait until set (or ``timeout`` seconds), then clear."""
        if not self._event.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._event.wait()
        self._event.clear()


@dataclasses.dataclass(eq=False, slots=True)
class _InFlight:
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
class _Outcome:
    kind: OutcomeKind
    value: Any = None


def _call_sync(item: _InFlight) -> _Outcome:
    assert item.spec is not None
    try:
        result = item.spec.function(item.job)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            raise TypeError(
                f"handler {item.spec.name!r} returned an awaitable: declare it `async def`"
            )
        return _Outcome("ok", result)
    except BaseException as exc:  # a thread cannot propagate; everything is the job's error
        return _Outcome("error", exc)


class _HandlerThreads:
    """Daemon threads that run sync handlers, reporting back to the loop in batches.

    A thread stuck in a handler past its exec timeout is abandoned: it is replaced at once
    and exits when (if ever) its handler returns. Daemon threads, so a stuck one never
    keeps the process alive.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        limit: int,
        deliver: Callable[[list[tuple[_InFlight, _Outcome]]], None],
    ) -> None:
        self._loop = loop
        self._limit = limit
        self._deliver = deliver
        self._inbox: queue_module.SimpleQueue[_InFlight | None] = queue_module.SimpleQueue()
        self._lock = threading.Lock()
        self._done: list[tuple[_InFlight, _Outcome]] = []
        self._drain_scheduled = False
        # Both counted on the loop's thread only.
        self._live = 0
        self._outstanding = 0

    def submit(self, item: _InFlight) -> None:
        self._outstanding += 1
        if self._outstanding > self._live and self._live < self._limit:
            self._live += 1
            name = f"disquette-handler-{self._live}"
            threading.Thread(target=self._work, name=name, daemon=True).start()
        self._inbox.put(item)

    def abandon(self, item: _InFlight) -> None:
        """Give up on a running item; its thread no longer counts."""
        item.abandoned = True
        self._outstanding -= 1
        self._live -= 1

    def close(self) -> None:
        for _ in range(self._live):
            self._inbox.put(None)
        self._live = 0

    def _work(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            outcome = _call_sync(item)
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


class _Engine:
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
        self.buffer: collections.deque[_InFlight] = collections.deque()
        self.running: set[_InFlight] = set()
        #: Jobs done, with their handler's result (None: no result), acked in batches.
        self.to_ack: list[tuple[Job, Any]] = []
        self.to_fail: collections.deque[tuple[Job, str]] = collections.deque()
        self.to_nack: list[Job] = []
        #: Deliveries (job id, attempts) the store said were redelivered: their outcome
        #: is not sent, and each is logged once.
        self.lost: set[tuple[str, int]] = set()
        self.fetch_flag = _Flag(self.loop)
        self.flush_flag = _Flag(self.loop)
        self.changed = _Flag(self.loop)
        self.stop_flag = _Flag(self.loop)
        self.watch_flag = _Flag(self.loop)
        self.watch_idle = False
        self.threads = _HandlerThreads(self.loop, self.concurrency, self._deliver)
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
            self.changed.set()
        if not self.stopping:
            logger.info("worker stopping: finishing running jobs (grace %gs)", self.grace)
        elif force:
            logger.warning("worker stopping now: running jobs are given back")
        self.stopping = True
        self.stop_flag.set()
        self.fetch_flag.set()

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
            self.fetch_flag.set()
            await asyncio.wait([fetcher])
            await self._drain_running()
            self.closing = True
            self.flush_flag.set()
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
                self._finish(item, _Outcome("cancelled"))
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        for item in list(self.running):  # an async handler that ignored its cancellation
            item.abandoned = True
            self._finish(item, _Outcome("cancelled"))

    def _give_back_buffer(self) -> None:
        if self.buffer:
            logger.info("giving back %d prefetched job(s)", len(self.buffer))
            self.to_nack.extend(item.job for item in self.buffer)
            self.buffer.clear()
            self.flush_flag.set()

    # -- claiming and dispatching -----------------------------------------------------

    async def _fetch_loop(self) -> None:
        # Subscribe before the first claim, so an add between a claim and the wait wakes us.
        unsubscribe = self.client.store.wakeups.subscribe(
            self.queues, self.fetch_flag.set_threadsafe
        )
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
            self.watch_flag.set()
        for job in jobs:
            item = _InFlight(job, self.registry.resolve(job.type, job.queue))
            if len(self.running) < self.concurrency and not self.stopping:
                self._start(item)
            else:
                self.buffer.append(item)
        if self.stopping:
            self._give_back_buffer()

    def _start(self, item: _InFlight) -> None:
        self.running.add(item)
        item.started = time.monotonic()
        spec = item.spec
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("job %s started", item.job.id, extra=_extras(item.job))
        if spec is None:
            error = UnknownJobType(item.job.type, sorted(self.registry))
            logger.error(
                "%s: job %s in queue %r",
                error,
                item.job.id,
                item.job.queue,
                extra=_extras(item.job),
            )
            self._finish(item, _Outcome("error", error))
        elif spec.is_async:
            item.task = self.loop.create_task(self._run_async(item, spec))
        else:
            timeout = spec.exec_timeout or self.worker.exec_timeout
            if timeout is not None:
                item.deadline = item.started + timeout
            self.threads.submit(item)

    async def _run_async(self, item: _InFlight, spec: HandlerSpec) -> None:
        timeout = spec.exec_timeout or self.worker.exec_timeout
        scope = asyncio.timeout(timeout)
        try:
            async with scope:
                result = await spec.function(item.job)
        except asyncio.CancelledError:
            self._finish(item, _Outcome("cancelled"))
            return
        except Exception as exc:
            if scope.expired():
                self._finish(item, _Outcome("timeout", timeout))
            else:
                self._finish(item, _Outcome("error", exc))
            return
        self._finish(item, _Outcome("ok", result))

    def _deliver(self, done: list[tuple[_InFlight, _Outcome]]) -> None:
        for item, outcome in done:
            self._finish(item, outcome)

    def _finish(self, item: _InFlight, outcome: _Outcome) -> None:
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
                logger.debug("job %s done", job.id, extra=_extras(job, duration))
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
                    extra=_extras(job, duration),
                )
        self.flush_flag.set()
        self.changed.set()
        while self.buffer and len(self.running) < self.concurrency and not self.stopping:
            self._start(self.buffer.popleft())
        self.finished += 1
        if len(self.buffer) <= self.buffer_target // 2 and not self.stopping:
            self.fetch_flag.set()

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
                self.flush_flag.set()
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
                logger.warning("job %s was deleted while it ran", job.id, extra=_extras(job))
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
                    logger.warning("job %s was deleted while it ran", job.id, extra=_extras(job))
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
                extra=_extras(job),
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
                extra=_extras(job),
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
                extra=_extras(item.job, now - item.started),
            )
            self._finish(item, _Outcome("timeout", item.deadline - item.started))
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
                logger.warning("job %s lost its lease: %s", job.id, exc, extra=_extras(job))
            except StoreUnavailable as exc:
                logger.warning("cannot extend the lease of job %s: %s", job.id, exc)
                return
            else:
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("job %s lease extended", job.id, extra=_extras(job))


# -- the public worker --------------------------------------------------------------------

_State = Literal["idle", "starting", "running"]


class Worker:
    """Runs handlers on the jobs of some queues: ``run()`` blocks, ``start()``/``stop()``
    run it in a background thread, ``run_async()`` inside an event loop.

    ``client`` is an :class:`AsyncClient`, a :class:`Client` (its store is shared), or a
    store URL (default ``$DISQUETTE_URL``, else ``./disquette.db``), opened and closed by
    the worker. ``handlers`` maps job types to functions (or is an App). ``queues``
    defaults to ``$DISQUETTE_QUEUES``, else the queues the handlers declared, else
    ``["default"]``; ``concurrency`` (jobs running at once) to ``$DISQUETTE_CONCURRENCY``,
    else 10. ``prefetch`` jobs are claimed ahead and buffered (default: about 0.1 s of
    work at the pace jobs finish, at most 100).
    ``poll_interval`` overrides how often the store is polled when it cannot wake us.
    ``exec_timeout`` is the default per-job limit (handlers may set their own); ``grace``
    is how long a graceful stop waits for running jobs.
    """

    def __init__(
        self,
        client: ClientSource,
        handlers: Handlers,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int | None = None,
        prefetch: int | None = None,
        poll_interval: float | None = None,
        exec_timeout: float | None = None,
        grace: float = DEFAULT_GRACE,
        parent_pid: int | None = None,
        replace_on_abandon: bool = False,
    ) -> None:
        self.registry = as_registry(handlers)
        if not self.registry:
            raise NoHandlers()
        if isinstance(queues, str):
            queues = [queues]
        self.queues = check_queue_names(
            queues or queues_from_env() or self.registry.queues or [DEFAULT_QUEUE]
        )
        if concurrency is None:
            concurrency = concurrency_from_env() or DEFAULT_CONCURRENCY
        self.concurrency = _check_count("concurrency", concurrency, 1)
        self.prefetch = None if prefetch is None else _check_count("prefetch", prefetch, 0)
        self.poll_interval = (
            None if poll_interval is None else _check_positive("poll_interval", poll_interval)
        )
        self.exec_timeout = (
            None if exec_timeout is None else _check_positive("exec_timeout", exec_timeout)
        )
        if isinstance(grace, bool) or not isinstance(grace, int | float) or not grace >= 0:
            raise InvalidOption("grace", grace, "seconds, zero or more")
        self.grace = float(grace)
        #: Stop gracefully when this process's parent is no longer this pid.
        self.parent_pid = parent_pid
        #: Stop (to be replaced by the supervisor) after abandoning a stuck sync handler.
        self.replace_on_abandon = replace_on_abandon
        #: Set when the worker stopped because it wants its process replaced.
        self.replace_requested = False
        #: The signal that stopped the last run (the first one received), if one did.
        self.stop_signal: signal.Signals | None = None
        #: Handlers that returned, and that raised or timed out, since the worker was made.
        self.processed = 0
        self.errors = 0
        #: Sync handlers abandoned after their exec timeout.
        self.abandoned = 0
        #: Jobs whose delivery to this worker was refused an ack, nack, fail or lease
        #: extension because they were delivered again (see :class:`LeaseLost`).
        self.leases_lost = 0
        self._client_source = client
        self._lock = threading.Lock()
        self._state: _State = "idle"
        self._engine: _Engine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending_stop: tuple[bool, float | None] | None = None
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        return (
            f"Worker(queues={self.queues}, concurrency={self.concurrency}, "
            f"types={sorted(self.registry)}, state={self._state})"
        )

    @property
    def running(self) -> bool:
        """Whether the worker is running (or starting)."""
        return self._state != "idle"

    # -- running ---------------------------------------------------------------------

    def run(self, *, handle_signals: bool = True) -> None:
        """Work until stopped (``stop()`` from another thread, SIGTERM or SIGINT).

        Signals are handled only in the main thread: the first stops gracefully, the
        second gives running jobs back and exits.
        """
        handle = handle_signals and threading.current_thread() is threading.main_thread()
        asyncio.run(self.run_async(handle_signals=handle))

    async def run_async(self, *, handle_signals: bool = False) -> None:
        """Work inside the running event loop until stopped."""
        self._enter()
        try:
            client, owned = open_client(self._client_source)
            try:
                await self._run_engine(client, handle_signals)
            finally:
                if owned:
                    await client.close()
        finally:
            with self._lock:
                self._state = "idle"
                self._engine = None
                self._loop = None
                self._idle.set()

    def _enter(self) -> None:
        with self._lock:
            if self._state != "idle":
                raise AlreadyRunning()
            self._state = "starting"
            self._idle.clear()
            self._pending_stop = None
            self.replace_requested = False
            self.stop_signal = None
            self._started.clear()

    async def _run_engine(self, client: AsyncClient, handle_signals: bool) -> None:
        engine = _Engine(self, client)
        with self._lock:
            self._engine = engine
            self._loop = engine.loop
            self._state = "running"
            pending = self._pending_stop
        if pending is not None:
            engine.request_stop(*pending)
        installed = []
        if handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    engine.loop.add_signal_handler(signum, self._on_signal, signum)
                    installed.append(signum)
        logger.info(
            "worker started: queues %s, concurrency %d, types %s, store %s",
            ",".join(self.queues),
            self.concurrency,
            ", ".join(sorted(self.registry)),
            client.store.url,
        )
        for queue in self.queues:
            if not self.registry.serves(queue):
                logger.warning(
                    "no handler declares queue %r (the handlers declare: %s) and there is no "
                    "catch-all %r: only jobs added there with a handled type will run",
                    queue,
                    ", ".join(self.registry.queues) or "none",
                    CATCH_ALL,
                )
        self._started.set()
        try:
            await engine.run()
        finally:
            for signum in installed:
                engine.loop.remove_signal_handler(signum)
        logger.info("worker stopped")

    def _on_signal(self, signum: int) -> None:
        logger.info("received %s", signal.Signals(signum).name)
        if self.stop_signal is None:
            self.stop_signal = signal.Signals(signum)
        if self._engine is not None:
            self._engine.request_stop()

    def request_stop(self, *, force: bool = False, grace: float | None = None) -> None:
        """Ask the worker to stop, from any thread, without waiting. Does nothing when idle."""
        with self._lock:
            engine, loop = self._engine, self._loop
            if engine is None:
                if self._state == "starting":
                    self._pending_stop = (force, grace)
                return
        try:
            running_loop = asyncio.get_running_loop()
        except RuntimeError:
            running_loop = None
        if running_loop is loop:
            engine.request_stop(force, grace)
        else:
            assert loop is not None
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(engine.request_stop, force, grace)

    # -- start / stop --------------------------------------------------------------------

    def start(self) -> None:
        """Run the worker in a background thread (with its own event loop) and return once
        it works. Raises :class:`AlreadyRunning`, or what stopped it from starting."""
        with self._lock:
            if self._state != "idle":
                raise AlreadyRunning()
        self._error = None
        self._started.clear()
        self._thread = threading.Thread(target=self._thread_main, name="disquette-worker")
        self._thread.daemon = True
        self._thread.start()
        while not self._started.wait(0.05):
            if not self._thread.is_alive():
                break
        if not self._started.is_set():
            self._thread.join()
            self._thread = None
            if self._error is not None:
                raise self._error

    def _thread_main(self) -> None:
        try:
            asyncio.run(self.run_async())
        except BaseException as exc:
            self._error = exc
            if self._started.is_set():
                logger.exception("the worker thread stopped on an error")

    def stop(
        self, *, force: bool = False, grace: float | None = None, timeout: float | None = None
    ) -> None:
        """Stop gracefully (``force``: give running jobs back at once) and wait for it.

        Raises :class:`NotRunning` if the worker is not running.
        """
        with self._lock:
            if self._state == "idle":
                raise NotRunning()
        self.request_stop(force=force, grace=grace)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if not thread.is_alive():
                self._thread = None

    async def start_async(self) -> None:
        """Run the worker as a task of the running loop; return once it works."""
        with self._lock:
            if self._state != "idle":
                raise AlreadyRunning()
        self._started.clear()
        self._task = asyncio.create_task(self.run_async(), name="disquette-worker")
        while not self._started.is_set():
            if self._task.done():
                task, self._task = self._task, None
                await task  # raises what stopped it
                return
            await asyncio.sleep(0.005)

    async def stop_async(self, *, force: bool = False, grace: float | None = None) -> None:
        """Stop gracefully (or not, with ``force``) and wait until the worker is done."""
        with self._lock:
            if self._state == "idle":
                raise NotRunning()
        self.request_stop(force=force, grace=grace)
        task, self._task = self._task, None
        if task is not None:
            await task
        else:  # running in another task or thread
            await asyncio.get_running_loop().run_in_executor(None, self._idle.wait)

    # -- one job ---------------------------------------------------------------------

    def work_one(self) -> bool:
        """Process one job if one is ready; return whether one was processed."""
        return asyncio.run(self.work_one_async())

    async def work_one_async(self) -> bool:
        """Process one job if one is ready (the async flavor of :meth:`work_one`)."""
        self._enter()
        try:
            client, owned = open_client(self._client_source)
            try:
                jobs = await client.timeout(0).get_many(*self.queues, count=1)
                if not jobs:
                    return False
                engine = _Engine(self, client)
                engine.concurrency = 1
                engine._accept(jobs)
                watcher = asyncio.create_task(engine._watch_loop())
                try:
                    while engine.running:
                        await engine.changed.wait(None)
                finally:
                    watcher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watcher
                    engine.threads.close()
                await engine._flush()
                return True
            finally:
                if owned:
                    await client.close()
        finally:
            with self._lock:
                self._state = "idle"
                self._idle.set()


class WorkerPool:
    """Several workers in one event loop, sharing one client (Que's WorkerPool).

    ``WorkerPool(client, handlers, size=4, **worker_options)`` makes ``size`` identical
    workers; ``WorkerPool.of(workers)`` takes ready-made ones (different queues, say).
    """

    def __init__(
        self,
        client: ClientSource,
        handlers: Handlers,
        *,
        size: int = 2,
        **worker_options: Any,
    ) -> None:
        _check_count("size", size, 1)
        workers = [Worker(client, handlers, **worker_options) for _ in range(size)]
        self._setup(workers, share=True)

    @classmethod
    def of(cls, workers: Sequence[Worker]) -> WorkerPool:
        """A pool of ready-made workers (each keeps its own client)."""
        if not workers:
            raise InvalidOption("workers", workers, "a pool needs at least one worker")
        pool = cls.__new__(cls)
        pool._setup(list(workers), share=False)
        return pool

    def _setup(self, workers: list[Worker], *, share: bool) -> None:
        self.workers = workers
        self._share = share
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = threading.Lock()
        self._running = False
        self._stopping = False
        self._idle = threading.Event()
        self._idle.set()

    def __repr__(self) -> str:
        return f"WorkerPool({self.workers})"

    @property
    def running(self) -> bool:
        """Whether the pool is running."""
        return self._running

    def run(self, *, handle_signals: bool = True) -> None:
        """Run every worker until stopped (signals as in :meth:`Worker.run`)."""
        handle = handle_signals and threading.current_thread() is threading.main_thread()
        asyncio.run(self.run_async(handle_signals=handle))

    async def run_async(self, *, handle_signals: bool = False) -> None:
        """Run every worker in the running loop until stopped."""
        with self._lock:
            if self._running:
                raise AlreadyRunning("worker pool")
            self._running = True
            self._stopping = False
            self._idle.clear()
        loop = asyncio.get_running_loop()
        installed = []
        source = self.workers[0]._client_source
        owned = False
        try:
            if self._share:
                # One client (one store connection) for every worker of the pool.
                shared, owned = open_client(source)
                for worker in self.workers:
                    worker._client_source = shared
            if handle_signals:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                        loop.add_signal_handler(signum, self._on_signal)
                        installed.append(signum)
            tasks = [asyncio.create_task(worker.run_async()) for worker in self.workers]
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)
            if self._share:
                for worker in self.workers:
                    shared_client = worker._client_source
                    worker._client_source = source
                if owned and isinstance(shared_client, AsyncClient):
                    await shared_client.close()
            with self._lock:
                self._running = False
                self._idle.set()

    def _on_signal(self) -> None:
        force = self._stopping
        self._stopping = True
        self.request_stop(force=force)

    def request_stop(self, *, force: bool = False, grace: float | None = None) -> None:
        """Ask every worker to stop, without waiting."""
        for worker in self.workers:
            worker.request_stop(force=force, grace=grace)

    def start(self) -> None:
        """Run the pool in a background thread; return once every worker works."""
        with self._lock:
            if self._running:
                raise AlreadyRunning("worker pool")
        errors: list[BaseException] = []

        def main() -> None:
            try:
                asyncio.run(self.run_async())
            except BaseException as exc:
                errors.append(exc)

        self._thread = threading.Thread(target=main, name="disquette-pool", daemon=True)
        self._thread.start()
        while not all(worker._started.is_set() for worker in self.workers):
            if not self._thread.is_alive():
                self._thread = None
                if errors:
                    raise errors[0]
                return
            time.sleep(0.01)

    def stop(self, *, force: bool = False, grace: float | None = None) -> None:
        """Stop every worker and wait. Raises :class:`NotRunning` if the pool is not running."""
        if not self._running:
            raise NotRunning("worker pool")
        self.request_stop(force=force, grace=grace)
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    async def start_async(self) -> None:
        """Run the pool as a task of the running loop; return once every worker works."""
        if self._running:
            raise AlreadyRunning("worker pool")
        self._task = asyncio.create_task(self.run_async(), name="disquette-pool")
        while not all(worker._started.is_set() for worker in self.workers):
            if self._task.done():
                await self._task
                return
            await asyncio.sleep(0.005)

    async def stop_async(self, *, force: bool = False, grace: float | None = None) -> None:
        """Stop every worker and wait until all are done."""
        if not self._running:
            raise NotRunning("worker pool")
        self.request_stop(force=force, grace=grace)
        task, self._task = self._task, None
        if task is not None:
            await task
        else:
            await asyncio.get_running_loop().run_in_executor(None, self._idle.wait)


# -- processes ----------------------------------------------------------------------------


class Supervisor:
    """Runs ``processes`` copies of a worker command and restarts any that dies.

    SIGTERM/SIGINT are passed on to the children as SIGTERM (a second signal is passed on
    too, so the children give their running jobs back). Children run in their own
    session, so a terminal's Ctrl-C reaches them once, through us; each child watches our
    pid (``$DISQUETTE_SUPERVISOR_PID``) and stops if we die. A child that exits with 2
    (a usage or import error) stops everything; one that dies fast again and again is
    restarted with a growing delay.

    Each child gets its own lease holder (``$DISQUETTE_HOLDER``, unique per spawn). With
    ``client`` (a store URL, a client factory, or a sync :class:`~disquette.Client`), the
    jobs a child held when it ended (killed, crashed, or stopped past its grace) are given
    back at once through :meth:`~disquette.AsyncClient.release_leases`, on a thread of
    their own, instead of waiting for their leases (``retry_after``, 300 s by default) to
    run out.
    """

    def __init__(
        self,
        command: Sequence[str],
        processes: int,
        *,
        env: Mapping[str, str] | None = None,
        restart_delay: float = 0.2,
        max_restart_delay: float = 10.0,
        client: Client | Callable[[], AsyncClient] | str | None = None,
    ) -> None:
        if isinstance(client, AsyncClient):
            # Each release runs in an event loop of its own: a factory makes its client.
            raise InvalidOption("client", client, "a URL, a client factory or a sync Client")
        self.command = list(command)
        self.processes = _check_count("processes", processes, 1)
        self.env = dict(os.environ if env is None else env)
        self.restart_delay = restart_delay
        self.max_restart_delay = max_restart_delay
        self.client = client
        #: Restarts so far (children that died while we were not stopping).
        self.restarts = 0
        self._signals = 0
        self._forwarded = 0
        self._children: list[subprocess.Popen[bytes] | None] = []
        #: The first signal received (what stopped the supervisor), if one did.
        self.stop_signal: signal.Signals | None = None
        #: The lease holder of each live child, by pid.
        self._holders: dict[int, str] = {}
        self._spawned = 0
        self._releases: list[threading.Thread] = []

    @property
    def pids(self) -> list[int]:
        """The pids of the running children."""
        return [child.pid for child in self._children if child is not None]

    def _spawn(self) -> subprocess.Popen[bytes]:
        self._spawned += 1
        # Unique per spawn, so that a restarted child (or a reused pid) is another holder.
        holder = f"{socket.gethostname()}:{os.getpid()}:{self._spawned}"
        env = {**self.env, ENV_SUPERVISOR_PID: str(os.getpid()), ENV_HOLDER: holder}
        child = subprocess.Popen(self.command, env=env, start_new_session=True)
        self._holders[child.pid] = holder
        return child

    def _ended(self, child: subprocess.Popen[bytes]) -> None:
        """A child is gone: give its leases back (on a thread: we keep supervising)."""
        holder = self._holders.pop(child.pid, None)
        if holder is None or self.client is None:
            return
        self._releases = [thread for thread in self._releases if thread.is_alive()]
        thread = threading.Thread(
            target=self._release, args=(holder, child.pid), name="disquette-release"
        )
        thread.daemon = True
        thread.start()
        self._releases.append(thread)

    def _release(self, holder: str, pid: int) -> None:
        source = self.client
        assert source is not None
        try:
            if isinstance(source, Client):
                released = source.release_leases(holder)
            else:
                released = asyncio.run(_release_leases(source, holder))
        except NotSupported as exc:
            logger.info("the jobs of worker process %d wait for their leases: %s", pid, exc)
        except Exception as exc:
            logger.warning(
                "cannot give back the jobs of worker process %d (%s): they are delivered "
                "again when their leases run out",
                pid,
                exc,
            )
        else:
            if released:
                logger.warning("gave back %d job(s) of worker process %d", released, pid)

    def _on_signal(self, signum: int, frame: object) -> None:
        # Only count here: the loop logs and forwards (logging in a handler can deadlock).
        self._signals += 1
        if self.stop_signal is None:
            self.stop_signal = signal.Signals(signum)

    def run(self) -> int:
        """Supervise until stopped by a signal; return the exit status."""
        previous = {
            signum: signal.signal(signum, self._on_signal)
            for signum in (signal.SIGTERM, signal.SIGINT)
        }
        status = 0
        try:
            status = self._supervise()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._terminate_all()
        return status

    def _supervise(self) -> int:
        self._children = [self._spawn() for _ in range(self.processes)]
        started = [time.monotonic()] * self.processes
        fast_failures = [0] * self.processes
        restart_at: list[float | None] = [None] * self.processes
        logger.info("supervisor started %d worker processes: %s", self.processes, self.pids)
        while True:
            while self._forwarded < self._signals:
                self._forwarded += 1
                self._log_stop(self._forwarded)
                for child in self._children:
                    if child is not None and child.poll() is None:
                        child.send_signal(signal.SIGTERM)
            stopping = self._signals > 0
            now = time.monotonic()
            for index, child in enumerate(self._children):
                if child is None:
                    when = restart_at[index]
                    if not stopping and when is not None and now >= when:
                        self._children[index] = self._spawn()
                        started[index] = now
                        restart_at[index] = None
                    continue
                status = child.poll()
                if status is None:
                    continue
                self._children[index] = None
                self._ended(child)
                if stopping:
                    left = sum(1 for other in self._children if other is not None)
                    logger.info("worker process %d exited (%d still running)", child.pid, left)
                    continue
                if status == 2:
                    logger.error("worker process %d exited with a usage error: stopping", child.pid)
                    self._signals += 1
                    return 2
                lived = now - started[index]
                fast_failures[index] = fast_failures[index] + 1 if lived < 2.0 else 0
                delay = 0.0 if status == EXIT_REPLACE else self.restart_delay
                if fast_failures[index]:
                    backoff = self.restart_delay * 2 ** fast_failures[index]
                    delay = min(self.max_restart_delay, backoff)
                self.restarts += 1
                how = f"was killed by signal {-status}" if status < 0 else f"exited with {status}"
                logger.warning("worker process %d %s; restarting in %.1fs", child.pid, how, delay)
                restart_at[index] = now + delay
            if stopping and all(child is None for child in self._children):
                logger.info("supervisor stopped: every worker process exited")
                return 0
            time.sleep(0.05)

    def _log_stop(self, count: int) -> None:
        running = sum(1 for child in self._children if child is not None and child.poll() is None)
        if count == 1:
            name = self.stop_signal.name if self.stop_signal is not None else "a stop"
            logger.info(
                "supervisor received %s: stopping %d worker process(es); they finish their "
                "running jobs (a second signal gives them back)",
                name,
                running,
            )
        else:
            logger.warning(
                "supervisor: stopping %d worker process(es) now; running jobs are given back",
                running,
            )

    def _terminate_all(self) -> None:
        for child in self._children:
            if child is not None and child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self._children:
            if child is not None:
                try:
                    child.wait(DEFAULT_GRACE + 5)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
                self._ended(child)
        for thread in self._releases:
            thread.join(DEFAULT_GRACE)
        self._releases.clear()


async def _release_leases(source: Callable[[], AsyncClient] | str, holder: str) -> int:
    """Release ``holder``'s leases through a client opened (and closed) for the purpose."""
    client, _ = open_client(source)
    try:
        return await client.release_leases(holder)
    finally:
        await client.close()


def worker_command(arguments: Sequence[str]) -> list[str]:
    """The command line of a child worker process: ``python -m disquette <arguments>``."""
    return [sys.executable, "-m", "disquette", *arguments]


__all__ = [
    "CATCH_ALL",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_QUEUE",
    "EXIT_REPLACE",
    "AlreadyRunning",
    "Handler",
    "HandlerSpec",
    "HandlerTimeout",
    "Handlers",
    "NoHandlers",
    "NotRunning",
    "Registry",
    "Supervisor",
    "UnknownJobType",
    "Worker",
    "WorkerError",
    "WorkerPool",
    "as_registry",
    "describe_exception",
]
