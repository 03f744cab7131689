"""The SQL the PostgreSQL store runs (both flavours): the named queries of
``sql/queries.sql``, and the migrations ``sql/NNN_name.sql`` as one script, for one schema.

Tables (in the schema): ``jobs`` holds pending jobs only (scheduled, queued, active, failed);
an ack moves a job to ``done`` (or deletes it when ``result_ttl`` is 0), where it stays for
``wait`` until its ``result_ttl`` and is then pruned in bounded batches. So the hot table's
live size is the backlog, never the history, and the claim's partial index holds only ready
jobs. Each claim and ack still leaves a dead row version; autovacuum wakes up once a minute
at best, so the store also runs ``VACUUM`` on ``jobs`` every ``vacuum_every`` jobs it moves
(``bench/bench_postgres.py --churn 1000000``: the heap stays ~9 MB through a million jobs).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any, Final

from ...job import Job
from .._sql import (
    COLUMNS,
    DEPENDENCY_COLUMNS,
    headers_column,
    load_named_blocks,
    numbered_migrations,
)

#: The columns of a job read from the done table, in the order of ``COLUMNS``.
_DONE_COLUMNS: Final = (
    "id, queue, body, encoding, type, priority, 3::int2, created_at, run_at, retry_after, "
    "expires_at, max_attempts, result_ttl, attempts, nacks, additional_deliveries, "
    "error_count, last_error, NULL::float8, result, result_encoding, finished_at, seq, "
    "false, NULL::text, headers"
)


def _sql_dir() -> Any:
    return resources.files(__package__) / "sql"


def quote(schema: str) -> str:
    """``schema`` as a quoted SQL identifier."""
    return '"' + schema.replace('"', '""') + '"'


def channel_name(schema: str, suffix: str = "") -> str:
    """The NOTIFY channel of a schema (at most 63 bytes, PostgreSQL's identifier limit):
    jobs became ready in the queue named by the payload; with ``suffix=".done"``, the
    channel of "a job is done or gone" (a schema name has no dot, so the two never meet)."""
    name = f"disquette.{schema}{suffix}"
    if len(name.encode()) > 63:
        name = f"disquette.{hashlib.sha1(schema.encode()).hexdigest()}{suffix}"
    return name


@functools.cache
def migrations() -> tuple[tuple[int, str, str], ...]:
    """(version, name, text) of every migration file, in order."""
    return numbered_migrations(_sql_dir())


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@functools.cache
def queries(schema: str) -> dict[str, str]:
    """The named statements of ``queries.sql`` for one schema."""
    return load_named_blocks(
        (_sql_dir() / "queries.sql").read_text(),
        "postgres/queries.sql",
        columns=COLUMNS,
        done_columns=_DONE_COLUMNS,
        dependency_columns=DEPENDENCY_COLUMNS,
        schema=quote(schema),
        ready_channel=_literal(channel_name(schema)),
        done_channel=_literal(channel_name(schema, ".done")),
    )


def migration_script(schema: str) -> str:
    """One SQL script that brings ``schema`` up to date: lock, create what is missing, apply
    each pending migration and record it, in one transaction."""
    quoted = quote(schema)
    table = f"{quoted}.schema_migrations"
    lock_key = f"disquette migrate {schema}".replace("'", "''")
    parts = [
        "BEGIN;",
        f"SELECT pg_advisory_xact_lock(hashtextextended('{lock_key}', 0));",
        f"CREATE SCHEMA IF NOT EXISTS {quoted};",
        f"CREATE TABLE IF NOT EXISTS {table} (version integer PRIMARY KEY, "
        "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());",
    ]
    for version, name, text in migrations():
        parts.append(
            f"DO $disquette$ BEGIN\n"
            f"IF NOT EXISTS (SELECT FROM {table} WHERE version = {version}) THEN\n"
            f"EXECUTE $migration${text.replace('{schema}', quoted)}$migration$;\n"
            f"INSERT INTO {table} (version, name) VALUES ({version}, '{name}');\n"
            "END IF;\nEND $disquette$;"
        )
    parts.append("COMMIT;")
    return "\n".join(parts)


def insert_statement(
    q: dict[str, str], jobs: Sequence[Job], now: float, channel: str
) -> tuple[str, dict[str, Any]]:
    """The statement that inserts ``jobs``, and its parameters: one job; jobs that differ
    only in id and body (what ``add_many`` makes), sent as arrays of those; or any jobs,
    every column an array."""
    if len(jobs) == 1 or _uniform(jobs):
        params = _shared_settings(jobs[0], now, channel)
        if len(jobs) == 1:
            job = jobs[0]
            params.update(id=job.id, body=job.raw_body, encoding=int(job.encoding))
            return q["insert_one"], params
        params["ids"] = [job.id for job in jobs]
        params["bodies"] = [job.raw_body for job in jobs]
        params["encodings"] = [int(job.encoding) for job in jobs]
        return q["insert_uniform"], params
    return q["insert"], _array_params(jobs, now, channel)


def unique_insert_params(jobs: Sequence[Job], now: float, channel: str) -> dict[str, Any]:
    """The parameters of ``insert_unique`` for ``jobs`` (any settings, keys or not)."""
    params = _array_params(jobs, now, channel)
    params["unique_keys"] = [job.unique_key for job in jobs]
    params["unique_states"] = [job.unique_states for job in jobs]
    params["now"] = now
    return params


def _array_params(jobs: Sequence[Job], now: float, channel: str) -> dict[str, Any]:
    """Every column of ``jobs`` as an array (jobs with any settings)."""
    return {
        "ids": [job.id for job in jobs],
        "queues": [job.queue for job in jobs],
        "bodies": [job.raw_body for job in jobs],
        "encodings": [int(job.encoding) for job in jobs],
        "types": [job.type for job in jobs],
        "priorities": [job.priority for job in jobs],
        "states": [1 if job.run_at <= now else 0 for job in jobs],
        "created_at": [job.created_at for job in jobs],
        "run_at": [job.run_at for job in jobs],
        "retry_after": [job.retry_after for job in jobs],
        "expires_at": [job.expires_at for job in jobs],
        "max_attempts": [job.max_attempts for job in jobs],
        "result_ttl": [job.result_ttl for job in jobs],
        "headers": [headers_column(job.headers) for job in jobs],
        "channel": channel,
    }


def unique_one_params(job: Job, now: float, channel: str) -> dict[str, Any]:
    """The parameters of ``insert_unique_one`` for one job."""
    params = _shared_settings(job, now, channel)
    params.update(
        id=job.id,
        body=job.raw_body,
        encoding=int(job.encoding),
        unique_key=job.unique_key,
        unique_states=job.unique_states,
        now=now,
    )
    return params


def _shared_settings(job: Job, now: float, channel: str) -> dict[str, Any]:
    """The parameters of a job that every job of a uniform batch shares."""
    return {
        "queue": job.queue,
        "type": job.type,
        "priority": job.priority,
        "state": 1 if job.run_at <= now else 0,
        "created_at": job.created_at,
        "run_at": job.run_at,
        "retry_after": job.retry_after,
        "expires_at": job.expires_at,
        "max_attempts": job.max_attempts,
        "result_ttl": job.result_ttl,
        "headers": headers_column(job.headers),
        "channel": channel,
    }


def _settings(job: Job) -> tuple[object, ...]:
    return (
        job.queue,
        job.type,
        job.priority,
        job.created_at,
        job.run_at,
        job.retry_after,
        job.expires_at,
        job.max_attempts,
        job.result_ttl,
        job.headers,
    )


def _uniform(jobs: Sequence[Job]) -> bool:
    """Whether the jobs differ only in id, body and encoding (what ``add_many`` makes,
    headers included)."""
    shared = _settings(jobs[0])
    return all(_settings(job) == shared for job in jobs)
