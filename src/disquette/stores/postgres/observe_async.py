"""The PostgreSQL store's operations views (issue 14): the worker registry, jobs selected
by a filter (counted with a cap, paged by keyset), and rollups; migration 007 adds their
tables, the ``seq`` indexes and the ``body_scalar`` function.

This file is the asyncio source; ``observe.py`` beside it is generated from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from psycopg import AsyncConnection

from ...clock import Clock
from .._observe_sql import filter_sql, rollup_from_row, rollup_params
from .._sql import SEQ, row_to_job
from ..types import (
    ROLLUP_PERIODS,
    JobCount,
    JobFilter,
    JobPage,
    Resolution,
    RollupRow,
    WorkerInfo,
)
from .database_async import AsyncDatabase
from .upkeep_async import after_maintenance

#: Above every seq: the first page's keyset bound.
_TOP: Final = 2**63 - 1


class AsyncObserve:
    """Workers, filtered scans and rollups of :class:`AsyncPostgresStore`."""

    def __init__(self, db: AsyncDatabase, q: dict[str, str], clock: Clock, schema: str) -> None:
        self._db = db
        self._q = q
        self._clock = clock
        self._schema = schema

    async def register_worker(self, info: WorkerInfo, ttl: float) -> None:
        """Register or renew a worker; see :meth:`AsyncStore.register_worker`."""
        params = {"id": info.id, "info": info.to_json(), "expires_at": self._clock.now() + ttl}

        async def register(conn: AsyncConnection[Any]) -> None:
            await conn.execute(self._q["register_worker"], params)

        await self._db.run(register)

    async def unregister_worker(self, worker_id: str) -> None:
        """Forget a worker; see :meth:`AsyncStore.unregister_worker`."""

        async def unregister(conn: AsyncConnection[Any]) -> None:
            await conn.execute(self._q["unregister_worker"], {"id": worker_id})

        await self._db.run(unregister)

    async def workers(self) -> list[WorkerInfo]:
        """Live workers (the lapsed ones are deleted); see :meth:`AsyncStore.workers`."""
        now = {"now": self._clock.now()}

        async def workers(conn: AsyncConnection[Any]) -> list[Any]:
            await conn.execute(self._q["forget_workers"], now)
            return await (await conn.execute(self._q["workers"], now)).fetchall()

        return [WorkerInfo.from_json(info) for (info,) in await self._db.run(workers)]

    def _filtered(self, where: JobFilter) -> tuple[str, dict[str, Any], float]:
        terms, params = filter_sql(where, "postgres", self._schema)
        now = self._clock.now()
        params["now"] = now
        return f"{self._q['filtered_jobs']} WHERE {terms}", params, now

    async def count_jobs(self, where: JobFilter, cap: int) -> JobCount:
        """Count matching jobs, capped; see :meth:`AsyncStore.count_jobs`.

        ``SELECT count(*) FROM (... LIMIT cap + 1)``: at most ``cap`` + 1 rows are read,
        however many match.
        """
        selected, params, now = self._filtered(where)
        sql = f"SELECT count(*) FROM ({selected} LIMIT %(f_cap)s::int8) AS c"
        params["f_cap"] = cap + 1

        async def count(conn: AsyncConnection[Any]) -> list[Any]:
            return await after_maintenance(conn, self._q, now, sql, params)

        (n,) = (await self._db.run(count))[0]
        return JobCount(min(int(n), cap), int(n) > cap)

    async def scan_jobs(self, where: JobFilter, cursor: str | None, limit: int) -> JobPage:
        """A page of matching jobs, newest first; see :meth:`AsyncStore.scan_jobs`.

        Keyset paging on ``seq``: ``WHERE seq < cursor ... ORDER BY seq DESC LIMIT n``
        over the jobs and done tables is a Merge Append of two backward scans of their
        ``seq`` (or, with a queue, ``(queue, seq)``) indexes, started at the cursor and
        stopped once the page is full: page 1,000 costs what page 1 does, where an OFFSET
        reads every row before it. Error text and body path terms are tested on the rows
        walked (a rare match walks more of them).
        """
        selected, params, now = self._filtered(where)
        sql = f"{selected} AND seq < %(f_before)s::int8 ORDER BY seq DESC LIMIT %(f_limit)s::int8"
        params["f_before"] = _TOP if cursor is None else int(cursor)
        params["f_limit"] = limit + 1

        async def scan(conn: AsyncConnection[Any]) -> list[Any]:
            return await after_maintenance(conn, self._q, now, sql, params, True)

        rows = await self._db.run(scan)
        more = len(rows) > limit
        return JobPage(
            [row_to_job(row) for row in rows[:limit]],
            str(rows[limit - 1][SEQ]) if more else None,
        )

    async def record_rollups(self, rows: Sequence[RollupRow]) -> None:
        """Add rollups in, prune old ones; see :meth:`AsyncStore.record_rollups`."""
        now = self._clock.now()
        prunes = [
            {"resolution": resolution, "before": now - keep}
            for resolution, (_, keep) in ROLLUP_PERIODS.items()
        ]
        # Sorted: two workers flushing the same rows lock them in the same order.
        params = [rollup_params(row) for row in sorted(rows, key=_rollup_key)]

        async def record(conn: AsyncConnection[Any]) -> None:
            async with conn.transaction(), conn.cursor() as cursor:
                if params:
                    await cursor.executemany(self._q["record_rollup"], params)
                await cursor.executemany(self._q["prune_rollups"], prunes)

        await self._db.run(record)

    async def rollups(
        self, resolution: Resolution, since: float, queue: str | None, type: str | None
    ) -> list[RollupRow]:
        """Stored rollups; see :meth:`AsyncStore.rollups`."""
        params = {"resolution": resolution, "since": since, "queue": queue, "type": type}

        async def rollups(conn: AsyncConnection[Any]) -> list[Any]:
            return await (await conn.execute(self._q["rollups"], params)).fetchall()

        return [rollup_from_row(row) for row in await self._db.run(rollups)]


def _rollup_key(row: RollupRow) -> tuple[str, float, str, str]:
    return (row.resolution, row.start, row.queue, row.type)
