"""The PostgreSQL store's upkeep: what time made due, applied before the calls that read,
and the housekeeping that keeps its two hot tables small.

This file is the asyncio source; ``upkeep.py`` beside it is generated from it.
"""

from __future__ import annotations

import contextlib
from typing import Any, Final

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import tuple_row

from ...errors import StoreUnavailable
from .database_async import AsyncDatabase

#: Claims naming a holder between two prunes of the holders table (see ``held``).
_PRUNE_HOLDERS_EVERY: Final = 10_000


async def maintain(conn: AsyncConnection[Any], q: dict[str, str], now: float) -> int:
    """Apply what time made due (expiry, scheduled jobs, lapsed leases); return how many
    leased jobs it requeued."""
    cursor = conn.cursor(row_factory=tuple_row)
    await cursor.execute(q["maintain"], {"now": now})
    row = await cursor.fetchone()
    return int(row[0]) if row is not None else 0


async def after_maintenance(
    conn: AsyncConnection[Any],
    q: dict[str, str],
    now: float,
    statement: str,
    params: dict[str, Any],
    binary: bool = False,
) -> list[Any]:
    """The maintenance, then ``statement``: sent together in one round trip (a psycopg
    pipeline); in autocommit each is its own transaction, so the read sees the result."""
    async with conn.pipeline():
        await conn.execute(q["maintain"], {"now": now})
        cursor = await conn.execute(statement, params, binary=binary)
    return await cursor.fetchall()


class AsyncUpkeep:
    """Counts what the store's calls leave behind and cleans up on a count: ``VACUUM`` on
    the jobs table every ``vacuum_every`` jobs moved (0: never), and a prune of the holders
    table every :data:`_PRUNE_HOLDERS_EVERY` claims naming a holder."""

    def __init__(self, db: AsyncDatabase, q: dict[str, str], vacuum_every: int) -> None:
        self._db = db
        self._q = q
        self._vacuum_every = vacuum_every
        self._holder_rows = 0
        self._churn = 0

    async def churned(self, jobs: int) -> None:
        """Count row versions left behind; VACUUM the jobs table every ``vacuum_every``.

        Autovacuum wakes up once a minute at best, and a busy queue leaves a dead row
        version per claim and per ack: vacuuming on a count keeps the heap the size of the
        backlog instead of the size of the last minute's traffic.
        """
        if not self._vacuum_every:
            return
        self._churn += jobs
        if self._churn < self._vacuum_every:
            return
        self._churn = 0

        async def vacuum(conn: AsyncConnection[Any]) -> None:
            await conn.execute(self._q["vacuum"])

        # Housekeeping must never fail the call that happened to trigger it.
        with contextlib.suppress(psycopg.Error, StoreUnavailable):
            await self._db.run(vacuum)

    async def held(self, jobs: int) -> None:
        """Count claims that wrote a holder row; prune the rows of deliveries that are over
        every :data:`_PRUNE_HOLDERS_EVERY` of them, so the holders table stays the size of
        the held jobs (ack, nack and fail leave their row alone: they cost nothing more)."""
        self._holder_rows += jobs
        if self._holder_rows < _PRUNE_HOLDERS_EVERY:
            return
        self._holder_rows = 0

        async def prune(conn: AsyncConnection[Any]) -> None:
            await conn.execute(self._q["prune_holders"])

        # Housekeeping must never fail the call that happened to trigger it.
        with contextlib.suppress(psycopg.Error, StoreUnavailable):
            await self._db.run(prune)
