"""The rows the SQLite store's add inserts: a job's parameters for ``insert``, which
variant of the statement takes them, and the earliest time-driven change they bring."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from ...job import Job
from .._sql import headers_column
from .database import INSERTS, QUERIES

#: Bodies up to this size are bound as a bytearray copy (cheaper than sqlite3's adapter
#: lookup for bytes, about a microsecond); larger ones as they are.
_COPIED_BODY: Final = 4096


def job_row(job: Job, now: float) -> tuple[Any, ...]:
    """The ``insert`` statement's parameters for a job."""
    body = job.raw_body
    return (
        job.id,
        job.queue,
        1 if job.run_at <= now else 0,
        job.priority,
        job.run_at,
        job.created_at,
        # A short body as a bytearray, which sqlite3 binds as it is (bytes it adapts).
        bytearray(body) if type(body) is bytes and len(body) <= _COPIED_BODY else body,
        int(job.encoding),
        job.type,
        job.retry_after,
        job.expires_at,
        job.max_attempts,
        job.result_ttl,
        headers_column(job.headers) if job.headers else None,
    )


def inserts_of(rows: list[tuple[Any, ...]], unique: bool) -> tuple[str, Iterable[Sequence[Any]]]:
    """The statement that inserts rows of :func:`job_row` (with a unique key: of
    ``insert_unique``), and its parameters: when the rows agree on which of their type,
    TTL and headers are None (the usual batch), NULLs in the text (see ``INSERTS``)."""
    if unique:
        return QUERIES["insert_unique"], rows
    nulls = {(row[8] is None, row[10] is None, row[13] is None) for row in rows}
    if len(nulls) > 1:
        return QUERIES["insert"], rows
    sql, params = INSERTS[nulls.pop()]
    return sql, map(params, rows)


def next_due_of(rows: Sequence[Sequence[Any]]) -> float | None:
    """The earliest time-driven change new job rows bring (a delay or a TTL running out),
    None for none: rows as the insert takes them (ready flag 2, run_at 4, expires_at 10)."""
    times = [row[4] for row in rows if not row[2]]
    times.extend(row[10] for row in rows if row[10] is not None)
    return min(times, default=None)
