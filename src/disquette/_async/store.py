"""The store interface: the seam between the semantics and where jobs live.

Everything above it (client options, blocking, retries, worker, server) is written once
against these methods. A store only moves jobs between states atomically; it never
blocks (the client does the waiting) and reads time from its ``clock``.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from ..clock import Clock
from ..job import Encoding, Job, Stats
from ..stores.base import Wakeups


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
    #: The highest ``replicate`` this store could honour (informational: ``add`` checks).
    max_replicas: int = 0

    @abc.abstractmethod
    async def add(
        self,
        jobs: Sequence[Job],
        max_len: int | None,
        *,
        connection: object = None,
        replicate: int = 0,
    ) -> None:
        """Insert new jobs (ids assigned) in one transaction; the store owns them after.

        With ``max_len``, refuse the whole batch with ``QueueFull`` if a queue would hold
        more than ``max_len`` queued jobs. With ``connection`` (a store-specific handle on
        the caller's transaction), insert inside that transaction; stores without
        transactions raise ``InvalidOption``. With ``replicate``, return only once that many
        replicas hold the jobs, else raise ``NotReplicated``.
        """

    @abc.abstractmethod
    async def claim(self, queues: Sequence[str], count: int) -> list[Job]:
        """Lease up to ``count`` ready jobs, leftmost queue first, skipping paused queues.

        First makes due scheduled jobs ready, requeues jobs whose lease ran out
        (``additional_deliveries`` + 1) and drops jobs whose TTL passed. Inside a queue the
        order is priority, then ``run_at``, then enqueue order. Each claimed job gets
        ``attempts`` + 1 and ``lease_until = now + retry_after`` (none when 0).
        """

    @abc.abstractmethod
    async def ack(
        self,
        job_ids: Sequence[str],
        raw_result: bytes | None,
        result_encoding: Encoding,
        *,
        connection: object = None,
    ) -> int:
        """Mark jobs done (keeping the result for their ``result_ttl``); return how many.

        With ``connection``, inside the caller's transaction (as for :meth:`add`).
        """

    @abc.abstractmethod
    async def nack(self, job_ids: Sequence[str]) -> int:
        """Put active jobs back as ready, at their old position, ``nacks`` + 1."""

    @abc.abstractmethod
    async def fail(self, job_id: str, error: str, retry_at: float | None) -> bool:
        """Record an error on an active job: ``error_count`` + 1, ``last_error``.

        The job runs again at ``retry_at``, or, when it is ``None``, is kept as failed.
        Returns whether the job was active.
        """

    @abc.abstractmethod
    async def working(self, job_id: str) -> float | None:
        """Extend an active job's lease by its ``retry_after``; return the new deadline.

        Raises ``JobNotFound`` or ``InvalidState`` (the job is no longer leased).
        """

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
        """Stop (or resume) delivery from a queue; adds are still accepted."""

    @abc.abstractmethod
    async def stats(self) -> Stats:
        """Counts per queue and type, including paused queues."""

    @abc.abstractmethod
    async def recover_stale(self, max_age: float | None) -> int:
        """Requeue active jobs whose lease ran out, or (with ``max_age``) that were leased
        more than ``max_age`` seconds ago even if at-most-once; return how many."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections; the store cannot be used afterwards."""
