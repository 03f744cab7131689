"""The client: every user-facing operation, written once on top of the store interface.

This file is the asyncio source; ``client.py`` beside it is generated from it by
``scripts/unasync.py``, so the sync client calls its store directly, with no event loop.
"""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Collection, Iterable, Sequence
from types import TracebackType
from typing import Any, Final

from ._concurrency import AsyncSignal
from .clock import Clock, SystemClock
from .errors import (
    InvalidOption,
    JobCancelled,
    JobFailed,
    JobNotFound,
    LeaseLost,
    Timeout,
)
from .funnel_async import FETCH_COUNT, FETCH_TIMEOUT, AsyncFunnel
from .job import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULTS,
    AddResult,
    Encoding,
    Job,
    JobState,
    Options,
    Stats,
    check_headers,
    check_job_id,
    check_queue_name,
    check_queue_names,
    encode_progress,
    encode_value,
    new_jobs,
)
from .stores import open_async_store, resolve_url
from .stores.store_async import AsyncStore
from .stores.types import DONE_CHANNEL, PAUSE_MODES, PauseMode, QueueInfo

#: First retry delay after an error; it doubles with each error, up to BACKOFF_CAP.
BACKOFF_BASE: Final = 1.0
BACKOFF_CAP: Final = 3600.0
#: How many jobs ``get_many`` may claim in one call.
MAX_BATCH: Final = 10_000
#: The default ``holder`` of a client's leases (a supervisor sets it in each child).
ENV_HOLDER: Final = "DISQUETTE_HOLDER"
MAX_HOLDER_CHARS: Final = 200

JobRef = Job | str


def _job_id(job: JobRef) -> str:
    return check_job_id(job.id if isinstance(job, Job) else job)


def _delivery(job: JobRef, tracked: bool) -> tuple[str, int | None]:
    """A job's id, and the delivery a :class:`Job` came from (its ``attempts``): a call
    made with the job acts only while no newer delivery started. A bare id, or any job on
    a store that does not track deliveries (``tracked`` False), acts by id."""
    if isinstance(job, Job):
        return check_job_id(job.id), job.attempts if tracked else None
    return check_job_id(job), None


def _deliveries(jobs: Sequence[JobRef], tracked: bool) -> list[int | None] | None:
    """The delivery of each job (as :func:`_delivery`), or None when all act by id."""
    if not tracked:
        return None
    attempts = [job.attempts if isinstance(job, Job) else None for job in jobs]
    return None if attempts.count(None) == len(attempts) else attempts


def _check_holder(holder: object) -> str | None:
    if holder is None:
        return None
    if not isinstance(holder, str) or not 0 < len(holder) <= MAX_HOLDER_CHARS:
        raise InvalidOption("holder", holder, f"a str of 1 to {MAX_HOLDER_CHARS} characters")
    return holder


class AsyncClient:
    """A connection to a store, with options. Derived clients share the store.

    Options come from three layers, each overriding the one before: the defaults,
    :meth:`use` (this client, every call), and :meth:`with_options` or the fluent setters
    (:meth:`timeout`, :meth:`delay`, ...), which return a derived client.
    """

    def __init__(
        self,
        store: AsyncStore,
        options: Options | None = None,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        backoff_base: float = BACKOFF_BASE,
        backoff_cap: float = BACKOFF_CAP,
        owns_store: bool = True,
        holder: str | None = None,
    ) -> None:
        if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int):
            raise InvalidOption("max_body_bytes", max_body_bytes, "must be an int")
        if max_body_bytes < 1:
            raise InvalidOption("max_body_bytes", max_body_bytes, "must be positive")
        if not 0 < backoff_base <= backoff_cap:
            raise InvalidOption("backoff_base", backoff_base, "0 < backoff_base <= backoff_cap")
        self.store = store
        self._options = DEFAULTS.merge(options or Options())
        self._max_body_bytes = max_body_bytes
        self._backoff = (backoff_base, backoff_cap)
        self._owns_store = owns_store
        #: Who this client's leases go to (see :meth:`release_leases`): ``holder``, else
        #: ``$DISQUETTE_HOLDER`` (a :class:`~disquette.Supervisor` sets it in each worker
        #: process), else nobody in particular.
        self.holder = _check_holder(holder if holder is not None else os.environ.get(ENV_HOLDER))

    @property
    def settings(self) -> dict[str, Any]:
        """The constructor's settings besides store and options, to build a twin client."""
        base, cap = self._backoff
        return {
            "max_body_bytes": self._max_body_bytes,
            "backoff_base": base,
            "backoff_cap": cap,
            "holder": self.holder,
        }

    # -- options ---------------------------------------------------------------------------

    @property
    def options(self) -> Options:
        """The options every call of this client uses."""
        return self._options

    def use(self, options: Options) -> AsyncClient:
        """Set options for every later call of this client; returns the client."""
        self._options = self._options.merge(options)
        return self

    def with_options(self, options: Options) -> AsyncClient:
        """A client sharing this one's store, with ``options`` on top of this one's."""
        return self._derived(self._options.merge(options))

    def _derived(self, options: Options) -> AsyncClient:
        derived = object.__new__(type(self))
        derived.__dict__.update(self.__dict__)
        derived._options = options
        derived._owns_store = False
        return derived

    def timeout(self, seconds: float | None) -> AsyncClient:
        """Derived client whose blocking calls wait at most ``seconds`` (0: do not wait)."""
        return self.with_options(Options(timeout=seconds))

    def replicate(self, copies: int) -> AsyncClient:
        """Derived client whose adds return once ``copies`` replicas hold the job."""
        return self.with_options(Options(replicate=copies))

    def delay(self, seconds: float) -> AsyncClient:
        """Derived client whose jobs become ready ``seconds`` after they are added."""
        return self.with_options(Options(delay=seconds))

    def retry_after(self, seconds: float) -> AsyncClient:
        """Derived client whose jobs are redelivered if not acked within ``seconds``."""
        return self.with_options(Options(retry_after=seconds))

    def ttl(self, seconds: float) -> AsyncClient:
        """Derived client whose jobs are deleted ``seconds`` after they are added."""
        return self.with_options(Options(ttl=seconds))

    def max_len(self, jobs: int) -> AsyncClient:
        """Derived client whose adds are refused when the queue holds ``jobs`` jobs."""
        return self.with_options(Options(max_len=jobs))

    def priority(self, priority: int) -> AsyncClient:
        """Derived client whose jobs have this priority (lower runs first)."""
        return self.with_options(Options(priority=priority))

    def type(self, job_type: str) -> AsyncClient:
        """Derived client whose jobs carry this handler name."""
        return self.with_options(Options(type=job_type))

    def max_attempts(self, attempts: int) -> AsyncClient:
        """Derived client whose jobs fail for good after this many errors."""
        return self.with_options(Options(max_attempts=attempts))

    def result_ttl(self, seconds: float) -> AsyncClient:
        """Derived client whose done jobs are kept ``seconds`` for ``wait``."""
        return self.with_options(Options(result_ttl=seconds))

    # -- producing -------------------------------------------------------------------------

    def unique(
        self,
        key: str,
        *,
        unique_for: float | None = None,
        states: Iterable[str] | None = None,
    ) -> AsyncClient:
        """Derived client whose adds create nothing while a job of the queue holds ``key``
        (see :class:`~disquette.job.Options`: ``unique_key``, ``unique_for`` and
        ``unique_states``); :meth:`add_result` tells whether a job was created."""
        return self._derived(self._options.with_unique(key, unique_for, states))

    async def add(
        self,
        body: object,
        queue: str,
        *,
        headers: dict[str, str] | None = None,
        connection: object = None,
    ) -> str:
        """Add a job (bytes, str, or a JSON-serializable value) to ``queue``; return its id.

        ``headers``: metadata the job carries unchanged to whoever reads it (``job.headers``
        in a handler, ``show``, ``peek``, ``scan``), such as tracing context: ``str`` keys
        to ``str`` values, at most :data:`~disquette.job.MAX_HEADERS_BYTES` (8 KiB) in all,
        else :class:`~disquette.errors.InvalidOption`.

        ``connection``: on stores with transactions (PostgreSQL), the caller's open
        transaction (a psycopg connection, a SQLAlchemy session or connection): the job
        exists only if that transaction commits. Other stores raise ``InvalidOption``.
        With the ``replicate`` option, returns once that many replicas hold the job, or
        raises :class:`~disquette.errors.NotReplicated`. With a ``unique_key`` another job
        of the queue holds, adds nothing and returns that job's id.
        """
        return (await self.add_many([body], queue, headers=headers, connection=connection))[0]

    async def add_many(
        self,
        bodies: Iterable[object],
        queue: str,
        *,
        headers: dict[str, str] | None = None,
        connection: object = None,
    ) -> list[str]:
        """Add several jobs to ``queue`` in one transaction; all are added or none (but for
        those whose unique key is held: each answers the holder's id). Each job gets the
        same ``headers`` (see :meth:`add`)."""
        jobs, existing = await self._add(bodies, queue, connection, headers)
        if not existing:
            return [job.id for job in jobs]
        return [existing.get(job.id, job.id) for job in jobs]

    async def add_result(
        self,
        body: object,
        queue: str,
        *,
        headers: dict[str, str] | None = None,
        connection: object = None,
    ) -> AddResult:
        """As :meth:`add`, also telling whether the job was created (``created`` is False
        when its unique key was held: ``id`` is then the holder's)."""
        results = await self.add_many_results([body], queue, headers=headers, connection=connection)
        return results[0]

    async def add_many_results(
        self,
        bodies: Iterable[object],
        queue: str,
        *,
        headers: dict[str, str] | None = None,
        connection: object = None,
    ) -> list[AddResult]:
        """As :meth:`add_many`, with an :class:`~disquette.job.AddResult` per body."""
        jobs, existing = await self._add(bodies, queue, connection, headers)
        return [AddResult(existing.get(job.id, job.id), job.id not in existing) for job in jobs]

    async def _add(
        self,
        bodies: Iterable[object],
        queue: str,
        connection: object,
        headers: dict[str, str] | None,
    ) -> tuple[list[Job], dict[str, str]]:
        """Make and add the jobs; return them and the store's answer for those not created
        (their id -> the holder of their unique key)."""
        check_queue_name(queue)
        # No headers is the usual add: it skips the check (and its copy) altogether.
        checked = None if headers is None else check_headers(headers)
        now = self.store.clock.now()
        jobs = new_jobs(self._options, bodies, queue, now, self._max_body_bytes, checked)
        if not jobs:
            return jobs, {}
        existing = await self.store.add(
            jobs,
            self._options.max_len,
            connection=connection,
            replicate=self._options.replicate or 0,
        )
        return jobs, existing

    # -- consuming -------------------------------------------------------------------------

    async def get(self, *queues: str, timeout: float | None = None) -> Job:
        """Lease the next job of the leftmost queue that has one, waiting up to ``timeout``
        seconds (default: the client's ``timeout`` option; 0: do not wait).

        Raises :class:`~disquette.errors.Timeout` if no job came in time.
        """
        timeout = self._timeout(timeout)
        jobs = await self.get_many(*queues, count=1, timeout=timeout)
        if not jobs:
            raise Timeout("get", timeout or 0.0)
        return jobs[0]

    async def get_many(
        self, *queues: str, count: int = 100, timeout: float | None = None
    ) -> list[Job]:
        """Lease up to ``count`` jobs, queues left to right; waits (up to ``timeout``
        seconds, default: the client's ``timeout`` option) only while none is ready;
        returns an empty list on timeout."""
        names = check_queue_names(queues)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_BATCH:
            raise InvalidOption("count", count, f"must be an int between 1 and {MAX_BATCH}")
        timeout = self._timeout(timeout)
        jobs = await self.store.claim(names, count, holder=self.holder)
        if jobs or timeout == 0:
            return jobs
        deadline = None if timeout is None else time.monotonic() + timeout
        signal = AsyncSignal()
        # Subscribe before claiming again, so an add between the claim and the wait wakes us.
        unsubscribe = self.store.wakeups.subscribe(names, signal.set)
        try:
            while True:
                jobs = await self.store.claim(names, count, holder=self.holder)
                if jobs:
                    return jobs
                pause = self.store.poll_interval
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return []
                    pause = min(pause, remaining)
                await signal.wait(pause)
        finally:
            unsubscribe()

    def funnel(
        self,
        *queues: str,
        fetch_count: int = FETCH_COUNT,
        fetch_timeout: float = FETCH_TIMEOUT,
        buffer: int | None = None,
        timeout: float | None = None,
    ) -> AsyncFunnel:
        """A channel over ``queues``: iterate to receive jobs (each acked as it is handed
        over), ``put`` to send; use it with ``async with``. See :class:`AsyncFunnel`."""
        return AsyncFunnel(
            self,
            *queues,
            fetch_count=fetch_count,
            fetch_timeout=fetch_timeout,
            buffer=buffer,
            timeout=timeout,
        )

    async def ack(self, job: JobRef, result: object = None, *, connection: object = None) -> None:
        """Acknowledge a job: it is done, and ``result`` is what :meth:`wait` returns.

        Acking a job that is already done does nothing; an unknown id raises
        :class:`~disquette.errors.JobNotFound`. Given the :class:`Job` a ``get`` returned,
        the ack belongs to that delivery: once the job was delivered again (its lease ran
        out and another consumer got it) it raises :class:`~disquette.errors.LeaseLost`
        and leaves the job to the newer delivery. Given a bare id, it acts on the job
        whatever delivery holds it (Disque's ACKJOB). ``connection``: on stores with
        transactions, the caller's open transaction, so the job's effects and its
        completion commit together (see :meth:`add`).
        """
        job_id, attempt = _delivery(job, self.store.capabilities.tracks_deliveries)
        results = None if result is None else [self._encode_result(result)]
        attempts = None if attempt is None else [attempt]
        if not await self.store.ack([job_id], results, connection=connection, attempts=attempts):
            current = await self._require(job_id)
            self._check_delivery("ack", current, attempt)

    async def ack_many(
        self,
        jobs: Sequence[JobRef],
        results: Sequence[object] | None = None,
        *,
        connection: object = None,
    ) -> int:
        """Acknowledge several jobs in one transaction; return how many became done.

        ``results``: one per job (``None`` for none), what :meth:`wait` returns for it. A
        result that cannot be stored (not serializable, too large) raises before any job
        is acked. Jobs (not ids) whose delivery lost its lease are left alone while the
        others are acked; then :class:`~disquette.errors.LeaseLost` lists them.
        """
        ids = [_job_id(job) for job in jobs]
        if not ids:
            return 0
        encoded = None
        if results is not None:
            if len(results) != len(ids):
                raise InvalidOption("results", len(results), f"one per job ({len(ids)})")
            if any(result is not None for result in results):
                encoded = [self._encode_result(result) for result in results]
        attempts = _deliveries(jobs, self.store.capabilities.tracks_deliveries)
        done = await self.store.ack(ids, encoded, connection=connection, attempts=attempts)
        if attempts is not None and len(done) < len(ids):
            await self._raise_lost("ack", ids, attempts, done)
        return len(done)

    async def nack(self, job: JobRef) -> None:
        """Give a leased job back: it is delivered again at once, ``nacks`` + 1.

        A job that is no longer leased (done, or already redelivered) is left alone; an
        unknown id raises :class:`~disquette.errors.JobNotFound`. Given a :class:`Job`,
        the nack belongs to its delivery, as for :meth:`ack`: a job delivered again since
        raises :class:`~disquette.errors.LeaseLost`.
        """
        job_id, attempt = _delivery(job, self.store.capabilities.tracks_deliveries)
        attempts = None if attempt is None else [attempt]
        if not await self.store.nack([job_id], attempts=attempts):
            current = await self._require(job_id)
            self._check_delivery("nack", current, attempt)

    async def nack_many(self, jobs: Sequence[JobRef]) -> int:
        """Give several leased jobs back in one transaction; return how many. Jobs whose
        delivery lost its lease are left alone, then listed by a
        :class:`~disquette.errors.LeaseLost` (as for :meth:`ack_many`)."""
        ids = [_job_id(job) for job in jobs]
        if not ids:
            return 0
        attempts = _deliveries(jobs, self.store.capabilities.tracks_deliveries)
        nacked = await self.store.nack(ids, attempts=attempts)
        if attempts is not None and len(nacked) < len(ids):
            await self._raise_lost("nack", ids, attempts, nacked)
        return len(nacked)

    async def fail(self, job: JobRef, error: str) -> Job:
        """Record that handling the job raised ``error``; return the job as it now is.

        The job is retried after an exponential backoff (``backoff_base * 2**errors``,
        capped), or kept as ``failed`` once ``max_attempts`` errors are reached. Given a
        :class:`Job` whose delivery lost its lease, raises
        :class:`~disquette.errors.LeaseLost` and records nothing.
        """
        job_id, attempt = _delivery(job, self.store.capabilities.tracks_deliveries)
        current = await self._require(job_id)
        self._check_delivery("fail", current, attempt)
        # A queued job may still be its delivery's: its lease ran out and no claim took it
        # since (the store tells).
        if current.state in (JobState.ACTIVE, JobState.QUEUED):
            now = self.store.clock.now()
            final = current.error_count + 1 >= current.max_attempts
            retry_at = None if final else now + self.backoff(current.error_count + 1)
            if not await self.store.fail(current.id, str(error), retry_at, attempt=attempt):
                # Refused: delivered again between the read above and the write?
                self._check_delivery("fail", await self._require(job_id), attempt)
        return await self._require(current.id)

    def backoff(self, error_count: int) -> float:
        """Seconds before the next attempt of a job that has had ``error_count`` errors."""
        base, cap = self._backoff
        return float(min(cap, base * 2 ** min(error_count - 1, 64)))

    async def working(self, job: JobRef) -> float | None:
        """Extend a leased job's lease by its ``retry_after`` (Disque WORKING).

        Returns the new lease deadline (``None`` for at-most-once jobs). Raises
        :class:`~disquette.errors.InvalidState` if the job is no longer leased, and, given
        a :class:`Job`, :class:`~disquette.errors.LeaseLost` if it was delivered again.
        """
        job_id, attempt = _delivery(job, self.store.capabilities.tracks_deliveries)
        return await self.store.working(job_id, attempt=attempt)

    async def progress(self, job: JobRef, value: object) -> float | None:
        """Report a leased job's progress (a number or a small JSON object, else
        ``ProgressTooLarge``), shown by :meth:`show` in any process; extends the lease and
        raises as :meth:`working` does."""
        text = encode_progress(value)
        job_id, attempt = _delivery(job, self.store.capabilities.tracks_deliveries)
        return await self.store.progress(job_id, text, attempt=attempt)

    async def cancel(self, job: JobRef) -> JobState:
        """Cancel a job: ``cancelled`` at once if scheduled or queued (returned), else
        (``active`` returned) its worker is told to stop (``CancelledError`` in an async
        handler, ``job.cancel_requested`` for a sync one) and ends it ``cancelled``.
        ``JobNotFound`` for an unknown id, ``InvalidState`` for a finished job."""
        return await self.store.cancel(_job_id(job))

    async def ack_cancelled(self, job: JobRef) -> None:
        """End a leased job ``cancelled``, not done (its consumer stopped on a cancel
        request); given a :class:`Job`, only for its delivery (``LeaseLost``)."""
        job_id, attempt = _delivery(job, self.store.capabilities.tracks_deliveries)
        current = await self._require(job_id)
        await self.store.cancel(job_id, attempt=current.attempts if attempt is None else attempt)

    async def release_leases(self, holder: str) -> int:
        """Give back at once every job leased to ``holder``, a process known to be dead
        (a :class:`~disquette.Supervisor` does it for a worker process that died): each is
        delivered again, ``additional_deliveries`` + 1, as when a lease runs out. An
        at-most-once job (``retry_after`` 0) is never delivered twice: it is kept as
        failed instead. Returns how many jobs ``holder`` held."""
        checked = _check_holder(holder)
        if checked is None:
            raise InvalidOption("holder", holder, "a holder is needed")
        return await self.store.release_leases(checked)

    async def wait(self, job: JobRef, timeout: float | None = None) -> Any:
        """Block until the job is done and return its result.

        Raises :class:`~disquette.errors.JobFailed` if it failed for good,
        :class:`~disquette.errors.JobCancelled` if it was cancelled,
        :class:`~disquette.errors.JobNotFound` if it is gone (deleted, expired),
        :class:`~disquette.errors.Timeout` after ``timeout`` (default: the client's).
        """
        job_id = _job_id(job)
        timeout = self._timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        signal = AsyncSignal()
        unsubscribe = self.store.wakeups.subscribe([DONE_CHANNEL], signal.set)
        try:
            while True:
                current = await self._require(job_id)
                if current.state is JobState.DONE:
                    return current.result
                if current.state is JobState.FAILED:
                    raise JobFailed(job_id, current.error_count, current.last_error)
                if current.state is JobState.CANCELLED:
                    raise JobCancelled(job_id)
                pause = self.store.poll_interval
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise Timeout("wait", timeout or 0.0)
                    pause = min(pause, remaining)
                await signal.wait(pause)
        finally:
            unsubscribe()

    # -- inspecting and managing -----------------------------------------------------------

    async def show(self, job: JobRef) -> Job:
        """Return the job with all its fields; unknown ids raise ``JobNotFound``."""
        return await self._require(_job_id(job))

    async def delete(self, job: JobRef) -> None:
        """Delete a job in any state; unknown ids raise ``JobNotFound``."""
        job_id = _job_id(job)
        if not await self.store.delete([job_id]):
            raise JobNotFound(job_id)

    async def qlen(self, queue: str) -> int:
        """Number of jobs ready to be delivered from ``queue``."""
        return await self.store.qlen(check_queue_name(queue))

    async def peek(self, queue: str, count: int = 1) -> list[Job]:
        """The next ``count`` jobs ``get`` would deliver from ``queue``, without leasing."""
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_BATCH:
            raise InvalidOption("count", count, f"must be an int between 1 and {MAX_BATCH}")
        return await self.store.peek(check_queue_name(queue), count)

    async def stats(self) -> Stats:
        """Counts per queue and type: scheduled, queued, active, done, failed, cancelled,
        highest error count, oldest ``run_at``."""
        return await self.store.stats()

    async def failed(self, queue: str | None = None, limit: int = 100) -> list[Job]:
        """Jobs kept as failed (in ``queue``, or all), oldest failure first."""
        if queue is not None:
            check_queue_name(queue)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_BATCH:
            raise InvalidOption("limit", limit, f"must be an int between 1 and {MAX_BATCH}")
        return await self.store.failed(queue, limit)

    async def retry(self, job: JobRef) -> None:
        """Make a failed job ready again now."""
        await self.store.retry(_job_id(job))

    async def pause(self, queue: str) -> None:
        """Stop delivering jobs from ``queue`` (adds are still accepted)."""
        await self.store.pause(check_queue_name(queue), True)

    async def resume(self, queue: str) -> None:
        """Deliver jobs from ``queue`` again."""
        await self.store.pause(check_queue_name(queue), False)

    async def set_pause(self, queue: str, mode: PauseMode) -> None:
        """Set ``queue``'s pause mode: ``in`` refuses adds (``QueuePaused``), ``out`` stops
        delivery (as :meth:`pause`), ``all`` both, ``none`` neither (Disque PAUSE)."""
        if mode not in PAUSE_MODES:
            raise InvalidOption("mode", mode, f"one of {', '.join(PAUSE_MODES)}")
        await self.store.set_pause(check_queue_name(queue), mode)

    async def pause_mode(self, queue: str) -> PauseMode:
        """``queue``'s pause mode: ``none``, ``in``, ``out`` or ``all``."""
        return await self.store.pause_mode(check_queue_name(queue))

    async def enqueue(self, jobs: Sequence[JobRef]) -> int:
        """Make scheduled or leased jobs ready now (Disque ENQUEUE); return how many.

        A job that was delivered counts an additional delivery; a delivered at-most-once
        job is left alone.
        """
        ids = [_job_id(job) for job in jobs]
        return len(await self.store.enqueue(ids)) if ids else 0

    async def dequeue(self, jobs: Sequence[JobRef]) -> int:
        """Take ready jobs out of their queue without delivering them (Disque DEQUEUE):
        they are delivered again after their ``retry_after``. Returns how many."""
        ids = [_job_id(job) for job in jobs]
        return await self.store.dequeue(ids) if ids else 0

    async def scan(
        self,
        cursor: int = 0,
        count: int = 100,
        *,
        queue: str | None = None,
        states: Collection[JobState] | None = None,
    ) -> tuple[int, list[Job]]:
        """One page of a walk over every job, in enqueue order (Disque JSCAN).

        Start with ``cursor`` 0 and call again with the cursor returned until it is 0.
        """
        if isinstance(cursor, bool) or not isinstance(cursor, int) or cursor < 0:
            raise InvalidOption("cursor", cursor, "a cursor is an int >= 0")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_BATCH:
            raise InvalidOption("count", count, f"must be an int between 1 and {MAX_BATCH}")
        if queue is not None:
            check_queue_name(queue)
        wanted = None if states is None else frozenset(JobState(state) for state in states)
        return await self.store.scan(cursor, count, queue=queue, states=wanted)

    async def queues(self) -> list[QueueInfo]:
        """Every queue holding a job or paused, with its ready count and pause mode."""
        return await self.store.queues()

    async def flush(self) -> None:
        """Delete every job and pause mode of the store (Disque DEBUG FLUSHALL)."""
        await self.store.flush()

    async def recover_stale(self, max_age: float | None = None) -> int:
        """Requeue jobs whose lease ran out, and with ``max_age`` also those leased more than
        ``max_age`` seconds ago (even at-most-once ones). Returns how many."""
        if max_age is not None:
            Options(delay=max_age)  # same range as any duration
        return await self.store.recover_stale(max_age)

    async def close(self) -> None:
        """Close the store (a derived client leaves it to the client it came from)."""
        if self._owns_store:
            await self.store.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: builtins.type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # -- helpers ---------------------------------------------------------------------------

    def _timeout(self, timeout: float | None) -> float | None:
        """The seconds a blocking call waits: ``timeout`` (checked), else the client's."""
        if timeout is None:
            return self._options.timeout
        Options(timeout=timeout)  # validates
        return timeout

    def _encode_result(self, result: object) -> tuple[bytes | None, Encoding]:
        if result is None:
            return None, Encoding.BYTES
        return encode_value(result, self._max_body_bytes)

    async def _require(self, job_id: str) -> Job:
        job = await self.store.show(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    @staticmethod
    def _check_delivery(operation: str, current: Job, attempt: int | None) -> None:
        """Raise :class:`LeaseLost` if ``current`` is on another delivery than ``attempt``.

        Sound after a refused call: ``attempts`` only grows, so a job on another delivery
        now was on another one when the store refused, or went to one since (a newer
        delivery holds it either way).
        """
        if attempt is not None and current.attempts != attempt:
            raise LeaseLost(current.id, operation, attempt, current.attempts, current.state)

    async def _raise_lost(
        self, operation: str, ids: list[str], attempts: list[int | None], applied: Collection[str]
    ) -> None:
        """After a batch call the store applied to ``applied`` only: raise one
        :class:`LeaseLost` listing the other jobs that are on a newer delivery (unknown,
        already done or no longer leased ones are skipped, as the batch calls always did)."""
        done = set(applied)
        lost = []
        for job_id, attempt in zip(ids, attempts, strict=True):
            if attempt is None or job_id in done:
                continue
            current = await self.store.show(job_id)
            if current is not None and current.attempts != attempt:
                lost.append(LeaseLost(job_id, operation, attempt, current.attempts, current.state))
        if lost:
            raise LeaseLost.of_batch(lost, len(applied))


def connect_async(
    url: str | None = None,
    *,
    clock: Clock | None = None,
    options: Options | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    backoff_base: float = BACKOFF_BASE,
    backoff_cap: float = BACKOFF_CAP,
    holder: str | None = None,
) -> AsyncClient:
    """Open a client on the store ``url`` names (default: ``$DISQUETTE_URL``, else the
    embedded SQLite file ``./disquette.db``). ``holder``: who the client's leases go to
    (default ``$DISQUETTE_HOLDER``), see :meth:`AsyncClient.release_leases`."""
    store = open_async_store(resolve_url(url), clock or SystemClock())
    return AsyncClient(
        store,
        options,
        max_body_bytes=max_body_bytes,
        backoff_base=backoff_base,
        backoff_cap=backoff_cap,
        holder=holder,
    )
