"""The store interface: the seam between the semantics and where jobs live.

Everything above it (client options, blocking, retries, worker, server) is written once
against these methods. A store only moves jobs between states atomically; it never
blocks (the client does the waiting) and reads time from its ``clock``.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Sequence

from ..clock import Clock
from ..errors import NotSupported
from ..job import Job, JobState, Stats
from .limits import QueueLimits
from .types import (
    Capabilities,
    Delivery,
    EncodedResult,
    JobCount,
    JobFilter,
    JobPage,
    NodeInfo,
    PauseMode,
    QueueCounts,
    QueueInfo,
    Resolution,
    RollupRow,
    ScheduleInfo,
    Wakeups,
    WorkerInfo,
    deliveries_of,
)


class AsyncStore(abc.ABC):
    """Abstract store. Subclasses implement every method with the documented semantics."""

    #: The URL the store was opened with (without a password).
    url: str
    clock: Clock
    #: In-process wake-ups; the store notifies a queue's channel when it gets ready jobs.
    wakeups: Wakeups
    #: How often a blocked call re-checks on its own, for changes no wake-up announces
    #: (another process's add on SQLite, a delay running out).
    poll_interval: float = 0.05
    #: What this kind of store can do: callers read these flags instead of probing (each
    #: store class states its own; a call it lacks still raises a typed error).
    capabilities: Capabilities = Capabilities()
    #: The highest ``replicate`` this store could honour (informational: ``add`` checks;
    #: 0 when ``capabilities.replication`` is off, or no replica is attached).
    max_replicas: int = 0
    #: False when calls never wait on I/O (the memory store): they can run inline on an
    #: event loop, and gathering several callers' calls into one saves nothing.
    blocking: bool = True

    @abc.abstractmethod
    async def add(
        self,
        jobs: Sequence[Job],
        max_len: int | None,
        *,
        connection: object = None,
        replicate: int = 0,
    ) -> dict[str, str]:
        """Insert new jobs (ids assigned) in one transaction; the store owns them after.
        Returns, for the jobs not created because their unique key was held, their id ->
        the holder's id (empty when every job was created, or its id was held already).

        A queue paused for input (:meth:`set_pause`) refuses the whole batch with
        ``QueuePaused``. With ``max_len``, refuse the whole batch with ``QueueFull`` if a
        queue would hold more than ``max_len`` queued jobs. With ``connection`` (a
        store-specific handle on the caller's transaction), insert inside that transaction;
        stores without transactions raise ``InvalidOption``. With ``replicate``, return only
        once that many replicas hold the jobs, else raise ``NotReplicated``.

        A job whose id the store holds, in any state (``done`` included, until pruned), is
        not added again: a store that runs an add again after its reply was lost (the add
        had committed) never brings back a job a worker finished meanwhile.

        Unique jobs (``capabilities.unique``): a job with a ``unique_key`` is not created
        while a job of its queue with that key is in one of that job's ``unique_states``
        (checked atomically with the insert; an earlier job of the same batch counts), and
        is answered with the holder's id. Stores without the capability raise
        ``NotSupported`` for a job with a key.

        Dependencies (``capabilities.dependencies``; stores without it raise
        ``NotSupported`` for a job with ``depends_on``): each parent must be a job the store
        holds (in any state) or an earlier job of the same batch, else the whole batch is
        refused with ``JobNotFound`` naming the parent (on Redis Cluster a parent must also
        share the job's hash slot, else ``InvalidOption``). A job whose parents are all
        ``done`` is added as usual; one with a parent still pending (waiting, scheduled,
        queued or active) is added ``waiting`` and is never delivered, enqueued or counted
        by ``qlen`` while it waits. A parent that has ended without being done (failed,
        cancelled) applies the job's ``on_dependency_failure`` at once (see below).

        A parent's :meth:`ack` releases its waiting children in the same transaction or
        script: a child whose last pending parent became done becomes ready (``queued``, or
        ``scheduled`` until its ``run_at``), its ``run_at`` raised to now so it takes its
        place behind the jobs already queued. A parent that ends without being done (failed
        for good by :meth:`fail` or :meth:`release_leases`, cancelled, deleted, or dropped by
        its TTL) resolves each waiting child by the child's policy, atomically with that
        end: ``run`` counts the parent as finished (the child is released once no parent is
        pending); ``fail`` ends the child at once, ``failed`` (kept as failed jobs are) when
        the parent failed, else ``cancelled`` (kept for its ``result_ttl``), with
        ``last_error`` :func:`~.types.dependency_error`; such an end resolves the child's own
        children in turn. A parent whose lease runs out, a nack or a retry (``fail`` with a
        ``retry_at``) release nothing. ``retry`` of a failed child makes it ready without
        waiting for anything. Waiting jobs keep their TTL and their unique key.
        """

    @abc.abstractmethod
    async def claim(
        self, queues: Sequence[str], count: int, *, holder: str | None = None
    ) -> list[Job]:
        """Lease up to ``count`` ready jobs, leftmost queue first, skipping paused queues.

        First makes due scheduled jobs ready, requeues jobs whose lease ran out
        (``additional_deliveries`` + 1; their delivery holds them until a claim takes
        them, see :meth:`ack`) and drops jobs whose TTL passed. Inside a queue the
        order is priority, then ``run_at``, then enqueue order. Each claimed job gets
        ``attempts`` + 1 and ``lease_until = now + retry_after`` (none when 0). ``holder``
        names the process the leases go to, for :meth:`release_leases`; it is kept while
        the job is active.
        """

    async def claim_deliveries(
        self, queues: Sequence[str], count: int, *, holder: str | None = None
    ) -> list[Delivery]:
        """:meth:`claim`, returning of each job only what delivering it over the Disque
        protocol takes (the server's GETJOB): the same jobs, in the same order, with the
        same leases. A store may read less than whole jobs for it; the default projects
        :meth:`claim`'s."""
        return deliveries_of(await self.claim(queues, count, holder=holder))

    async def claim_blocking(
        self,
        queues: Sequence[str],
        count: int,
        timeout: float | None,
        *,
        holder: str | None = None,
    ) -> list[Job] | None:
        """Claim as :meth:`claim` does, but wait inside the store, up to ``timeout`` seconds
        (None: a bounded while of the store's choosing), for a job to claim; an empty list
        when none came. ``None`` (the default) when the store cannot wait for these
        queues: the caller then waits on :attr:`wakeups` and claims again."""
        return None

    @abc.abstractmethod
    async def ack(
        self,
        job_ids: Sequence[str],
        results: Sequence[EncodedResult] | None = None,
        *,
        connection: object = None,
        attempts: Sequence[int | None] | None = None,
    ) -> list[str]:
        """Mark jobs done; return the ids of those that became done (unknown and already
        done ids are left out), in any order.

        ``attempts``: None to act by id (Disque's ACKJOB), else one per id, the delivery
        the caller holds (the job's ``attempts`` when it was claimed; None for that id
        alone acts by id): a job whose ``attempts`` differ was delivered again since, so
        it is left alone, and left out.

        A delivery whose lease ran out but that no claim took since still holds the job,
        for this call and for :meth:`nack`, :meth:`fail` and :meth:`working`, whether or
        not the store requeued the job meanwhile; if it did, acting on the job takes that
        requeue back (``additional_deliveries`` - 1): the lapse was no redelivery.

        ``results``: None when no job carries a result, else one per id, kept for the
        job's ``result_ttl`` (what ``wait`` returns). One call acks many jobs, results or
        not (a worker's batched acks).

        Per-id results let a caller that acks for several requesters at once (the server's
        group commit) tell each requester its own outcome.

        With ``connection``, inside the caller's transaction (as for :meth:`add`).
        """

    async def ack_count(
        self,
        job_ids: Sequence[str],
        results: Sequence[EncodedResult] | None = None,
        *,
        connection: object = None,
    ) -> int:
        """:meth:`ack` by id (no ``attempts``) for a caller that needs only how many jobs
        became done: a store whose protocol answers a count for a batch (Disque's ACKJOB)
        sends one command instead of one per id."""
        return len(await self.ack(job_ids, results, connection=connection))

    async def ack_and_claim(
        self,
        job_ids: Sequence[str],
        results: Sequence[EncodedResult] | None,
        queues: Sequence[str],
        count: int,
        *,
        attempts: Sequence[int | None] | None = None,
        holder: str | None = None,
    ) -> tuple[list[str], list[Job]]:
        """:meth:`ack` these jobs, then :meth:`claim` up to ``count`` more (a consumer that
        finished jobs and wants the next ones); returns what each returns.

        The default makes the two calls; a store may do both in one transaction (SQLite:
        one commit instead of two). The acks take effect even when the claim finds
        nothing; the claim sees the acks done.
        """
        done = await self.ack(job_ids, results, attempts=attempts)
        return done, await self.claim(queues, count, holder=holder)

    async def ack_and_claim_deliveries(
        self,
        job_ids: Sequence[str],
        queues: Sequence[str],
        count: int,
        *,
        holder: str | None = None,
    ) -> tuple[list[str], list[Delivery]]:
        """:meth:`ack` these jobs by id (no results), then :meth:`claim_deliveries` up to
        ``count`` more: what the Disque server's ACKJOBs and GETJOBs gathered in one loop
        iteration need; returns what each returns.

        The default makes the two calls (should the claim fail, the acks stand). A store
        that overrides it does both in one transaction, all or nothing (SQLite: one commit
        instead of two). The acks take effect even when the claim finds nothing; the claim
        sees the acks done.
        """
        done = await self.ack(job_ids)
        return done, await self.claim_deliveries(queues, count, holder=holder)

    @abc.abstractmethod
    async def nack(
        self, job_ids: Sequence[str], *, attempts: Sequence[int | None] | None = None
    ) -> dict[str, str]:
        """Put held jobs (active, or lapsed: see :meth:`ack`) back as ready, at their old
        position, ``nacks`` + 1; return the ids of those put back, each with its queue (so
        that a caller counting arrivals per queue needs no read). ``attempts`` as for
        :meth:`ack`."""

    @abc.abstractmethod
    async def fail(
        self, job_id: str, error: str, retry_at: float | None, *, attempt: int | None = None
    ) -> bool:
        """Record an error on a held job (active, or lapsed: see :meth:`ack`):
        ``error_count`` + 1, ``last_error``.

        The job runs again at ``retry_at``, or, when it is ``None``, is kept as failed.
        Returns whether the job was held (and, with ``attempt``, still on that delivery,
        as for :meth:`ack`).
        """

    @abc.abstractmethod
    async def working(self, job_id: str, *, attempt: int | None = None) -> float | None:
        """Extend a held job's lease to now + its ``retry_after``; return the new deadline.

        A lapsed job (see :meth:`ack`) is leased again. Raises ``JobNotFound``,
        ``LeaseLost`` (with ``attempt``: the job's ``attempts`` differ, a newer delivery
        started), ``InvalidState`` (no delivery holds the job) or ``JobCancelled`` (the job
        has a cancel request: its holder should stop, see :meth:`cancel`).
        """

    @abc.abstractmethod
    async def cancel(self, job_id: str, *, attempt: int | None = None) -> JobState:
        """Cancel a job; return its state after the call.

        Without ``attempt`` (a user's request): a scheduled or queued job becomes
        ``cancelled`` at once (kept like a done job for its ``result_ttl``, never delivered,
        ``wait`` raises ``JobCancelled``) and ``CANCELLED`` is returned; an active job gets
        ``cancel_requested`` (its holder is told on :data:`~.types.CANCEL_CHANNEL`, and
        :meth:`working` and :meth:`progress` raise ``JobCancelled`` from then on) and
        ``ACTIVE`` is returned. Raises ``JobNotFound``, or ``InvalidState`` for a finished
        (done, failed, cancelled) job.

        With ``attempt`` (the holder, once its handler stopped): the job held by that
        delivery (active, or lapsed: see :meth:`ack`) becomes ``cancelled``; raises
        ``LeaseLost`` for an older delivery, ``InvalidState`` when no delivery holds it.
        """

    @abc.abstractmethod
    async def progress(
        self, job_id: str, value: str, *, attempt: int | None = None
    ) -> float | None:
        """Record ``value`` (JSON text, size-checked by the caller) as a held job's progress
        and extend its lease as :meth:`working` does (same errors, and ``JobCancelled`` for
        a job with a cancel request, recording nothing); return the new deadline."""

    @abc.abstractmethod
    async def show(self, job_id: str) -> Job | None:
        """Return the job, or ``None`` when no live job has this id."""

    @abc.abstractmethod
    async def delete(self, job_ids: Sequence[str]) -> int:
        """Delete jobs in any state; return how many existed."""

    @abc.abstractmethod
    async def qlen(self, queue: str) -> int:
        """Number of ready jobs in the queue (due scheduled jobs count as ready)."""

    @abc.abstractmethod
    async def peek(self, queue: str, count: int) -> list[Job]:
        """The next ``count`` ready jobs of the queue in delivery order, without leasing."""

    @abc.abstractmethod
    async def failed(self, queue: str | None, limit: int) -> list[Job]:
        """Jobs kept as failed, oldest first, in one queue or all."""

    @abc.abstractmethod
    async def retry(self, job_id: str) -> None:
        """Make a failed job ready again now (``error_count`` is kept).

        Raises ``JobNotFound`` or ``InvalidState`` if it is not failed.
        """

    @abc.abstractmethod
    async def pause(self, queue: str, paused: bool) -> None:
        """Stop (or resume) delivery from a queue; adds are still accepted.

        Only the ``out`` half of the pause mode changes: a queue paused ``in`` stays so.
        """

    @abc.abstractmethod
    async def stats(self) -> Stats:
        """Counts per queue and type, including paused queues."""

    @abc.abstractmethod
    async def recover_stale(self, max_age: float | None) -> int:
        """Requeue active jobs whose lease ran out, or (with ``max_age``) that were leased
        more than ``max_age`` seconds ago even if at-most-once; return how many."""

    @abc.abstractmethod
    async def release_leases(self, holder: str) -> int:
        """Give back every active job leased to ``holder`` (its process is known to be dead),
        as if its lease ran out now: ready again, ``additional_deliveries`` + 1. An
        at-most-once job (``retry_after`` 0) is never delivered twice: it is kept as failed
        instead (``error_count`` + 1, ``last_error`` :data:`~disquette.stores.types.HOLDER_GONE`).
        Returns how many jobs the holder held."""

    # -- what Disque's commands need beyond the client API ---------------------------------

    @abc.abstractmethod
    async def set_pause(self, queue: str, mode: PauseMode) -> None:
        """Set a queue's pause mode: ``in`` refuses adds (``QueuePaused``), ``out`` stops
        delivery (as :meth:`pause`), ``all`` both, ``none`` neither. A paused queue is
        listed by :meth:`queues` even when it holds no job."""

    @abc.abstractmethod
    async def pause_mode(self, queue: str) -> PauseMode:
        """A queue's pause mode (``none`` for unknown queues)."""

    @abc.abstractmethod
    async def enqueue(self, job_ids: Sequence[str]) -> dict[str, str]:
        """Make scheduled or active jobs ready now, at their old position (Disque ENQUEUE).

        ``additional_deliveries`` + 1 for a job that was delivered before. An at-most-once
        job (``retry_after`` 0) that was delivered stays as it is. Returns the ids of the
        jobs that became ready, each with its queue (as :meth:`nack`).
        """

    @abc.abstractmethod
    async def dequeue(self, job_ids: Sequence[str]) -> int:
        """Take ready jobs out of their queue without delivering them (Disque DEQUEUE).

        Each becomes active with ``lease_until = now + retry_after`` (no lease when 0),
        so it is delivered again when that runs out; ``attempts`` is unchanged. Returns
        how many jobs were ready.
        """

    @abc.abstractmethod
    async def scan(
        self,
        cursor: int,
        count: int,
        *,
        queue: str | None = None,
        states: Collection[JobState] | None = None,
    ) -> tuple[int, list[Job]]:
        """Walk every live job (done ones included) in enqueue order (Disque JSCAN).

        Start with ``cursor`` 0; returns up to ``count`` jobs after the cursor that match
        ``queue`` and ``states``, and the cursor for the next call, 0 when the walk is over.
        Jobs added during a walk may or may not be returned; no job is returned twice.
        """

    @abc.abstractmethod
    async def queues(self) -> list[QueueInfo]:
        """Every queue that holds a live job (any state) or has a pause mode, by name."""

    @abc.abstractmethod
    async def flush(self) -> None:
        """Delete every job and every pause mode (Disque DEBUG FLUSHALL). Node
        registrations are kept."""

    @abc.abstractmethod
    async def register_node(self, node_id: str, address: str, ttl: float) -> None:
        """Register (or renew) a server of a pool sharing this store, until now + ``ttl``."""

    @abc.abstractmethod
    async def unregister_node(self, node_id: str) -> None:
        """Remove a node's registration (a clean shutdown)."""

    @abc.abstractmethod
    async def nodes(self) -> list[NodeInfo]:
        """Registered nodes whose registration has not lapsed, by id."""

    # -- the schedule registry (capabilities.schedules) ------------------------------------

    @abc.abstractmethod
    async def register_schedules(self, schedules: Sequence[ScheduleInfo]) -> None:
        """Record periodic jobs' definitions by name (a scheduler's at its start): a new
        name is added unpaused, a known one gets the given definition and keeps its paused
        flag (the ``paused`` of ``schedules`` is ignored). :meth:`flush` keeps them."""

    @abc.abstractmethod
    async def schedules(self) -> list[ScheduleInfo]:
        """Every registered schedule, by name, with its paused flag."""

    @abc.abstractmethod
    async def pause_schedule(self, name: str, paused: bool) -> bool:
        """Pause (a scheduler then fires none of its slots) or resume a registered
        schedule; return False, changing nothing, when no schedule has this name."""

    # -- operations (issue 14): capabilities.workers, job_filter, rollups ----------------
    # Not abstract: a store without the capability inherits the NotSupported refusals.

    async def register_worker(self, info: WorkerInfo, ttl: float) -> None:
        """Register (or renew: a heartbeat) a worker process until now + ``ttl``."""
        raise self._lacks("register_worker", "workers")

    async def unregister_worker(self, worker_id: str) -> None:
        """Remove a worker's registration (a clean stop)."""
        raise self._lacks("unregister_worker", "workers")

    async def workers(self) -> list[WorkerInfo]:
        """Registered workers whose registration has not lapsed, by id; lapsed ones are
        forgotten."""
        raise self._lacks("list workers", "workers")

    async def count_jobs(self, where: JobFilter, cap: int) -> JobCount:
        """How many live jobs match ``where``: exact up to ``cap``, else ``cap`` and
        ``capped``. Reads at most ``cap`` + 1 rows (never an unbounded count)."""
        raise self._lacks("count jobs", "job_filter")

    async def scan_jobs(self, where: JobFilter, cursor: str | None, limit: int) -> JobPage:
        """One page of the live jobs matching ``where``, newest first (by enqueue order,
        keyset paging on it: a page costs its own rows, however deep). ``cursor`` is
        None for the first page, else the previous page's; jobs added meanwhile come
        before the first page, so a walk never repeats nor skips a job that stays."""
        raise self._lacks("scan jobs", "job_filter")

    async def queue_counts(self, queue: str | None, cap: int) -> list[QueueCounts]:
        """Every queue the store knows (with jobs or a pause mode), or only ``queue``, by
        name: its jobs by state, each count exact up to ``cap`` at most and ``capped``
        past what the store can count in a bounded read (see :class:`~.types.QueueCounts`),
        its pause mode, and when its next ready job became ready. One bounded read of the
        store's indexes per call, whatever the store holds (``capabilities.queue_counts``)."""
        raise self._lacks("count queues", "queue_counts")

    async def record_rollups(self, rows: Sequence[RollupRow]) -> None:
        """Add ``rows`` into the stored rollups (summing rows of the same key), and drop
        the rows older than their resolution keeps (:data:`~.types.ROLLUP_PERIODS`)."""
        raise self._lacks("record rollups", "rollups")

    async def rollups(
        self, resolution: Resolution, since: float, queue: str | None, type: str | None
    ) -> list[RollupRow]:
        """Stored rollups of ``resolution`` starting at or after ``since``, in one queue
        and type or all, by (start, queue, type)."""
        raise self._lacks("read rollups", "rollups")

    def _lacks(self, operation: str, capability: str) -> NotSupported:
        return NotSupported(self.url.partition(":")[0], operation, Capabilities.reason(capability))

    # -- flow limits (issue 16) --------------------------------------------------------

    async def set_limits(self, queue: str, limits: QueueLimits | None) -> None:
        """Set ``queue``'s limits (``None`` or empty limits clear them); every claim, in
        any process, obeys them atomically (``capabilities.limits``). Setting a rate
        fills its bucket."""
        raise NotSupported(self.url.partition(":")[0], "set_limits", "it keeps no limits")

    async def limits(self) -> dict[str, QueueLimits]:
        """Every queue's limits, by queue name."""
        raise NotSupported(self.url.partition(":")[0], "limits", "it keeps no limits")

    async def migrate(self) -> list[int]:
        """Create or upgrade the store's schema; return the versions applied (none when it
        was current). Only stores with ``capabilities.migrations`` have a versioned schema:
        the others create what they need when opened and raise ``NotSupported``."""
        raise NotSupported(self.url.partition(":")[0], "migrate", "it has no versioned schema")

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections; the store cannot be used afterwards."""
