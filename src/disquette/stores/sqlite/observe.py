"""The SQLite store's operations views (issue 14): the worker registry, jobs selected by a
filter (counted with a cap, paged by keyset), and rollups. Schema version 5 adds their
tables and the ``jobs_queue_seq`` index."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from .._observe_sql import filter_sql, rollup_from_row, rollup_params
from .._sql import COLUMNS, SEQ, row_to_job
from ..types import (
    ROLLUP_PERIODS,
    JobCount,
    JobFilter,
    JobPage,
    Resolution,
    RollupRow,
    WorkerInfo,
)
from .database import QUERIES, SqliteDatabase

#: Above every seq: the first page's keyset bound.
_TOP: Final = 2**63 - 1


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
            f"SELECT {COLUMNS} FROM jobs WHERE seq < :f_before AND {terms} "
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
