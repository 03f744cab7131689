"""Unique jobs in the PostgreSQL store: the insert of jobs with unique keys, and who holds
a key that was taken.

The partial unique index ``jobs_unique`` (``sql/005_cancel_unique_headers.sql``) guarantees
one holder among pending and failed jobs: the insert skips a job whose key is held (``ON CONFLICT DO
NOTHING``, waiting, as any unique index, for a transaction that is taking or freeing the
key), then the holders of the skipped keys are looked up with a later snapshot. A holder
can vanish in between (acked, deleted) or be past its TTL (gone for every reader, not yet
deleted by the maintenance): those jobs are inserted again.

This file is the asyncio source; ``unique.py`` beside it is generated from it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from psycopg import AsyncConnection

from ...errors import StoreError
from ...job import Job, JobState, state_bit
from ..types import held_elsewhere
from .dependencies import Admission, dependant_params
from .statements import unique_insert_params, unique_one_params

_DONE: Final = state_bit(JobState.DONE)
#: Inserts of one batch: a key freed and taken again between each is already unlikely.
_ROUNDS: Final = 5


def one_statement(jobs: Sequence[Job]) -> bool:
    """Whether an add of ``jobs`` may try its insert as one statement of its own, before
    any transaction: not when a done job may hold a key (see :func:`insert_unique`)."""
    return not any(job.unique_states & _DONE for job in jobs)


async def insert_at_once(
    conn: AsyncConnection[Any], q: dict[str, str], jobs: Sequence[Job], now: float, channel: str
) -> dict[str, str]:
    """As :func:`insert_unique` on a connection in autocommit: one statement, committed at
    once (the usual case: no key held); then the holders of the keys it found held are
    read, and only a job whose holder left meanwhile takes a transaction."""
    if len(jobs) == 1:
        statement, params = q["insert_unique_one"], unique_one_params(jobs[0], now, channel)
    else:
        statement, params = q["insert_unique"], unique_insert_params(jobs, now, channel)
    cursor = await conn.execute(statement, params)
    inserted = {row[0] for row in await cursor.fetchall()}
    skipped = [job for job in jobs if job.id not in inserted and job.unique_key is not None]
    if not skipped:
        return {}
    existing, pending, gone = await _holders(conn, q, skipped, now)
    if pending:
        async with conn.transaction():
            await _delete_expired(conn, q, gone, now)
            existing.update(await insert_unique(conn, q, pending, now, channel))
    return existing


async def insert_unique(
    conn: AsyncConnection[Any],
    q: dict[str, str],
    jobs: Sequence[Job],
    now: float,
    channel: str,
    *,
    admissions: Mapping[str, Admission] | None = None,
) -> dict[str, str]:
    """Insert ``jobs`` (inside the caller's transaction) but those whose unique key is
    held; return their id -> the holder's id. With ``admissions`` (a batch with
    dependencies, see ``dependencies.py``), each job in the state given there.

    A job whose states count ``done`` is looked for in ``done`` by the insert, and again
    with a later snapshot (``take_back_done_held``): an ack moving its holder there may
    commit while the insert waits on ``jobs_unique``, out of the insert's snapshot. (This
    takes the states of the job being added for its holder's: a key is added with one set
    of states, the usual case of one call site per key.)"""
    existing: dict[str, str] = {}
    pending = list(jobs)
    for _ in range(_ROUNDS):
        if admissions is None:
            statement, params = q["insert_unique"], unique_insert_params(pending, now, channel)
        else:
            statement = q["insert_dependants"]
            params = dependant_params(pending, now, channel, admissions)
        cursor = await conn.execute(statement, params)
        inserted = {row[0] for row in await cursor.fetchall()}
        done_held = [job.id for job in pending if job.id in inserted and job.unique_states & _DONE]
        if done_held:
            cursor = await conn.execute(q["take_back_done_held"], {"ids": done_held, "now": now})
            existing.update({job_id: holder for job_id, holder in await cursor.fetchall()})
        skipped = [job for job in pending if job.id not in inserted and job.unique_key is not None]
        if not skipped:
            return existing
        found, pending, gone = await _holders(conn, q, skipped, now)
        existing.update(found)
        await _delete_expired(conn, q, gone, now)
        if not pending:
            return existing
    raise StoreError("PostgreSQL", f"unique keys kept changing hands while adding {len(jobs)} jobs")


async def _holders(
    conn: AsyncConnection[Any], q: dict[str, str], skipped: Sequence[Job], now: float
) -> tuple[dict[str, str], list[Job], list[str]]:
    """For jobs an insert skipped: id -> holder for those whose key is held; the jobs to
    insert again (the holder left, or is past its TTL); and those expired holders' ids."""
    existing: dict[str, str] = {}
    pending: list[Job] = []
    gone: list[str] = []
    by_id = {job.id: job for job in skipped}
    cursor = await conn.execute(
        q["unique_holders"],
        {
            "ids": [job.id for job in skipped],
            "queues": [job.queue for job in skipped],
            "keys": [job.unique_key for job in skipped],
            "now": now,
        },
    )
    for job_id, holder, expires_at, known in await cursor.fetchall():
        if known and not held_elsewhere(holder, job_id):
            continue  # an add run again: its job is in place
        if holder is None:
            pending.append(by_id[job_id])  # freed since the insert looked
        elif expires_at is not None and expires_at <= now:
            gone.append(holder)
            pending.append(by_id[job_id])
        else:
            existing[job_id] = holder
    return existing, pending, gone


async def _delete_expired(
    conn: AsyncConnection[Any], q: dict[str, str], ids: Sequence[str], now: float
) -> None:
    if ids:
        await conn.execute(q["delete_expired"], {"ids": list(ids), "now": now})
