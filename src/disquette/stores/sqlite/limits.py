"""Flow limits of the SQLite store (issue 16): setting and listing limits, and whether
some queues have any. The claim obeys them in its own statement (``claim_limited`` in
``schema.sql``, with the ``queue_limits_spend`` trigger)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from ..limits import QueueLimits
from .database import QUERIES


def any_limited(conn: sqlite3.Connection, queues: Sequence[str]) -> bool:
    """Whether one of ``queues`` has limits (a claim held back may find jobs later)."""
    return (
        conn.execute(QUERIES["limited_queue_among"], (json.dumps(queues),)).fetchone() is not None
    )


def set_limits(
    conn: sqlite3.Connection, queue: str, limits: QueueLimits | None, now: float
) -> None:
    """Set (a rate's bucket full) or clear a queue's limits."""
    if limits is None or limits.empty:
        conn.execute(QUERIES["clear_limits"], (queue,))
        return
    count, per = limits.rate if limits.rate is not None else (None, None)
    conn.execute(QUERIES["set_limits"], (queue, limits.concurrency, count, per, now))


def all_limits(conn: sqlite3.Connection) -> dict[str, QueueLimits]:
    """Every limited queue's limits."""
    return {
        queue: QueueLimits(concurrency, None if count is None else (count, per))
        for queue, concurrency, count, per in conn.execute(QUERIES["all_limits"])
    }
