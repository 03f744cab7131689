"""The in-memory store's operations views (issue 14): the worker registry, jobs selected by
a filter, and rollups. Kept apart from the job moves; :meth:`flush` keeps workers and
rollups, as it keeps nodes."""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from ...clock import Clock
from ...job import JobState
from ..types import (
    PAUSE_MODES,
    ROLLUP_PERIODS,
    JobCount,
    JobFilter,
    JobPage,
    QueueCounts,
    Resolution,
    RollupRow,
    WorkerInfo,
    merge_rollups,
    queue_counts_of,
)
from .state import MemoryState

_RollupKey = tuple[str, float, str, str]


class MemoryObserve(MemoryState):
    """Workers, filtered scans and rollups of :class:`~disquette.stores.memory.MemoryStore`."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self._workers: dict[str, tuple[WorkerInfo, float]] = {}
        self._rollups: dict[_RollupKey, RollupRow] = {}

    def register_worker(self, info: WorkerInfo, ttl: float) -> None:
        """Register or renew a worker; see :meth:`Store.register_worker`."""
        with self._lock:
            self._workers[info.id] = (info, self.clock.now() + ttl)

    def unregister_worker(self, worker_id: str) -> None:
        """Forget a worker; see :meth:`Store.unregister_worker`."""
        with self._lock:
            self._workers.pop(worker_id, None)

    def workers(self) -> list[WorkerInfo]:
        """Live workers; see :meth:`Store.workers`."""
        now = self.clock.now()
        with self._lock:
            for worker_id in [w for w, (_, until) in self._workers.items() if until <= now]:
                del self._workers[worker_id]
            return [self._workers[w][0] for w in sorted(self._workers)]

    def _matching(self, where: JobFilter, below: int | None) -> list[tuple[int, str]]:
        """(seq, id) of the matching jobs, below seq ``below`` (None: all)."""
        self._tick(self.clock.now())
        return [
            (seq, job_id)
            for job_id, seq in self._seq.items()
            if (below is None or seq < below) and where.matches(self._jobs[job_id])
        ]

    def count_jobs(self, where: JobFilter, cap: int) -> JobCount:
        """Count matching jobs, capped; see :meth:`Store.count_jobs`."""
        with self._lock:
            n = len(self._matching(where, None))
        return JobCount(min(n, cap), n > cap)

    def queue_counts(self, queue: str | None, cap: int) -> list[QueueCounts]:
        """Every queue's jobs by state, exact up to ``cap``; see :meth:`Store.queue_counts`.
        The jobs are in this process: they are all counted."""
        with self._lock:
            self._tick(self.clock.now())
            counts: dict[str, dict[JobState, int]] = {}
            next_ready: dict[str, tuple[int, float, int, float]] = {}
            for job_id, job in self._jobs.items():
                if queue is not None and job.queue != queue:
                    continue
                by_state = counts.setdefault(job.queue, {})
                by_state[job.state] = by_state.get(job.state, 0) + 1
                if job.state is JobState.QUEUED:
                    key = (job.priority, job.run_at, self._seq[job_id], job.created_at)
                    if job.queue not in next_ready or key < next_ready[job.queue]:
                        next_ready[job.queue] = key
            names = set(counts) | {name for name in self._pause if queue in (None, name)}
            modes = {name: PAUSE_MODES[self._pause.get(name, 0)] for name in names}
        return [
            queue_counts_of(
                name,
                counts.get(name, {}),
                cap,
                modes[name],
                max(next_ready[name][1], next_ready[name][3]) if name in next_ready else None,
            )
            for name in sorted(names)
        ]

    def scan_jobs(self, where: JobFilter, cursor: str | None, limit: int) -> JobPage:
        """A page of matching jobs, newest first; see :meth:`Store.scan_jobs`. The cursor is
        the enqueue sequence number of the page's last job."""
        with self._lock:
            below = None if cursor is None else int(cursor)
            page = heapq.nlargest(limit + 1, self._matching(where, below))
            jobs = [self._jobs[job_id].copy() for _, job_id in page[:limit]]
        more = len(page) > limit
        return JobPage(jobs, str(page[limit - 1][0]) if more else None)

    def record_rollups(self, rows: Sequence[RollupRow]) -> None:
        """Add rollups in; see :meth:`Store.record_rollups`."""
        now = self.clock.now()
        with self._lock:
            merged = merge_rollups([*self._rollups.values(), *rows])
            self._rollups = {
                (row.resolution, row.start, row.queue, row.type): row
                for row in merged
                if row.start >= now - ROLLUP_PERIODS[row.resolution][1]
            }

    def rollups(
        self, resolution: Resolution, since: float, queue: str | None, type: str | None
    ) -> list[RollupRow]:
        """Stored rollups; see :meth:`Store.rollups`."""
        with self._lock:
            return [
                row
                for key, row in sorted(self._rollups.items())
                if key[0] == resolution
                and row.start >= since
                and (queue is None or row.queue == queue)
                and (type is None or row.type == type)
            ]
