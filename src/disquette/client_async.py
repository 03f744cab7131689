"""The client: every user-facing operation, written once on top of the store interface.

This file is the asyncio source; ``client.py`` beside it is generated from it by
``scripts/unasync.py``, so the sync client calls its store directly, with no event loop.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import time
from collections.abc import Collection, Iterable, Sequence
from types import TracebackType
from typing import Any, Final

from . import metrics, tracing
from ._concurrency import AsyncSignal
from .client_admin_async import MAX_BATCH as MAX_BATCH  # re-exported (enqueue imports it)
from .client_admin_async import AsyncClientAdmin, JobRef, _job_id
from .client_flows_async import AsyncClientFlows
from .client_options import ClientOptions
from .clock import Clock, SystemClock
from .errors import (
    DisquetteError,
    InvalidOption,
    JobCancelled,
    JobFailed,
    LeaseLost,
    Timeout,
)
from .flows import Step
from .funnel_async import FETCH_COUNT, FETCH_TIMEOUT, AsyncFunnel
from .job import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULTS,
    AddResult,
    DependencyPolicy,
    Encoding,
    Job,
    JobState,
    Options,
    check_dependencies,
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
from .stores.types import DONE_CHANNEL, job_done_channel

#: First retry delay after an error; it doubles with each error, up to BACKOFF_CAP.
BACKOFF_BASE: Final = 1.0
BACKOFF_CAP: Final = 3600.0
#: The default ``holder`` of a client's leases (a supervisor sets it in each child).
ENV_HOLDER: Final = "DISQUETTE_HOLDER"
MAX_HOLDER_CHARS: Final = 200


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


class AsyncClient(ClientOptions, AsyncClientAdmin, AsyncClientFlows):
    """A connection to a store, with options. Derived clients share the store.

    Options come from three layers, each overriding the one before: the defaults,
    :meth:`use` (this client, every call), and :meth:`with_options` or the fluent setters
    (:meth:`timeout`, :meth:`delay`, ...), which return a derived client.

    The option layers live in :class:`~disquette.client_options.ClientOptions`, the
    inspecting and managing operations (``show``, ``peek``, ``stats``, ``scan``, ...) in
    :class:`~disquette.client_admin_async.AsyncClientAdmin`, chains and groups of
    dependent jobs in :class:`~disquette.client_flows_async.AsyncClientFlows`.
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

    # -- producing -------------------------------------------------------------------------

    async def add(
        self,
        body: object,
        queue: str,
        *,
        headers: dict[str, str] | None = None,
        connection: object = None,
        depends_on: Iterable[str] | None = None,
        on_dependency_failure: DependencyPolicy = "fail",
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

        ``depends_on``: ids of jobs this one waits for (state ``waiting``): it becomes ready
        once every one of them is done. ``on_dependency_failure``: when a parent fails for
        good, is cancelled, deleted or expires, ``"fail"`` (the default) ends this job too
        (``failed``, or ``cancelled`` after a parent that did not fail), ``"run"`` runs it
        anyway once no parent is pending. Each parent must exist (a done one counts as
        finished), else :class:`~disquette.errors.JobNotFound`; see also
        :meth:`add_chain` and :meth:`add_group`. Stores without dependencies (``disque://``)
        raise :class:`~disquette.errors.NotSupported`.
        """
        # _add itself, not add_many: the one-by-one add's hot path (a call with keywords
        # and a list of ids fewer).
        jobs, existing = await self._add(
            (body,), queue, connection, headers, depends_on, on_dependency_failure
        )
        job_id = jobs[0].id
        return existing.get(job_id, job_id) if existing else job_id

    async def add_many(
        self,
        bodies: Iterable[object],
        queue: str,
        *,
        headers: dict[str, str] | None = None,
        connection: object = None,
        depends_on: Iterable[str] | None = None,
        on_dependency_failure: DependencyPolicy = "fail",
    ) -> list[str]:
        """Add several jobs to ``queue`` in one transaction; all are added or none (but for
        those whose unique key is held: each answers the holder's id). Each job gets the
        same ``headers`` and parents (see :meth:`add`)."""
        jobs, existing = await self._add(
            bodies, queue, connection, headers, depends_on, on_dependency_failure
        )
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
        depends_on: Iterable[str] | None = None,
        on_dependency_failure: DependencyPolicy = "fail",
    ) -> AddResult:
        """As :meth:`add`, also telling whether the job was created (``created`` is False
        when its unique key was held: ``id`` is then the holder's)."""
        results = await self.add_many_results(
            [body],
            queue,
            headers=headers,
            connection=connection,
            depends_on=depends_on,
            on_dependency_failure=on_dependency_failure,
        )
        return results[0]

    async def add_many_results(
        self,
        bodies: Iterable[object],
        queue: str,
        *,
        headers: dict[str, str] | None = None,
        connection: object = None,
        depends_on: Iterable[str] | None = None,
        on_dependency_failure: DependencyPolicy = "fail",
    ) -> list[AddResult]:
        """As :meth:`add_many`, with an :class:`~disquette.job.AddResult` per body."""
        jobs, existing = await self._add(
            bodies, queue, connection, headers, depends_on, on_dependency_failure
        )
        return [AddResult(existing.get(job.id, job.id), job.id not in existing) for job in jobs]

    async def _add(
        self,
        bodies: Iterable[object],
        queue: str,
        connection: object,
        headers: dict[str, str] | None,
        depends_on: Iterable[str] | None = None,
        on_dependency_failure: DependencyPolicy = "fail",
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
        if depends_on is not None:
            parents = check_dependencies(depends_on, on_dependency_failure)
            for job in jobs:
                job.depends_on = parents
                job.on_dependency_failure = on_dependency_failure
        return jobs, await self._add_jobs(queue, jobs, connection)

    def _step_job(self, step: Step, now: float) -> Job:
        options = self._options.merge(step.options)
        body = [step.body]
        return new_jobs(options, body, step.queue, now, self._max_body_bytes, step.headers)[0]

    async def _add_jobs(self, queue: str, jobs: list[Job], connection: object) -> dict[str, str]:
        """Hand made jobs to the store (traced and counted as ``queue``'s adds)."""
        try:
            with tracing.adding(queue, jobs):
                existing = await self.store.add(
                    jobs,
                    self._options.max_len,
                    connection=connection,
                    replicate=self._options.replicate or 0,
                )
        except DisquetteError as error:
            metrics.add_rejected(queue, error)
            raise
        metrics.added(queue, jobs, existing)
        return existing

    # -- consuming -------------------------------------------------------------------------

    async def get(self, *queues: str, timeout: float | None = None) -> Job:
        """Lease the next job of the leftmost queue that has one, waiting up to ``timeout``
        seconds (default: the client's ``timeout`` option; 0: do not wait).

        Raises :class:`~disquette.errors.Timeout` if no job came in time.
        """
        timeout = self._timeout(timeout)
        jobs = await self._get(check_queue_names(queues), 1, timeout)
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
        return await self._get(names, count, self._timeout(timeout))

    async def _get(self, names: list[str], count: int, timeout: float | None) -> list[Job]:
        """:meth:`get_many` on checked arguments (``get`` checks its own, once)."""
        with tracing.receiving(names) as received:
            jobs = await self._claim(names, count, timeout)
            received(jobs)
        if jobs:
            metrics.delivered(jobs, self.store.clock.now())
        return jobs

    async def _claim(self, names: list[str], count: int, timeout: float | None) -> list[Job]:
        jobs = await self.store.claim(names, count, holder=self.holder)
        if jobs or timeout == 0:
            return jobs
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:  # a store that waits itself (Redis's BZPOPMIN), in bounded rounds
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return []
            jobs_or_none = await self.store.claim_blocking(
                names, count, remaining, holder=self.holder
            )
            if jobs_or_none is None:
                break
            if jobs_or_none:
                return jobs_or_none
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
        with tracing.settling("ack", (job,)):
            done = await self.store.ack([job_id], results, connection=connection, attempts=attempts)
        if not done:
            current = await self._require(job_id)
            self._check_delivery("ack", current, attempt)
        metrics.completed((job,), len(done))

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
        encoded = self._encode_results(results, len(ids))
        attempts = _deliveries(jobs, self.store.capabilities.tracks_deliveries)
        with tracing.settling("ack", jobs):
            if attempts is None:  # by id: only the count is needed
                count = await self.store.ack_count(ids, encoded, connection=connection)
                metrics.completed(jobs, count)
                return count
            done = await self.store.ack(ids, encoded, connection=connection, attempts=attempts)
        metrics.completed(jobs, len(done))
        if len(done) < len(ids):
            await self._raise_lost("ack", ids, attempts, done)
        return len(done)

    async def ack_many_and_get(
        self,
        jobs: Sequence[JobRef],
        results: Sequence[object] | None,
        *queues: str,
        count: int = 100,
    ) -> tuple[list[Job], LeaseLost | None]:
        """Acknowledge jobs as :meth:`ack_many` does, and lease up to ``count`` more from
        ``queues`` as :meth:`get_many` does without waiting, in one store call: for a
        consumer that finished jobs and wants the next ones. On SQLite both happen in one
        transaction (one commit instead of two).

        Returns the jobs leased, and the :class:`~disquette.errors.LeaseLost` that
        :meth:`ack_many` would raise for jobs whose delivery lost its lease (returned, not
        raised: the jobs leased are the caller's to run), or None.
        """
        names = check_queue_names(queues)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_BATCH:
            raise InvalidOption("count", count, f"must be an int between 1 and {MAX_BATCH}")
        ids = [_job_id(job) for job in jobs]
        encoded = self._encode_results(results, len(ids))
        attempts = _deliveries(jobs, self.store.capabilities.tracks_deliveries)
        settling = tracing.settling("ack", jobs) if ids else contextlib.nullcontext()
        with settling, tracing.receiving(names) as received:
            done, claimed = await self.store.ack_and_claim(
                ids, encoded, names, count, attempts=attempts, holder=self.holder
            )
            received(claimed)
        metrics.completed(jobs, len(done))
        if claimed:
            metrics.delivered(claimed, self.store.clock.now())
        if attempts is not None and len(done) < len(ids):
            try:
                await self._raise_lost("ack", ids, attempts, done)
            except LeaseLost as exc:
                return claimed, exc
        return claimed, None

    async def nack(self, job: JobRef) -> None:
        """Give a leased job back: it is delivered again at once, ``nacks`` + 1.

        A job that is no longer leased (done, or already redelivered) is left alone; an
        unknown id raises :class:`~disquette.errors.JobNotFound`. Given a :class:`Job`,
        the nack belongs to its delivery, as for :meth:`ack`: a job delivered again since
        raises :class:`~disquette.errors.LeaseLost`.
        """
        job_id, attempt = _delivery(job, self.store.capabilities.tracks_deliveries)
        attempts = None if attempt is None else [attempt]
        with tracing.settling("nack", (job,)):
            nacked = await self.store.nack([job_id], attempts=attempts)
        if not nacked:
            current = await self._require(job_id)
            self._check_delivery("nack", current, attempt)
        metrics.nacked((job,), len(nacked))

    async def nack_many(self, jobs: Sequence[JobRef]) -> int:
        """Give several leased jobs back in one transaction; return how many. Jobs whose
        delivery lost its lease are left alone, then listed by a
        :class:`~disquette.errors.LeaseLost` (as for :meth:`ack_many`)."""
        ids = [_job_id(job) for job in jobs]
        if not ids:
            return 0
        attempts = _deliveries(jobs, self.store.capabilities.tracks_deliveries)
        with tracing.settling("nack", jobs):
            nacked = await self.store.nack(ids, attempts=attempts)
        metrics.nacked(jobs, len(nacked))
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
            with tracing.settling("fail", (job,)):
                recorded = await self.store.fail(current.id, str(error), retry_at, attempt=attempt)
            if not recorded:
                # Refused: delivered again between the read above and the write?
                self._check_delivery("fail", await self._require(job_id), attempt)
        after = await self._require(current.id)
        if after.state is JobState.FAILED and current.state is not JobState.FAILED:
            metrics.failed(after)
        return after

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
        # The job's own channel: a store that knows who waits on which job wakes only us.
        channels = [DONE_CHANNEL, job_done_channel(job_id)]
        unsubscribe = self.store.wakeups.subscribe(channels, signal.set)
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

    def _encode_results(
        self, results: Sequence[object] | None, count: int
    ) -> list[tuple[bytes | None, Encoding]] | None:
        """A batch's results as the store takes them: one per job, or None for none."""
        if results is None:
            return None
        if len(results) != count:
            raise InvalidOption("results", len(results), f"one per job ({count})")
        if all(result is None for result in results):
            return None
        return [self._encode_result(result) for result in results]

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
