"""The PostgreSQL store's upkeep: what time made due, applied before the calls that read,
and the housekeeping that keeps its two hot tables small.

What time made due is applied by the background maintainer (``maintainer_async.py``). A
claim or read it does not cover (no maintainer runs, or it stopped renewing its span) calls
``maintain_due`` (``006_hot_paths.sql``, its lock taken first since ``010_wakeups.sql``, its
batch named ``maintain_batch`` since ``011_maintainer.sql``): only the caller that gets the
schema's maintenance lock without waiting probes each step's partial index (one page when
nothing is due) and applies at most a batch of 1,000 rows per step. A burst of a million jobs
coming due is thus promoted 1,000 per call by whichever process gets there first, while the
other claims go on with the ready jobs; no call holds locks on the whole backlog. Done rows
past their ``result_ttl`` are pruned on a count of acks (``AsyncUpkeep.acked``), never in a
claim.

This file is the asyncio source; ``upkeep.py`` beside it is generated from it.
"""

from __future__ import annotations

import contextlib
from typing import Any, Final

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import tuple_row

from ...clock import Clock
from ...errors import StoreUnavailable
from .database_async import AsyncDatabase

#: Claims naming a holder between two prunes of the holders table (see ``held``).
_PRUNE_HOLDERS_EVERY: Final = 10_000
#: Acks between two prunes of the done table, and the most rows one prune deletes: five
#: times the acks in between, so the pruning outpaces any ack rate once results expire.
_PRUNE_DONE_EVERY: Final = 2_000
_PRUNE_DONE_BATCH: Final = 10_000


async def maintain(
    conn: AsyncConnection[Any], q: dict[str, str], now: float, *, everything: bool = False
) -> int:
    """Apply what time made due (expiry, scheduled jobs, lapsed leases); return how many
    leased jobs it requeued.

    By default a bounded batch per step, and only if no other call is applying them (see
    ``maintain_due`` in ``006_hot_paths.sql``); with ``everything``, all of it, waiting for
    nobody (an operator's ``recover_stale``).
    """
    cursor = conn.cursor(row_factory=tuple_row)
    await cursor.execute(q["maintain_all" if everything else "maintain"], {"now": now})
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
    the jobs table every ``vacuum_every`` jobs moved (0: never), a prune of the holders
    table every :data:`_PRUNE_HOLDERS_EVERY` claims naming a holder, and one of the done
    table (and of the waiters of dead processes) every :data:`_PRUNE_DONE_EVERY` acks."""

    def __init__(
        self, db: AsyncDatabase, q: dict[str, str], clock: Clock, vacuum_every: int
    ) -> None:
        self._db = db
        self._q = q
        self._clock = clock
        self._vacuum_every = vacuum_every
        self._holder_rows = 0
        self._churn = 0
        self._acked = 0

    async def acked(self, jobs: int) -> None:
        """Count acked jobs; every :data:`_PRUNE_DONE_EVERY`, prune a bounded batch of done
        rows past their ``result_ttl`` (readers already treat them as gone).

        Claims no longer prune (each prune was up to 5,000 rows on every worker's claim):
        the processes that ack, which make the rows, prune them, one at a time (the
        function takes a lock of its own and skips when another process holds it).
        """
        self._acked += jobs
        if self._acked < _PRUNE_DONE_EVERY:
            return
        self._acked = 0
        params = {"now": self._clock.now(), "batch": _PRUNE_DONE_BATCH}

        async def prune(conn: AsyncConnection[Any]) -> None:
            await conn.execute(self._q["prune_done"], params)
            await conn.execute(self._q["forget_dead_waiters"])

        # Housekeeping must never fail the call that happened to trigger it.
        with contextlib.suppress(psycopg.Error, StoreUnavailable):
            await self._db.run(prune)

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
