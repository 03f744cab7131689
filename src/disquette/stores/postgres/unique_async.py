"""Unique jobs in the PostgreSQL store: the insert of jobs with unique keys, and who holds
a key that was taken.

The partial unique index ``jobs_unique`` (``sql/005_unique.sql``) guarantees one holder
among pending and failed jobs: the insert skips a job whose key is held (``ON CONFLICT DO
NOTHING``, waiting, as any unique index, for a transaction that is taking or freeing the
key), then the holders of the skipped keys are looked up with a later snapshot. A holder
can vanish in between (acked, deleted) or be past its TTL (gone for every reader, not yet
deleted by the maintenance): those jobs are inserted again.

This file is the asyncio source; ``unique.py`` beside it is generated from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from psycopg import AsyncConnection

from ...errors import StoreError
from ...job import Job, JobState, state_bit
from ..types import held_elsewhere
from .statements import unique_insert_params

_DONE: Final = state_bit(JobState.DONE)
#: Inserts of one batch: a key freed and taken again between each is already unlikely.
_ROUNDS: Final = 5


async def insert_unique(
    conn: AsyncConnection[Any], q: dict[str, str], jobs: Sequence[Job], now: float, channel: str
) -> dict[str, str]:
    """Insert ``jobs`` (inside the caller's transaction) but those whose unique key is
    held; return their id -> the holder's id."""
    existing: dict[str, str] = {}
    pending = list(jobs)
    for _ in range(_ROUNDS):
        cursor = await conn.execute(q["insert_unique"], unique_insert_params(pending, now, channel))
        inserted = {row[0] for row in await cursor.fetchall()}
        done_held = [job.id for job in pending if job.id in inserted and job.unique_states & _DONE]
        if done_held:
            cursor = await conn.execute(q["take_back_done_held"], {"ids": done_held, "now": now})
            for job_id, holder in await cursor.fetchall():
                existing[job_id] = holder
        skipped = [job for job in pending if job.id not in inserted and job.unique_key is not None]
        if not skipped:
            return existing
        pending, gone = [], []
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
            elif held_elsewhere(holder, job_id):
                existing[job_id] = holder
        if gone:
            await conn.execute(q["delete_expired"], {"ids": gone, "now": now})
        if not pending:
            return existing
    raise StoreError("PostgreSQL", f"unique keys kept changing hands while adding {len(jobs)} jobs")
