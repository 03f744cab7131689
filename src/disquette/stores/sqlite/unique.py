"""Unique jobs in the SQLite store: who holds a key, looked up in the add's transaction.

The partial unique index ``jobs_unique`` (``schema.sql``, migration 4) is what guarantees
one holder; the add looks the holder up first (``BEGIN IMMEDIATE`` already serializes
writers, so the lookup and the insert are one atomic step) to answer its id.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from ...job import Job
from .dependencies import Released, resolve


def unique_holders(
    conn: sqlite3.Connection,
    queries: Mapping[str, str],
    jobs: Sequence[Job],
    now: float,
    released: Released,
) -> dict[str, str]:
    """For each job of ``jobs`` whose unique key is held (by a stored job, or an earlier
    job of the batch), its id -> the holder's id. A holder past its TTL is deleted (the
    expiry would have, resolving its waiting children into ``released``), so that its key
    is free for the insert."""
    existing: dict[str, str] = {}
    batch: dict[tuple[str, str], str] = {}
    for job in jobs:
        if job.unique_key is None:
            continue
        slot = (job.queue, job.unique_key)
        holder = batch.get(slot)
        if holder is None:
            row = conn.execute(queries["unique_holder"], slot).fetchone()
            if row is not None and row[1] is not None and row[1] <= now:
                (gone,) = conn.execute(queries["delete"], (row[0],)).fetchall()
                if gone[0]:  # it had waiting children: its expiry ends them
                    resolve(conn, queries, row[0], "expired", now, released)
                row = None
            holder = None if row is None or row[0] == job.id else row[0]
        if holder is not None:
            existing[job.id] = holder
        else:
            batch[slot] = job.id
    return existing
