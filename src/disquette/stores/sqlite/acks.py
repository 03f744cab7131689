"""The SQLite store's ack statements: which ones ack a call's jobs, and how a batch of them
runs (``ack_many``, ``ack_many_drop`` in ``schema.sql``)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from itertools import repeat
from typing import Any, Final

from ...errors import StoreError
from ..types import NO_RESULT, EncodedResult
from .database import QUERIES

#: A batch's acks (see :func:`ack_batch`).
ACK_MANY: Final = QUERIES["ack_many"]
_ACK_MANY_DROP: Final = QUERIES["ack_many_drop"]
#: Those statements without RETURNING, by whether they drop the jobs.
_QUIET: Final = {
    False: ACK_MANY[: ACK_MANY.index("\nRETURNING ")],
    True: _ACK_MANY_DROP[: _ACK_MANY_DROP.index("\nRETURNING ")],
}
#: ``ack_many_drop`` of one job, by id, returning nothing (see ``SqliteStore.ack``).
ACK_DROP: Final = _QUIET[True].replace(
    "WHERE id IN (SELECT value FROM json_each(:ids))", "WHERE id = :id", 1
)
if _QUIET[True] == ACK_DROP:
    raise StoreError("schema.sql", "ack_many_drop should find its jobs by id in :ids")
#: The expiry of a job acked and dropped: nothing is left to expire.
DROPPED: Final = float("inf")


def ack_batch(
    conn: sqlite3.Connection, params: dict[str, Any], drop: bool
) -> tuple[list[Any], bool]:
    """One batch's acks (``ack_many`` parameters, see :func:`ack_statements`), in the
    caller's transaction: the rows (id, expiry; None: its ``result_ttl`` from now, not read
    back) acked, and whether the batch held jobs kept for no time once done.

    Those (``result_ttl`` 0: the Disque server's ``--result-ttl 0``) are deleted, which
    the expiry would do at the next claim anyway: one delete instead of an update, then a
    delete in another transaction. The others become done. The kind the last batch held
    (``drop``) is tried first; the usual batch (every job of that kind, acked) is that
    statement without RETURNING: reading a row back costs about 2.7k instructions, as much
    as acking it. A savepoint takes it back when it acked fewer; then the statements
    returning rows tell which, the ids left tried with the other statement (the other
    kind, lost deliveries, parents). Callgrind, the server's get+ack of 50 per batch:
    11k instructions fewer per job.
    """
    ids: list[str] = params["list"]
    conn.execute("SAVEPOINT acks")
    if conn.execute(_QUIET[drop], params).rowcount == len(ids):
        conn.execute("RELEASE acks")
        expiry = DROPPED if drop else None
        return list(zip(ids, repeat(expiry))), drop
    conn.execute("ROLLBACK TO acks")
    conn.execute("RELEASE acks")
    acked = conn.execute(_ACK_MANY_DROP if drop else ACK_MANY, params).fetchall()
    if len(acked) < len(ids):
        done = {row[0] for row in acked}
        rest = {**params, "ids": json_ids([i for i in ids if i not in done])}
        more = conn.execute(ACK_MANY if drop else _ACK_MANY_DROP, rest).fetchall()
        if len(more) > len(acked):
            drop = not drop
        acked += more
    return acked, drop


def json_ids(ids: list[str]) -> str:
    """``json.dumps(ids)`` for ``json_each``: ids of ASCII without a control character, a
    quote or a backslash (Disque's, ours) need no escaping, so they are joined as they
    are (a third of the encoder's time); any other id goes the long way."""
    joined = '","'.join(ids)
    if joined.isascii():
        raw = joined.encode()
        # What needs escaping, found in C: none but the separators' quotes (two per gap).
        if len(raw.translate(None, _ESCAPED)) == len(raw) - 2 * (len(ids) - 1):
            return '["' + joined + '"]'
    return json.dumps(ids)


#: The ASCII characters a JSON string holds escaped: controls, the quote, the backslash.
_ESCAPED: Final = bytes(range(32)) + b'"\\'


def ack_statements(
    job_ids: Sequence[str],
    results: Sequence[EncodedResult] | None,
    attempts: Sequence[int | None] | None,
    now: float,
    *,
    batch: bool = False,
) -> list[tuple[str, Any]]:
    """The statements (with parameters) that ack these jobs: for a batch without results,
    one per delivery number, no per-row round trips; else one per job. ``batch``: one job
    without a result is acked as a batch is (by :func:`ack_batch`, in the caller's
    transaction), not by the statement of one call per job."""
    if len(job_ids) == 1 and not (batch and results is None):  # the usual ack: one per call
        raw, code = results[0] if results else NO_RESULT
        attempt = attempts[0] if attempts else None
        params = {"id": job_ids[0], "result": raw, "encoding": int(code), "now": now}
        params["attempts"] = attempt
        return [(QUERIES["ack"], params)]
    deliveries = attempts or [None] * len(job_ids)
    if results is None and job_ids:
        if deliveries.count(deliveries[0]) == len(deliveries):
            groups = {deliveries[0]: list(job_ids)}  # the usual batch: checked in C
        else:
            groups = {}
            for job_id, attempt in zip(job_ids, deliveries, strict=True):
                groups.setdefault(attempt, []).append(job_id)
        return [
            # "list": the ids (no statement parameter; see ack_batch).
            (ACK_MANY, {"ids": json_ids(ids), "list": ids, "attempts": attempt, "now": now})
            for attempt, ids in groups.items()
        ]
    ack = QUERIES["ack"]
    return [
        (ack, {"id": i, "result": raw, "encoding": int(code), "now": now, "attempts": attempt})
        for i, (raw, code), attempt in zip(
            job_ids, results or [NO_RESULT] * len(job_ids), deliveries, strict=True
        )
    ]
