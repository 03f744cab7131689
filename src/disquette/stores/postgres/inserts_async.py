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
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import tuple_row

from ..._concurrency import async_sleep
from ...errors import InvalidOption, JobNotFound, NotReplicated, QueueFull
from ...job import Job
from ..types import DONE_CHANNEL
from .database_async import AsyncDatabase
from .dependencies import Admission, admit, orphaned, outside_parents
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
        dependants = any(job.depends_on for job in jobs)
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
            alone = max_len is None and not replicate and not again and not dependants
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
                woken, held = await self._insert_checked(
                    conn, jobs, max_len, now, (statement, params)
                )
                existing.clear()
                existing.update(held)
                if woken is not None:
                    ready.clear()
                    ready.update(woken)
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

    async def _insert_checked(
        self,
        conn: AsyncConnection[Any],
        jobs: Sequence[Job],
        max_len: int | None,
        now: float,
        insert: tuple[str, dict[str, Any]],
    ) -> tuple[set[str] | None, dict[str, str]]:
        """In the add's transaction: the parents locked and each job's state given (a batch
        with dependencies), the room checked, the rows inserted (``insert``: the statement
        for jobs without keys or parents). Returns the wake-ups of a batch with
        dependencies (None: those of its ``run_at``), and id -> holder for the jobs whose
        unique key was held."""
        admissions = None
        woken = None
        if any(job.depends_on for job in jobs):
            admissions = await self._admit(conn, jobs, now)
            woken = _woken(jobs, admissions)
        if max_len is not None:
            await self._check_room(conn, _incoming(jobs, now, admissions), max_len, now)
        if admissions is None and all(job.unique_key is None for job in jobs):
            await conn.execute(*insert)
            return woken, {}
        existing = await insert_unique(
            conn, self._q, jobs, now, self._channel, admissions=admissions
        )
        parent = orphaned(jobs, existing) if admissions is not None else None
        if parent is not None:
            raise JobNotFound(parent)
        return woken, existing

    async def _admit(
        self, conn: AsyncConnection[Any], jobs: Sequence[Job], now: float
    ) -> dict[str, Admission]:
        """Lock the parents of a batch with dependencies and give each job its state (see
        ``dependencies.py``); ``JobNotFound`` for a parent the store does not hold."""
        found: dict[str, int] = {}
        wanted = outside_parents(jobs)
        if wanted:
            params = {"ids": wanted, "now": now}
            cursor = conn.cursor(row_factory=tuple_row)
            await cursor.execute(self._q["lock_parents"], params)
            found.update((job_id, int(state)) for job_id, state in await cursor.fetchall())
            missing = [job_id for job_id in wanted if job_id not in found]
            if missing:
                # A statement of its own: its snapshot sees an ack the lock waited for.
                await cursor.execute(self._q["done_parents"], {"ids": missing, "now": now})
                found.update((job_id, 3) for (job_id,) in await cursor.fetchall())
        return admit(jobs, found, now)

    async def _check_room(
        self, conn: AsyncConnection[Any], incoming: Counter[str], max_len: int, now: float
    ) -> None:
        await maintain(conn, self._q, now)
        for queue in sorted(incoming):  # sorted: locks in one order
            extra = incoming[queue]
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


def _incoming(
    jobs: Sequence[Job], now: float, admissions: Mapping[str, Admission] | None
) -> Counter[str]:
    """How many jobs the add makes ready, per queue (what ``max_len`` counts)."""
    if admissions is None:
        return Counter(job.queue for job in jobs if job.run_at <= now)
    return Counter(job.queue for job in jobs if admissions[job.id].state == 1)


def _woken(jobs: Sequence[Job], admissions: Mapping[str, Admission]) -> set[str]:
    """The wake-ups an add of dependants sends: the queues it made jobs ready in, and
    result waiters when a job ended at once (a parent had failed or was cancelled)."""
    woken = {job.queue for job in jobs if admissions[job.id].state == 1}
    if any(admission.finished_at is not None for admission in admissions.values()):
        woken.add(DONE_CHANNEL)
    return woken
