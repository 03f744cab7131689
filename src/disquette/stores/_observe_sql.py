"""What the SQL stores share for operations views (issue 14): a
:class:`~disquette.stores.types.JobFilter` as SQL (one builder, the two dialects differing
only in placeholders and the JSON body test), and rollups as rows.

Every term is a plain comparison on a column, so the planner can use an index for it: the
queue (``jobs_queue_seq``, added for these scans), the id prefix as a range on the unique
id index, ``seq`` for the keyset cursor. The error substring and the body path are tests
on the rows the other terms leave (documented as the slower filters).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from ..job import Encoding
from ._sql import STATE_CODES
from .types import DURATION_BUCKETS, JobFilter, RollupRow

Dialect = Literal["sqlite", "postgres"]


def _sqlite_body(path: str) -> str:
    # json_extract reads text only (a BLOB would be refused, or read as JSONB by newer
    # SQLite), so the body is cast; the outer CASE keeps json_* away from malformed bodies.
    text = "CAST(body AS TEXT)"
    return (
        f"(CASE WHEN encoding = {int(Encoding.JSON)} AND json_valid({text}) THEN "
        f"(CASE json_type({text}, {path}) WHEN 'text' THEN json_extract({text}, {path}) "
        f"WHEN 'integer' THEN CAST(json_extract({text}, {path}) AS TEXT) "
        f"WHEN 'real' THEN CAST(json_extract({text}, {path}) AS TEXT) "
        "WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' END) END)"
    )


def _body_term(where: JobFilter, dialect: Dialect, schema: str, param: Callable[..., str]) -> str:
    if dialect == "sqlite":
        value = _sqlite_body(param("f_path", "$." + str(where.body_path)))
    else:
        path = param("f_path", list(where.path), "::text[]")
        function = f"{schema}.body_scalar(body, {path})"
        value = f"(CASE WHEN encoding = {int(Encoding.JSON)} THEN {function} END)"
    if where.body_value is None:
        return f"{value} IS NOT NULL"
    return f"{value} = {param('f_value', where.body_value, '::text')}"


def filter_sql(where: JobFilter, dialect: Dialect, schema: str = "") -> tuple[str, dict[str, Any]]:
    """The WHERE terms (joined by AND, "TRUE" for none) and their parameters, named
    ``f_*``. ``schema`` (PostgreSQL) qualifies the body function of migration 007."""
    params: dict[str, Any] = {}
    terms: list[str] = []

    def param(name: str, value: object, cast: str = "") -> str:
        params[name] = value
        if dialect == "sqlite":
            return f":{name}"
        return f"%({name})s{cast}"

    if where.queue is not None:
        terms.append(f"queue = {param('f_queue', where.queue, '::text')}")
    if where.states is not None:
        codes = ", ".join(str(STATE_CODES[state]) for state in sorted(where.states))
        # One state as "state = n": SQLite then reads that state's partial index when it
        # has one (a capped count of scheduled jobs: 134 ms -> 0.1 ms at 1M jobs); it
        # does not see that "state IN (n)" implies the index's WHERE.
        terms.append(f"state = {codes}" if len(where.states) == 1 else f"state IN ({codes})")
    if where.type is not None:
        terms.append(f"type = {param('f_type', where.type, '::text')}")
    if where.error is not None:
        needle = param("f_error", where.error, "::text")
        position = "instr(last_error, {})" if dialect == "sqlite" else "strpos(last_error, {})"
        terms.append(f"{position.format(needle)} > 0")
    if where.id_prefix is not None:
        prefix = where.id_prefix
        after = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        lo, hi = param("f_id_lo", prefix, "::text"), param("f_id_hi", after, "::text")
        terms.append(f"id >= {lo} AND id < {hi}")
    if where.since is not None:
        terms.append(f"created_at >= {param('f_since', where.since, '::float8')}")
    if where.until is not None:
        terms.append(f"created_at < {param('f_until', where.until, '::float8')}")
    if where.body_path is not None:
        terms.append(_body_term(where, dialect, schema, param))
    return " AND ".join(terms) or "TRUE", params


def rollup_params(row: RollupRow) -> dict[str, object]:
    params: dict[str, object] = {
        "resolution": row.resolution,
        "start": row.start,
        "queue": row.queue,
        "type": row.type,
        "completed": row.completed,
        "errors": row.errors,
    }
    params.update({f"h{i}": n for i, n in enumerate(row.histogram)})
    return params


def rollup_from_row(row: Sequence[object]) -> RollupRow:
    """A rollup from a row of (resolution, start, queue, type, completed, errors, h0..h15)."""
    resolution, start, queue, job_type, completed, errors, *histogram = row
    assert len(histogram) == len(DURATION_BUCKETS)
    return RollupRow(
        resolution,  # type: ignore[arg-type]
        float(start),  # type: ignore[arg-type]
        str(queue),
        str(job_type),
        int(completed),  # type: ignore[call-overload]
        int(errors),  # type: ignore[call-overload]
        tuple(int(n) for n in histogram),  # type: ignore[call-overload]
    )
