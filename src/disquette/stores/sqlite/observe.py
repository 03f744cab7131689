"""The SQLite store's operations views (issue 14): the worker registry, jobs selected by a
filter (counted with a cap, paged by keyset), and rollups. Schema version 5 adds their
tables and the ``jobs_queue_seq`` index."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from ...job import JobState
from .._observe_sql import filter_sql, rollup_from_row, rollup_params
from .._sql import COLUMNS, DEPENDENCY_COLUMNS, SEQ, STATES, row_to_job
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
    queue_counts_of,
)
from .database import QUERIES, SqliteDatabase

#: Above every seq: the first page's keyset bound.
_TOP: Final = 2**63 - 1

# queue_counts, in two statements, each reading a bounded number of index entries (see
# SqliteObserve.queue_counts). Kept here rather than in schema.sql: no migration needs them.
#
# The queues: a skip scan of jobs_queue_seq (one seek per queue, never a DISTINCT over the
# table) and the paused ones. Per queue: its queued and failed jobs counted up to :cap1 in
# their own partial indexes (jobs_ready, jobs_failed); its next ready job (jobs_ready's
# first entry); and, among its newest :cap1 jobs (jobs_queue_seq backwards), how many are
# done, cancelled and waiting, and how many were read (fewer than :cap1: the queue holds no
# more, so those three counts are exact).
_QUEUE_COUNTS: Final = """
WITH RECURSIVE names(queue) AS (
    SELECT min(queue) FROM jobs
    UNION ALL
    SELECT (SELECT min(queue) FROM jobs WHERE queue > names.queue) FROM names
    WHERE names.queue IS NOT NULL
), listed(queue) AS (
    SELECT queue FROM names WHERE queue IS NOT NULL
    UNION SELECT queue FROM paused_queues WHERE mode != 0
)
SELECT queue,
    (SELECT count(*) FROM (SELECT 1 FROM jobs INDEXED BY jobs_ready
                           WHERE queue = listed.queue AND state = 1 LIMIT :cap1)),
    (SELECT count(*) FROM (SELECT 1 FROM jobs INDEXED BY jobs_failed
                           WHERE queue = listed.queue AND state = 4 LIMIT :cap1)),
    (SELECT max(run_at, created_at) FROM jobs INDEXED BY jobs_ready
     WHERE queue = listed.queue AND state = 1 ORDER BY priority, run_at, seq LIMIT 1),
    (SELECT mode FROM paused_queues WHERE queue = listed.queue),
    (SELECT coalesce(sum(state = 3), 0) || ' ' || coalesce(sum(state = 5), 0) || ' '
            || coalesce(sum(state = 6), 0) || ' ' || count(*)
     FROM (SELECT state FROM jobs INDEXED BY jobs_queue_seq
           WHERE queue = listed.queue ORDER BY seq DESC LIMIT :cap1))
FROM listed WHERE :queue IS NULL OR queue = :queue ORDER BY queue
"""
# Scheduled and active jobs per queue, from the first :cap1 entries of each state's
# partial index (jobs_scheduled, jobs_leases, whose keys are no queue): exact for every
# queue while the store holds at most :cap of that state, else lower bounds.
_WINDOW_COUNTS: Final = """
SELECT 0, queue, count(*) FROM (
    SELECT queue FROM jobs INDEXED BY jobs_scheduled WHERE state = 0 LIMIT :cap1)
WHERE :queue IS NULL OR queue = :queue GROUP BY queue
UNION ALL
SELECT 2, queue, count(*) FROM (
    SELECT queue FROM jobs INDEXED BY jobs_leases WHERE state = 2 LIMIT :cap1)
WHERE :queue IS NULL OR queue = :queue GROUP BY queue
UNION ALL
SELECT -1, 0, (SELECT count(*) FROM (
    SELECT 1 FROM jobs INDEXED BY jobs_scheduled WHERE state = 0 LIMIT :cap1))
UNION ALL
SELECT -1, 2, (SELECT count(*) FROM (
    SELECT 1 FROM jobs INDEXED BY jobs_leases WHERE state = 2 LIMIT :cap1))
"""


class SqliteObserve(SqliteDatabase):
    """Workers, filtered scans and rollups of :class:`~disquette.stores.sqlite.SqliteStore`."""

    def register_worker(self, info: WorkerInfo, ttl: float) -> None:
        """Register or renew a worker; see :meth:`Store.register_worker`."""
        params = {"id": info.id, "info": info.to_json(), "expires_at": self.clock.now() + ttl}
        with self._transaction() as conn:
            conn.execute(QUERIES["register_worker"], params)

    def unregister_worker(self, worker_id: str) -> None:
        """Forget a worker; see :meth:`Store.unregister_worker`."""
        with self._transaction() as conn:
            conn.execute(QUERIES["unregister_worker"], {"id": worker_id})

    def workers(self) -> list[WorkerInfo]:
        """Live workers (the lapsed ones are deleted); see :meth:`Store.workers`."""
        now = {"now": self.clock.now()}
        with self._transaction() as conn:
            conn.execute(QUERIES["forget_workers"], now)
            rows = conn.execute(QUERIES["workers"], now).fetchall()
        return [WorkerInfo.from_json(info) for (info,) in rows]

    def count_jobs(self, where: JobFilter, cap: int) -> JobCount:
        """Count matching jobs, capped; see :meth:`Store.count_jobs`.

        ``SELECT count(*) FROM (SELECT 1 ... LIMIT cap + 1)``: at most ``cap`` + 1 rows
        are read, whatever the table holds.
        """
        self._refresh(reading=True)
        terms, params = filter_sql(where, "sqlite")
        sql = f"SELECT count(*) FROM (SELECT 1 FROM jobs WHERE {terms} LIMIT :f_cap)"
        with self._connection() as conn:
            (n,) = conn.execute(sql, {**params, "f_cap": cap + 1}).fetchone()
        return JobCount(min(n, cap), n > cap)

    def queue_counts(self, queue: str | None, cap: int) -> list[QueueCounts]:
        """Every queue's jobs by state, capped; see :meth:`Store.queue_counts`.

        Two statements, whatever the file holds: queued and failed jobs are counted exactly
        up to ``cap`` in their partial indexes; scheduled and active ones in the first
        ``cap`` + 1 entries of theirs (exact while the file holds at most ``cap`` jobs in
        that state, all queues together, else capped); done, cancelled and waiting ones
        among the queue's newest ``cap`` + 1 jobs (exact while the queue holds at most
        ``cap`` jobs, else capped: no index has their state, and adding one would slow
        every ack).
        """
        self._refresh(reading=True)
        params = {"cap1": cap + 1, "queue": queue}
        with self._connection() as conn:
            rows = conn.execute(_QUEUE_COUNTS, params).fetchall()
            windows = conn.execute(_WINDOW_COUNTS, params).fetchall()
        window: dict[str, dict[JobState, int]] = {}
        past: set[JobState] = set()
        for code, name, n in windows:
            if code == -1:
                if n > cap:
                    past.add(STATES[name])
            else:
                window.setdefault(name, {})[STATES[code]] = n
        result = []
        for name, queued, failed, ready_since, mode, newest in rows:
            done, cancelled, waiting, read = (int(part) for part in newest.split())
            exact = {
                **window.get(name, {}),
                JobState.QUEUED: queued,
                JobState.FAILED: failed,
                JobState.DONE: done,
                JobState.CANCELLED: cancelled,
                JobState.WAITING: waiting,
            }
            lower = set(past)
            if read > cap:
                lower |= {JobState.DONE, JobState.CANCELLED, JobState.WAITING}
            pause = PAUSE_MODES[mode or 0]
            result.append(queue_counts_of(name, exact, cap, pause, ready_since, frozenset(lower)))
        return result

    def scan_jobs(self, where: JobFilter, cursor: str | None, limit: int) -> JobPage:
        """A page of matching jobs, newest first; see :meth:`Store.scan_jobs`.

        Keyset paging on ``seq`` (the rowid): ``WHERE seq < :cursor ... ORDER BY seq DESC
        LIMIT n`` starts at the cursor's row in the table's own b-tree (or, with a queue,
        in ``jobs_queue_seq``) and reads on until the page is full, so page 1,000 costs
        what page 1 does; an OFFSET would read every row before it. The cursor is the
        page's last seq. A rare match (an error text, a body path) reads more rows per
        page: those terms are tested on the rows, not looked up in an index.
        """
        self._refresh(reading=True)
        terms, params = filter_sql(where, "sqlite")
        sql = (
            f"SELECT {COLUMNS}, {DEPENDENCY_COLUMNS} FROM jobs WHERE seq < :f_before AND {terms} "
            "ORDER BY seq DESC LIMIT :f_limit"
        )
        before = _TOP if cursor is None else int(cursor)
        with self._connection() as conn:
            bounds = {"f_before": before, "f_limit": limit + 1}
            rows = conn.execute(sql, {**params, **bounds}).fetchall()
        more = len(rows) > limit
        return JobPage(
            [row_to_job(row) for row in rows[:limit]], str(rows[limit - 1][SEQ]) if more else None
        )

    def record_rollups(self, rows: Sequence[RollupRow]) -> None:
        """Add rollups in, prune old ones; see :meth:`Store.record_rollups`."""
        now = self.clock.now()
        with self._transaction() as conn:
            for row in rows:
                conn.execute(QUERIES["record_rollup"], rollup_params(row))
            for resolution, (_, keep) in ROLLUP_PERIODS.items():
                params = {"resolution": resolution, "before": now - keep}
                conn.execute(QUERIES["prune_rollups"], params)

    def rollups(
        self, resolution: Resolution, since: float, queue: str | None, type: str | None
    ) -> list[RollupRow]:
        """Stored rollups; see :meth:`Store.rollups`."""
        params = {"resolution": resolution, "since": since, "queue": queue, "type": type}
        with self._connection() as conn:
            rows = conn.execute(QUERIES["rollups"], params).fetchall()
        return [rollup_from_row(row) for row in rows]
