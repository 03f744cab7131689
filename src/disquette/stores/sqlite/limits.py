"""Flow limits of the SQLite store (issue 16): the claim from a limited queue, and
setting and listing limits. See :mod:`disquette.stores.limits` for the arithmetic."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from ..limits import QueueLimits, allowance, refill
from .database import QUERIES


def limited_queues(conn: sqlite3.Connection, queues: Sequence[str]) -> set[str]:
    """Those of ``queues`` that have limits (one read of the small limits table)."""
    return {row[0] for row in conn.execute(QUERIES["limited_queues"], (json.dumps(queues),))}


def claim_limited(
    conn: sqlite3.Connection,
    begin: Callable[[], AbstractContextManager[None]],
    params: dict[str, Any],
) -> tuple[list[Any], bool]:
    """Claim from a limited queue (``params`` as the claim statement's) within its limits,
    in one transaction (``begin``'s, or the caller's when one is open). Returns the rows,
    and whether the limits held back jobs the claim wanted."""
    queue, now, wanted = params["queue"], params["now"], params["count"]
    with nullcontext() if conn.in_transaction else begin():
        row = conn.execute(QUERIES["queue_limits"], (queue,)).fetchone()
        if row is None:  # cleared meanwhile
            return conn.execute(QUERIES["claim"], params).fetchall(), False
        concurrency, rate_count, rate_per, tokens, filled_at = row
        limits = QueueLimits(concurrency, None if rate_count is None else (rate_count, rate_per))
        active = 0
        if concurrency is not None:
            active = conn.execute(QUERIES["count_unexpired_leases"], (queue, now)).fetchone()[0]
        if limits.rate is not None:
            tokens = refill(limits.rate, tokens, filled_at, now)
        allowed = allowance(limits, active, tokens, wanted)
        rows = conn.execute(QUERIES["claim"], {**params, "count": allowed}).fetchall()
        if limits.rate is not None:
            conn.execute(QUERIES["spend_tokens"], (queue, tokens - len(rows), now))
    return rows, allowed < wanted


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
