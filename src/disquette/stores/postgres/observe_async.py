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
from ...job import JobState
from .._observe_sql import filter_sql, rollup_from_row, rollup_params
from .._sql import SEQ, row_to_job
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
from .database_async import AsyncDatabase
from .upkeep_async import after_maintenance, maintain

#: Above every seq: the first page's keyset bound.
_TOP: Final = 2**63 - 1

# queue_counts in one statement, each part reading a bounded number of index entries. The
# queues: skip scans of jobs_queue_seq and done_queue_seq (one index seek per queue, never
# a DISTINCT over a table) and the paused ones. Per queue: queued, failed and done jobs
# counted up to %(cap1)s in jobs_ready, jobs_failed and done_queue_seq; its next ready job;
# its cancelled and waiting jobs among its newest %(cap1)s in jobs (jobs_queue_seq
# backwards; "read" under %(cap1)s: the queue holds no more, so those counts are exact).
# Scheduled and active jobs from the first %(cap1)s entries of jobs_scheduled and
# jobs_leases (whose keys are no queue): exact while the store holds at most the cap of
# that state.
_QUEUE_COUNTS: Final = """
WITH RECURSIVE jq(queue) AS (
    (SELECT queue FROM {schema}.jobs ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue FROM {schema}.jobs AS j WHERE j.queue > jq.queue
            ORDER BY j.queue LIMIT 1)
    FROM jq WHERE jq.queue IS NOT NULL
), dq(queue) AS (
    (SELECT queue FROM {schema}.done ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT d.queue FROM {schema}.done AS d WHERE d.queue > dq.queue
            ORDER BY d.queue LIMIT 1)
    FROM dq WHERE dq.queue IS NOT NULL
), listed(queue) AS (
    SELECT queue FROM jq WHERE queue IS NOT NULL
    UNION SELECT queue FROM dq WHERE queue IS NOT NULL
    UNION SELECT queue FROM {schema}.paused_queues WHERE mode <> 0
), sched AS MATERIALIZED (
    SELECT queue FROM {schema}.jobs WHERE state = 0 LIMIT %(cap1)s::int8
), act AS MATERIALIZED (
    SELECT queue FROM {schema}.jobs WHERE state = 2 LIMIT %(cap1)s::int8
)
SELECT l.queue,
    (SELECT count(*) FROM (SELECT 1 FROM {schema}.jobs AS j
                           WHERE j.queue = l.queue AND j.state = 1 LIMIT %(cap1)s::int8) AS x),
    (SELECT count(*) FROM (SELECT 1 FROM {schema}.jobs AS j
                           WHERE j.queue = l.queue AND j.state = 4 LIMIT %(cap1)s::int8) AS x),
    (SELECT count(*) FROM (SELECT 1 FROM {schema}.done AS d WHERE d.queue = l.queue
                           AND d.expires_at > %(now)s::float8 LIMIT %(cap1)s::int8) AS x),
    (SELECT greatest(j.run_at, j.created_at) FROM {schema}.jobs AS j
     WHERE j.queue = l.queue AND j.state = 1 ORDER BY j.priority, j.run_at, j.seq LIMIT 1),
    (SELECT p.mode FROM {schema}.paused_queues AS p WHERE p.queue = l.queue),
    newest.cancelled, newest.read,
    (SELECT count(*) FROM sched WHERE sched.queue = l.queue),
    (SELECT count(*) FROM act WHERE act.queue = l.queue),
    (SELECT count(*) FROM sched), (SELECT count(*) FROM act), newest.waiting
FROM listed AS l
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE w.state = 5) AS cancelled,
           count(*) FILTER (WHERE w.state = 6) AS waiting, count(*) AS read
    FROM (SELECT j.state FROM {schema}.jobs AS j WHERE j.queue = l.queue
          ORDER BY j.seq DESC LIMIT %(cap1)s::int8) AS w
) AS newest
WHERE %(queue)s::text IS NULL OR l.queue = %(queue)s::text
ORDER BY l.queue
"""
# For _QUEUE_COUNTS only, in its transaction: the walks it makes stop after a bounded
# number of index entries (LIMIT), which the planner underrates on a table whose
# statistics lag (it then reads a whole queue through a bitmap and sorts it), and JIT
# compiling its plan costs more than running it.
_PLAN_SETTINGS: Final = """
SELECT set_config('jit', 'off', true), set_config('enable_bitmapscan', 'off', true),
       set_config('enable_seqscan', 'off', true)
"""


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

    async def queue_counts(self, queue: str | None, cap: int) -> list[QueueCounts]:
        """Every queue's jobs by state, capped; see :meth:`AsyncStore.queue_counts`.

        One statement (after the maintenance; its plan settings are set for its
        transaction only, see ``_PLAN_SETTINGS``), whatever the tables hold: queued, failed and
        done jobs are counted exactly up to ``cap`` in their indexes; scheduled and active
        ones in the first ``cap`` + 1 entries of theirs (exact while the store holds at
        most ``cap`` of that state, else capped); cancelled and waiting ones among the
        queue's newest ``cap`` + 1 jobs (exact while it holds at most ``cap`` pending or
        kept jobs: no index has these states by queue, and adding one would slow every
        state change).
        """
        now = self._clock.now()
        sql = _QUEUE_COUNTS.format(schema=self._schema)
        params = {"cap1": cap + 1, "queue": queue, "now": now}

        async def read(conn: AsyncConnection[Any]) -> list[Any]:
            await maintain(conn, self._q, now)
            async with conn.transaction():
                await conn.execute(_PLAN_SETTINGS)
                return await (await conn.execute(sql, params)).fetchall()

        result = []
        for row in await self._db.run(read):
            name, queued, failed, done, since, mode, cancelled, read_, sched, act = row[:10]
            sched_all, act_all, waiting = row[10:]
            exact = {
                JobState.SCHEDULED: int(sched),
                JobState.QUEUED: int(queued),
                JobState.ACTIVE: int(act),
                JobState.DONE: int(done),
                JobState.FAILED: int(failed),
                JobState.CANCELLED: int(cancelled),
                JobState.WAITING: int(waiting),
            }
            lower = {
                state
                for state, past in (
                    (JobState.SCHEDULED, sched_all > cap),
                    (JobState.ACTIVE, act_all > cap),
                    (JobState.CANCELLED, read_ > cap),
                    (JobState.WAITING, read_ > cap),
                )
                if past
            }
            pause = PAUSE_MODES[mode or 0]
            result.append(queue_counts_of(name, exact, cap, pause, since, frozenset(lower)))
        return result

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
