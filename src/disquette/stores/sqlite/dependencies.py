"""Job dependencies in the SQLite store (issue 16; schema version 7, ``migrate_dependencies``
in ``schema.sql``).

A job added with parents keeps them (``depends_on``), its policy and, while it waits (state
6), how many of its parents are still pending. Each (parent, child) pair it waits on is a
row of ``job_dependencies``, and the parent's ``has_children`` flag says it has some: the
statements that end a job return the flag, so the usual job (no children) pays one column,
and the store resolves the children of one that has some in the same transaction
(:func:`resolve`). The add's checks and inserts are :func:`admit`'s, in the add's
transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from ...errors import JobNotFound
from ...job import Job
from .._sql import POLICIES, STATES
from ..types import DONE_CHANNEL, NO_RESULT, EncodedResult, dependency_error

#: State codes (see ``schema.sql``).
_SCHEDULED, _QUEUED, _DONE, _FAILED, _CANCELLED, _WAITING = 0, 1, 3, 4, 5, 6
#: The states of a job that has ended (no child waits for it).
_ENDED: Final = (_DONE, _FAILED, _CANCELLED)


class Released:
    """What resolving children changed that others wait for: the channels to announce (the
    queues of released children; ``done`` when a child ended) and the earliest time-driven
    change made (a child scheduled, an ended one's expiry), for the store's due watermark."""

    __slots__ = ("channels", "due_at")

    def __init__(self) -> None:
        self.channels: set[str] = set()
        self.due_at: float | None = None

    def due(self, at: float | None) -> None:
        """Something comes due at ``at`` (None: nothing)."""
        if at is not None and (self.due_at is None or at < self.due_at):
            self.due_at = at


def resolve(
    conn: sqlite3.Connection,
    queries: Mapping[str, str],
    parent_id: str,
    end: str,
    now: float,
    released: Released,
) -> None:
    """In the caller's transaction: a parent ended (``done``, ``failed``, ``cancelled``,
    ``deleted`` or ``expired``). Its waiting children count it as finished (``done``, or
    policy ``run``: released once no parent is pending) or end (policy ``fail``), and a
    child that ends resolves its own children in turn."""
    work = [(parent_id, end)]
    while work:
        parent, end = work.pop()
        done = end == "done"
        params = {"parent": parent, "now": now, "done": done}
        for queue, state, run_at in conn.execute(queries["release_children"], params):
            if state == _QUEUED:
                released.channels.add(queue)
            elif state == _SCHEDULED:
                released.due(run_at)
        if not done:
            state = _FAILED if end == "failed" else _CANCELLED
            params = {**params, "state": state, "error": dependency_error(parent, end)}
            ended = conn.execute(queries["end_children"], params).fetchall()
            if ended:
                released.channels.add(DONE_CHANNEL)
            for child, has_children, expires_at in ended:
                released.due(expires_at)
                if has_children:
                    work.append((child, STATES[state].value))
        conn.execute(queries["forget_children"], (parent,))
        conn.execute(queries["unmark_parent"], (parent,))


def resolve_all(
    conn: sqlite3.Connection,
    queries: Mapping[str, str],
    parents: Iterable[str],
    end: str,
    now: float,
    released: Released,
) -> None:
    """:func:`resolve` each of ``parents``."""
    for parent_id in parents:
        resolve(conn, queries, parent_id, end, now, released)


def ack_parents(
    conn: sqlite3.Connection,
    queries: Mapping[str, str],
    rows: list[Any],
    job_ids: Sequence[str],
    results: Sequence[EncodedResult] | None,
    attempts: Sequence[int | None] | None,
    now: float,
) -> Released | None:
    """In the caller's transaction, after the ack statements (which leave parents with
    waiting children alone): ``rows`` (id, expiry) are the jobs they acked. Each other
    job of ``job_ids`` is lost, or a parent with waiting children: acks the parents
    (appending to ``rows``) and releases their children. Returns what that released
    (None when every job was acked: the usual case, no statement run)."""
    if len(rows) == len(job_ids):
        return None
    acked = {row[0] for row in rows}
    released = Released()
    for index, job_id in enumerate(job_ids):
        if job_id in acked:
            continue
        raw, code = results[index] if results else NO_RESULT
        attempt = attempts[index] if attempts else None
        params = {"id": job_id, "result": raw, "encoding": int(code), "now": now}
        parent = conn.execute(queries["ack_parent"], {**params, "attempts": attempt}).fetchall()
        if parent:
            rows.extend(parent)
            acked.add(job_id)
            resolve(conn, queries, job_id, "done", now, released)
    return released


def expire_parents(
    conn: sqlite3.Connection, queries: Mapping[str, str], now: float, batch: int
) -> tuple[int, Released | None]:
    """In the caller's transaction (the expiry's): delete the parents whose TTL ran out, at
    most ``batch``, their children resolved. Returns how many, and what they released
    (None for none: the usual case, one look at an empty index).

    ``job_dependencies`` keeps each parent's TTL (a pending job's never changes), in an
    index of its own: the ack, which sets a done job's expiry, keeps up no index for it."""
    params = {"now": now, "batch": batch}
    expired = conn.execute(queries["expiring_parents"], params).fetchall()
    if not expired:
        return 0, None
    released = Released()
    for (parent_id,) in expired:
        conn.execute(queries["delete"], (parent_id,)).fetchall()
        resolve(conn, queries, parent_id, "expired", now, released)
    return len(expired), released


def admit(
    conn: sqlite3.Connection,
    queries: Mapping[str, str],
    jobs: Sequence[Job],
    rows: Sequence[tuple[Any, ...]],
    now: float,
) -> tuple[list[tuple[Any, ...]], list[tuple[str, str, float | None]]]:
    """In the add's transaction, for a batch with parents: each parent must be held (in any
    state) or an earlier job of the batch, else ``JobNotFound`` naming it. Plans the jobs
    whose id is not held yet, each in its state (waiting while a parent is pending; ended
    at once by a parent that failed or was cancelled, under policy ``fail``); ``rows``: as
    ``insert_unique`` takes them (the unique key and states mask last). Returns the rows
    ``insert_dependant`` takes and the (parent, child, parent's TTL) of each wait, for
    :func:`insert`. Changes nothing."""
    wanted = {job.id for job in jobs}.union(*(job.depends_on for job in jobs))
    found = conn.execute(queries["states_of"], (json.dumps(sorted(wanted)),)).fetchall()
    states: dict[str, int] = {job_id: state for job_id, state, _ in found}
    expiries: dict[str, float | None] = {job_id: at for job_id, _, at in found}
    planned: list[tuple[Any, ...]] = []
    pairs: list[tuple[str, str, float | None]] = []
    for job, row in zip(jobs, rows, strict=True):
        if job.id in states:
            continue  # an id the file holds is never added again
        for parent in job.depends_on:
            if parent not in states:
                raise JobNotFound(parent)
        planned.append(_plan(job, row, states, now))
        states[job.id], expiries[job.id] = planned[-1][2], planned[-1][10]
        if states[job.id] == _WAITING:
            pairs.extend(
                (p, job.id, expiries[p]) for p in job.depends_on if states[p] not in _ENDED
            )
    return planned, pairs


def insert(
    conn: sqlite3.Connection,
    queries: Mapping[str, str],
    rows: Sequence[tuple[Any, ...]],
    pairs: Sequence[tuple[str, str, float | None]],
) -> None:
    """Insert :func:`admit`'s rows, record what the waiting jobs wait for, and flag their
    parents (whose end then resolves them)."""
    conn.executemany(queries["insert_dependant"], rows)
    conn.executemany(queries["add_dependency"], pairs)
    conn.executemany(queries["mark_parent"], [(parent,) for parent in {p for p, *_ in pairs}])


def _plan(job: Job, row: tuple[Any, ...], states: dict[str, int], now: float) -> tuple[Any, ...]:
    """The ``insert_dependant`` row of one job, its parents' states known."""
    if not job.depends_on:
        return (*row, None, 0, None, None, None)
    parents = json.dumps(list(job.depends_on))
    policy = POLICIES.index(job.on_dependency_failure)
    pending = 0
    for parent in job.depends_on:
        parent_state = states[parent]
        if parent_state in (_FAILED, _CANCELLED):
            if policy == 0:
                error = dependency_error(parent, STATES[parent_state].value)
                expires_at = now + job.result_ttl if parent_state == _CANCELLED else None
                head = (*row[:2], parent_state, *row[3:10], expires_at, *row[11:])
                return (*head, parents, policy, None, error, now)
        elif parent_state != _DONE:
            pending += 1
    if pending:
        return (*row[:2], _WAITING, *row[3:], parents, policy, pending, None, None)
    return (*row, parents, policy, None, None, None)


def channels_of(rows: Sequence[tuple[Any, ...]]) -> set[str]:
    """What inserting :func:`admit`'s rows announces: the queues of the jobs queued, and
    ``done`` if a job ended at once."""
    channels = {row[1] for row in rows if row[2] == _QUEUED}
    if any(row[2] in (_FAILED, _CANCELLED) for row in rows):
        channels.add(DONE_CHANNEL)
    return channels
