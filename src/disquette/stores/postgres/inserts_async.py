"""How the PostgreSQL store adds jobs: one statement for one job, for jobs that share their
settings (what ``add_many`` makes) or for any jobs; with a room check for ``max_len``, in
the caller's transaction, or replicated.

Replication (``replicate=n``): give the primary ``synchronous_standby_names`` naming the
standbys (``'FIRST 1 (standby_a, standby_b)'`` or ``'ANY 2 (...)'``), start each standby from
``pg_basebackup -R -d application_name=<its name>``, and connect as a role that may read
``pg_stat_replication`` in full (superuser or ``pg_monitor``). An add with ``replicate=n``
counts the streaming standbys in ``sync``/``quorum`` state, raises ``NotReplicated`` before
writing when there are fewer than ``n``, commits with ``synchronous_commit = remote_apply``,
and checks that ``n`` standbys replayed the commit. ``tests/stores/test_postgres.py`` builds
exactly this with a private primary and standby.

This file is the asyncio source; ``inserts.py`` beside it is generated from it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import tuple_row

from ..._concurrency import async_sleep
from ...errors import InvalidOption, NotReplicated, QueueFull
from ...job import Job
from .database_async import AsyncDatabase
from .statements import insert_statement
from .unique_async import insert_at_once, insert_unique, one_statement
from .upkeep_async import maintain


class AsyncInserts:
    """Adds jobs to one store's schema (see :meth:`add`)."""

    def __init__(self, db: AsyncDatabase, q: dict[str, str], channel: str) -> None:
        self._db = db
        self._q = q
        #: The channel the insert statements NOTIFY with the queues they made ready.
        self._channel = channel

    async def add(
        self,
        jobs: Sequence[Job],
        max_len: int | None,
        now: float,
        *,
        connection: object = None,
        replicate: int = 0,
    ) -> tuple[set[str], dict[str, str]]:
        """Insert jobs in one transaction (see :meth:`AsyncStore.add`); return the queues
        they made ready, and id -> holder for the jobs whose unique key was held.

        With ``connection``, inside the caller's transaction. With ``replicate``, the
        commit waits for synchronous standbys to apply it (``remote_apply``), and
        ``NotReplicated`` is raised first if fewer than ``replicate`` are connected.
        """
        unique = any(job.unique_key is not None for job in jobs)
        statement, params = insert_statement(self._q, jobs, now, self._channel)
        ready = {job.queue for job in jobs if job.run_at <= now}
        existing: dict[str, str] = {}
        runs = 0

        async def insert(conn: AsyncConnection[Any]) -> None:
            nonlocal runs
            runs += 1
            # Run again (its reply lost), the add may meet its own jobs, finished meanwhile:
            # the statement skips ids in the done table, but an ack that commits while it
            # runs is not in its snapshot. A second statement, with a later snapshot, takes
            # back what it added for such ids (all in one transaction).
            again = runs > 1
            alone = max_len is None and not replicate and not again
            if alone and not unique:
                await conn.execute(statement, params)
                return
            if alone and one_statement(jobs):
                existing.update(await insert_at_once(conn, self._q, jobs, now, self._channel))
                return
            lsn = None
            async with conn.transaction():
                if replicate:
                    await self._require_standbys(conn, replicate)
                if max_len is not None:
                    await self._check_room(conn, jobs, ready, max_len, now)
                if unique:
                    existing.clear()
                    existing.update(await insert_unique(conn, self._q, jobs, now, self._channel))
                else:
                    await conn.execute(statement, params)
                if again:
                    ids = [job.id for job in jobs]
                    await conn.execute(self._q["take_back_finished"], {"ids": ids})
                if replicate:
                    # The commit record comes after this point of the WAL: a standby that
                    # replayed past it has applied the jobs.
                    cursor = await conn.execute("SELECT pg_current_wal_insert_lsn()::text")
                    row = await cursor.fetchone()
                    lsn = None if row is None else str(row[0])
            if lsn is not None:
                await self._await_standbys(conn, replicate, lsn)

        if connection is not None:
            if replicate:
                raise InvalidOption("replicate", replicate, "not with the caller's connection")
            await self._db.on_caller_connection(connection, insert)
        else:
            await self._db.run(insert)
        return ready, existing

    async def _check_room(
        self,
        conn: AsyncConnection[Any],
        jobs: Sequence[Job],
        ready: set[str],
        max_len: int,
        now: float,
    ) -> None:
        await maintain(conn, self._q, now)
        incoming = {queue: 0 for queue in sorted(ready)}  # sorted: locks in one order
        for job in jobs:
            if job.queue in incoming and job.run_at <= now:
                incoming[job.queue] += 1
        for queue, extra in incoming.items():
            cursor = conn.cursor(row_factory=tuple_row)
            await cursor.execute(self._q["lock_queue"], {"key": f"{self._db.schema}\x1f{queue}"})
            await cursor.execute(self._q["count_queued_up_to"], {"queue": queue, "limit": max_len})
            row = await cursor.fetchone()
            if (row[0] if row is not None else 0) + extra > max_len:
                raise QueueFull(queue, max_len)

    async def _require_standbys(self, conn: AsyncConnection[Any], wanted: int) -> None:
        await conn.execute("SET LOCAL synchronous_commit = remote_apply")
        cursor = await conn.execute(self._q["synchronous_standbys"])
        row = await cursor.fetchone()
        available = int(row[0]) if row is not None else 0
        if available < wanted:
            raise NotReplicated(wanted, available, "postgresql")

    async def _await_standbys(self, conn: AsyncConnection[Any], wanted: int, lsn: str) -> None:
        """After a ``remote_apply`` commit: check that ``wanted`` standbys replayed past it
        (with quorum commit, the server may have waited for fewer)."""
        deadline = time.monotonic() + self._db.reconnect_timeout
        while True:
            cursor = await conn.execute(self._q["standbys_applied"], {"lsn": lsn})
            row = await cursor.fetchone()
            applied = int(row[0]) if row is not None else 0
            if applied >= wanted:
                return
            if time.monotonic() >= deadline:
                raise NotReplicated(wanted, applied, "postgresql")
            await async_sleep(0.005)
