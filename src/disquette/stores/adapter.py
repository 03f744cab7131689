"""Give the asyncio client a store whose driver is synchronous (SQLite, memory).

Stores that never block (memory) are called inline. A store that may wait for a lock held
by another thread or process (SQLite) is called inline too when it can go ahead at once, and
on one dedicated thread per store otherwise, as aiosqlite does. A thread hop costs tens of
microseconds on every call, more than a SQLite commit; the price of the inline path is that
the event loop does the commit's I/O itself (microseconds, milliseconds at a checkpoint).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Protocol, TypeVar, runtime_checkable

from ..job import Job, JobState, Stats
from .limits import QueueLimits
from .store import Store
from .store_async import AsyncStore
from .types import (
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
    WorkerInfo,
    WouldBlock,
)

T = TypeVar("T")


@runtime_checkable
class FailsFast(Protocol):
    """A store that can run a call only if it need not wait (see SqliteStore.nonblocking)."""

    def nonblocking(self) -> AbstractContextManager[None]:
        """Context in which calls raise WouldBlock instead of waiting for a lock."""
        ...


class SyncStoreAdapter(AsyncStore):
    """An :class:`AsyncStore` over a sync :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.inner = store
        self.url = store.url
        self.clock = store.clock
        self.wakeups = store.wakeups
        self.poll_interval = store.poll_interval
        self.max_replicas = store.max_replicas
        self.capabilities = store.capabilities
        self._executor: ThreadPoolExecutor | None = None
        self._fails_fast = store if isinstance(store, FailsFast) else None
        # Unless a store says it never blocks (memory), its calls may wait on I/O.
        self.blocking = store.blocking
        if store.blocking:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="disquette-store")

    async def _call(self, function: Callable[..., T], *args: object) -> T:
        if self._executor is None:
            return function(*args)
        if self._fails_fast is not None:
            try:
                with self._fails_fast.nonblocking():
                    return function(*args)
            except WouldBlock:
                pass
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def add(
        self,
        jobs: Sequence[Job],
        max_len: int | None,
        *,
        connection: object = None,
        replicate: int = 0,
    ) -> dict[str, str]:
        """See :meth:`AsyncStore.add`."""
        # The inner store decides: it joins the transaction or waits for replicas, or refuses.
        add = functools.partial(self.inner.add, connection=connection, replicate=replicate)
        return await self._call(add, jobs, max_len)

    async def claim(
        self, queues: Sequence[str], count: int, *, holder: str | None = None
    ) -> list[Job]:
        """See :meth:`AsyncStore.claim`."""
        if holder is None:
            return await self._call(self.inner.claim, queues, count)
        return await self._call(functools.partial(self.inner.claim, holder=holder), queues, count)

    async def claim_deliveries(
        self, queues: Sequence[str], count: int, *, holder: str | None = None
    ) -> list[Delivery]:
        """See :meth:`AsyncStore.claim_deliveries`."""
        claim = self.inner.claim_deliveries
        if holder is None:
            return await self._call(claim, queues, count)
        return await self._call(functools.partial(claim, holder=holder), queues, count)

    async def ack(
        self,
        job_ids: Sequence[str],
        results: Sequence[EncodedResult] | None = None,
        *,
        connection: object = None,
        attempts: Sequence[int | None] | None = None,
    ) -> list[str]:
        """See :meth:`AsyncStore.ack`."""
        ack = functools.partial(self.inner.ack, connection=connection, attempts=attempts)
        return await self._call(ack, job_ids, results)

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
        """See :meth:`AsyncStore.ack_and_claim`."""
        both = functools.partial(self.inner.ack_and_claim, attempts=attempts, holder=holder)
        return await self._call(both, job_ids, results, queues, count)

    async def ack_and_claim_deliveries(
        self,
        job_ids: Sequence[str],
        queues: Sequence[str],
        count: int,
        *,
        holder: str | None = None,
    ) -> tuple[list[str], list[Delivery]]:
        """See :meth:`AsyncStore.ack_and_claim_deliveries`."""
        both = self.inner.ack_and_claim_deliveries
        if holder is None:
            return await self._call(both, job_ids, queues, count)
        return await self._call(functools.partial(both, holder=holder), job_ids, queues, count)

    async def nack(
        self, job_ids: Sequence[str], *, attempts: Sequence[int | None] | None = None
    ) -> dict[str, str]:
        """See :meth:`AsyncStore.nack`."""
        return await self._call(functools.partial(self.inner.nack, attempts=attempts), job_ids)

    async def fail(
        self, job_id: str, error: str, retry_at: float | None, *, attempt: int | None = None
    ) -> bool:
        """See :meth:`AsyncStore.fail`."""
        fail = functools.partial(self.inner.fail, attempt=attempt)
        return await self._call(fail, job_id, error, retry_at)

    async def working(self, job_id: str, *, attempt: int | None = None) -> float | None:
        """See :meth:`AsyncStore.working`."""
        return await self._call(functools.partial(self.inner.working, attempt=attempt), job_id)

    async def cancel(self, job_id: str, *, attempt: int | None = None) -> JobState:
        """See :meth:`AsyncStore.cancel`."""
        return await self._call(functools.partial(self.inner.cancel, attempt=attempt), job_id)

    async def progress(
        self, job_id: str, value: str, *, attempt: int | None = None
    ) -> float | None:
        """See :meth:`AsyncStore.progress`."""
        progress = functools.partial(self.inner.progress, attempt=attempt)
        return await self._call(progress, job_id, value)

    async def release_leases(self, holder: str) -> int:
        """See :meth:`AsyncStore.release_leases`."""
        return await self._call(self.inner.release_leases, holder)

    async def show(self, job_id: str) -> Job | None:
        """See :meth:`AsyncStore.show`."""
        return await self._call(self.inner.show, job_id)

    async def delete(self, job_ids: Sequence[str]) -> int:
        """See :meth:`AsyncStore.delete`."""
        return await self._call(self.inner.delete, job_ids)

    async def qlen(self, queue: str) -> int:
        """See :meth:`AsyncStore.qlen`."""
        return await self._call(self.inner.qlen, queue)

    async def peek(self, queue: str, count: int) -> list[Job]:
        """See :meth:`AsyncStore.peek`."""
        return await self._call(self.inner.peek, queue, count)

    async def failed(self, queue: str | None, limit: int) -> list[Job]:
        """See :meth:`AsyncStore.failed`."""
        return await self._call(self.inner.failed, queue, limit)

    async def retry(self, job_id: str) -> None:
        """See :meth:`AsyncStore.retry`."""
        await self._call(self.inner.retry, job_id)

    async def pause(self, queue: str, paused: bool) -> None:
        """See :meth:`AsyncStore.pause`."""
        await self._call(self.inner.pause, queue, paused)

    async def stats(self) -> Stats:
        """See :meth:`AsyncStore.stats`."""
        return await self._call(self.inner.stats)

    async def recover_stale(self, max_age: float | None) -> int:
        """See :meth:`AsyncStore.recover_stale`."""
        return await self._call(self.inner.recover_stale, max_age)

    async def set_pause(self, queue: str, mode: PauseMode) -> None:
        """See :meth:`AsyncStore.set_pause`."""
        await self._call(self.inner.set_pause, queue, mode)

    async def pause_mode(self, queue: str) -> PauseMode:
        """See :meth:`AsyncStore.pause_mode`."""
        return await self._call(self.inner.pause_mode, queue)

    async def enqueue(self, job_ids: Sequence[str]) -> dict[str, str]:
        """See :meth:`AsyncStore.enqueue`."""
        return await self._call(self.inner.enqueue, job_ids)

    async def dequeue(self, job_ids: Sequence[str]) -> int:
        """See :meth:`AsyncStore.dequeue`."""
        return await self._call(self.inner.dequeue, job_ids)

    async def scan(
        self,
        cursor: int,
        count: int,
        *,
        queue: str | None = None,
        states: Collection[JobState] | None = None,
    ) -> tuple[int, list[Job]]:
        """See :meth:`AsyncStore.scan`."""

        def scan() -> tuple[int, list[Job]]:
            return self.inner.scan(cursor, count, queue=queue, states=states)

        return await self._call(scan)

    async def queues(self) -> list[QueueInfo]:
        """See :meth:`AsyncStore.queues`."""
        return await self._call(self.inner.queues)

    async def flush(self) -> None:
        """See :meth:`AsyncStore.flush`."""
        await self._call(self.inner.flush)

    async def register_node(self, node_id: str, address: str, ttl: float) -> None:
        """See :meth:`AsyncStore.register_node`."""
        await self._call(self.inner.register_node, node_id, address, ttl)

    async def unregister_node(self, node_id: str) -> None:
        """See :meth:`AsyncStore.unregister_node`."""
        await self._call(self.inner.unregister_node, node_id)

    async def nodes(self) -> list[NodeInfo]:
        """See :meth:`AsyncStore.nodes`."""
        return await self._call(self.inner.nodes)

    async def register_schedules(self, schedules: Sequence[ScheduleInfo]) -> None:
        """See :meth:`AsyncStore.register_schedules`."""
        await self._call(self.inner.register_schedules, schedules)

    async def schedules(self) -> list[ScheduleInfo]:
        """See :meth:`AsyncStore.schedules`."""
        return await self._call(self.inner.schedules)

    async def pause_schedule(self, name: str, paused: bool) -> bool:
        """See :meth:`AsyncStore.pause_schedule`."""
        return await self._call(self.inner.pause_schedule, name, paused)

    async def register_worker(self, info: WorkerInfo, ttl: float) -> None:
        """See :meth:`AsyncStore.register_worker`."""
        await self._call(self.inner.register_worker, info, ttl)

    async def unregister_worker(self, worker_id: str) -> None:
        """See :meth:`AsyncStore.unregister_worker`."""
        await self._call(self.inner.unregister_worker, worker_id)

    async def workers(self) -> list[WorkerInfo]:
        """See :meth:`AsyncStore.workers`."""
        return await self._call(self.inner.workers)

    async def count_jobs(self, where: JobFilter, cap: int) -> JobCount:
        """See :meth:`AsyncStore.count_jobs`."""
        return await self._call(self.inner.count_jobs, where, cap)

    async def queue_counts(self, queue: str | None, cap: int) -> list[QueueCounts]:
        """See :meth:`AsyncStore.queue_counts`."""
        return await self._call(self.inner.queue_counts, queue, cap)

    async def scan_jobs(self, where: JobFilter, cursor: str | None, limit: int) -> JobPage:
        """See :meth:`AsyncStore.scan_jobs`."""
        return await self._call(self.inner.scan_jobs, where, cursor, limit)

    async def record_rollups(self, rows: Sequence[RollupRow]) -> None:
        """See :meth:`AsyncStore.record_rollups`."""
        await self._call(self.inner.record_rollups, rows)

    async def rollups(
        self, resolution: Resolution, since: float, queue: str | None, type: str | None
    ) -> list[RollupRow]:
        """See :meth:`AsyncStore.rollups`."""
        return await self._call(self.inner.rollups, resolution, since, queue, type)

    async def set_limits(self, queue: str, limits: QueueLimits | None) -> None:
        """See :meth:`AsyncStore.set_limits`."""
        await self._call(self.inner.set_limits, queue, limits)

    async def limits(self) -> dict[str, QueueLimits]:
        """See :meth:`AsyncStore.limits`."""
        return await self._call(self.inner.limits)

    async def migrate(self) -> list[int]:
        """See :meth:`AsyncStore.migrate`."""
        return await self._call(self.inner.migrate)

    async def close(self) -> None:
        """Close the inner store and stop the store thread."""
        await self._call(self.inner.close)
        if self._executor is not None:
            self._executor.shutdown(wait=False)
