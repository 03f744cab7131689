"""The PostgreSQL store's operator side: views across queues and jobs (scan, queues,
stats), flush, and the registries of server nodes and schedules. Its calls read or wipe
the schema as a whole; none wakes a waiter (the store does, where one must).

This file is the asyncio source; ``admin.py`` beside it is generated from it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from psycopg import AsyncConnection

from ...clock import Clock
from ...job import Job, JobState, Stats, StatsRow
from .._sql import SEQ, STATE_CODES, STATES, row_to_job
from ..types import PAUSE_MODES, NodeInfo, QueueInfo, ScheduleInfo
from .database_async import AsyncDatabase
from .upkeep_async import after_maintenance, maintain


class AsyncAdmin:
    """The calls of :class:`AsyncStore` that look at, or wipe, the whole schema."""

    def __init__(
        self, db: AsyncDatabase, q: dict[str, str], clock: Clock, done_channel: str
    ) -> None:
        self._db = db
        self._q = q
        self._clock = clock
        self._done_channel = done_channel

    async def scan(
        self, cursor: int, count: int, queue: str | None, states: Collection[JobState] | None
    ) -> tuple[int, list[Job]]:
        """Walk jobs in enqueue order; see :meth:`AsyncStore.scan`."""
        now = self._clock.now()
        params = {
            "after": cursor,
            "now": now,
            "queue": queue,
            "states": None if states is None else [STATE_CODES[state] for state in states],
            "count": count,
        }

        async def scan(conn: AsyncConnection[Any]) -> list[Any]:
            return await after_maintenance(conn, self._q, now, self._q["scan"], params, True)

        rows = await self._db.run(scan)
        return (int(rows[-1][SEQ]) if len(rows) >= count else 0), [row_to_job(r) for r in rows]

    async def queues(self) -> list[QueueInfo]:
        """Queues with jobs or a pause mode; see :meth:`AsyncStore.queues`."""
        now = self._clock.now()

        async def queues(conn: AsyncConnection[Any]) -> tuple[list[Any], list[Any]]:
            statement = self._q["queues"]
            counts = await after_maintenance(conn, self._q, now, statement, {"now": now})
            modes = await (await conn.execute(self._q["pause_modes"])).fetchall()
            return counts, modes

        counts, modes = await self._db.run(queues)
        queued = {name: int(n) for name, n in counts}
        mode_of = {name: int(bits) for name, bits in modes}
        return [
            QueueInfo(name, queued.get(name, 0), PAUSE_MODES[mode_of.get(name, 0)])
            for name in sorted(queued.keys() | mode_of.keys())
        ]

    async def stats(self) -> Stats:
        """Counts per queue and type; see :meth:`AsyncStore.stats`."""
        now = self._clock.now()

        async def stats(conn: AsyncConnection[Any]) -> tuple[list[Any], list[Any]]:
            await maintain(conn, self._q, now)
            grouped = await (await conn.execute(self._q["stats"], {"now": now})).fetchall()
            paused = await (await conn.execute(self._q["paused"])).fetchall()
            return grouped, paused

        grouped, paused = await self._db.run(stats)
        merged: dict[tuple[str, str | None], dict[str, Any]] = {}
        for queue, type_, state, count, max_errors, oldest in grouped:
            row = merged.setdefault((queue, type_), {"max_error_count": 0, "oldest_run_at": None})
            row[STATES[state].value] = int(count)
            row["max_error_count"] = max(row["max_error_count"], max_errors or 0)
            if oldest is not None:
                row["oldest_run_at"] = min(oldest, row["oldest_run_at"] or oldest)
        ordered = sorted(merged.items(), key=lambda item: (item[0][0], item[0][1] or ""))
        rows = tuple(StatsRow(queue=q, type=t, **fields) for (q, t), fields in ordered)
        return Stats(rows=rows, paused=frozenset(row[0] for row in paused))

    async def flush(self) -> None:
        """Delete every job and pause mode, in one transaction; see :meth:`AsyncStore.flush`."""

        async def flush(conn: AsyncConnection[Any]) -> None:
            async with conn.transaction():
                await conn.execute(self._q["flush_jobs"])
                await conn.execute(self._q["flush_pauses"])
                await conn.execute(self._q["notify_done"], {"done_channel": self._done_channel})

        await self._db.run(flush)

    async def register_node(self, node_id: str, address: str, ttl: float) -> None:
        """Register or renew a node; see :meth:`AsyncStore.register_node`."""
        now = self._clock.now()
        params = {"id": node_id, "address": address, "expires_at": now + ttl, "now": now}

        async def register(conn: AsyncConnection[Any]) -> None:
            await conn.execute(self._q["forget_lapsed_nodes"], params)
            await conn.execute(self._q["register_node"], params)

        await self._db.run(register)

    async def unregister_node(self, node_id: str) -> None:
        """Remove a node; see :meth:`AsyncStore.unregister_node`."""

        async def unregister(conn: AsyncConnection[Any]) -> None:
            await conn.execute(self._q["unregister_node"], {"id": node_id})

        await self._db.run(unregister)

    async def nodes(self) -> list[NodeInfo]:
        """Live nodes; see :meth:`AsyncStore.nodes`."""
        now = self._clock.now()

        async def nodes(conn: AsyncConnection[Any]) -> list[Any]:
            return await (await conn.execute(self._q["nodes"], {"now": now})).fetchall()

        return [NodeInfo(str(i), str(a), float(e)) for i, a, e in await self._db.run(nodes)]

    async def register_schedules(self, schedules: Sequence[ScheduleInfo]) -> None:
        """Record definitions, keeping paused flags; see :meth:`AsyncStore.register_schedules`."""
        params = [{"name": info.name, "definition": info.definition()} for info in schedules]

        async def register(conn: AsyncConnection[Any]) -> None:
            async with conn.cursor() as cursor:
                await cursor.executemany(self._q["register_schedule"], params)

        if params:
            await self._db.run(register)

    async def schedules(self) -> list[ScheduleInfo]:
        """Registered schedules; see :meth:`AsyncStore.schedules`."""

        async def schedules(conn: AsyncConnection[Any]) -> list[Any]:
            return await (await conn.execute(self._q["schedules"])).fetchall()

        rows = await self._db.run(schedules)
        return [ScheduleInfo.from_definition(str(n), str(d), bool(p)) for n, d, p in rows]

    async def pause_schedule(self, name: str, paused: bool) -> bool:
        """Pause or resume a schedule; see :meth:`AsyncStore.pause_schedule`."""

        async def pause(conn: AsyncConnection[Any]) -> int:
            params = {"name": name, "paused": paused}
            return (await conn.execute(self._q["pause_schedule"], params)).rowcount

        return await self._db.run(pause) > 0
