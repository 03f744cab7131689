"""What the SQL stores (SQLite and PostgreSQL) share: how a job is laid out in a row, and
how their statement files are read.

A job row holds the columns of :data:`COLUMNS`, in the order of :class:`~disquette.job.Job`'s
fields (then ``seq``, the store's enqueue order); the state and the encodings are small
integers (:data:`STATE_CODES`, :data:`ENCODINGS`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from importlib.resources.abc import Traversable
from typing import Any, Final

from ..errors import StoreError
from ..job import DEPENDENCY_POLICIES, Encoding, Job, JobState, decode_progress

#: Job states by the code a row holds (the SQL files name them by these numbers).
STATES: Final = (
    JobState.SCHEDULED,
    JobState.QUEUED,
    JobState.ACTIVE,
    JobState.DONE,
    JobState.FAILED,
    JobState.CANCELLED,
    JobState.WAITING,
)
#: The code of each job state in a row.
STATE_CODES: Final = {state: code for code, state in enumerate(STATES)}
#: Encodings by the code a row holds (an :class:`~disquette.job.Encoding` is its code).
ENCODINGS: Final = tuple(Encoding)
#: The columns a job is read from, in the order of Job's fields, then ``seq``, then the
#: fields added since (cancel request, progress as JSON text, headers as JSON).
COLUMNS: Final = (
    "id, queue, body, encoding, type, priority, state, created_at, run_at, retry_after, "
    "expires_at, max_attempts, result_ttl, attempts, nacks, additional_deliveries, "
    "error_count, last_error, lease_until, result, result_encoding, finished_at, seq, "
    "cancel_requested, progress, headers"
)
#: Where ``seq`` is in a row of :data:`COLUMNS` (a scan's cursor).
SEQ: Final = 22
#: The columns of a job's dependencies (issue 16), selected after :data:`COLUMNS` where a
#: read needs them (``show``, a claim): the parents (JSON text on SQLite, ``text[]`` on
#: PostgreSQL; NULL for none) and the policy code (:data:`POLICIES`). A row without them
#: reads as a job without parents.
DEPENDENCY_COLUMNS: Final = "depends_on, on_dependency_failure"
#: ``on_dependency_failure`` by the code a row holds.
POLICIES: Final = DEPENDENCY_POLICIES

_BLOCK: Final = re.compile(r"^-- name: (\w+)\n", re.MULTILINE)
_PLACEHOLDER: Final = re.compile(r"\{(\w+)\}")
_MIGRATION_FILE: Final = re.compile(r"(\d{3})_(\w+)\.sql")


def headers_column(headers: dict[str, str]) -> str | None:
    """What the ``headers`` column holds: JSON text, NULL for none (no cost for the usual
    job). Checked headers always encode (:func:`~disquette.job.check_headers`)."""
    return json.dumps(headers, ensure_ascii=False, separators=(",", ":")) if headers else None


def row_to_job(row: Sequence[Any]) -> Job:
    """The job a row of :data:`COLUMNS` holds (``seq`` is skipped)."""
    # Positional: the columns are selected in the order of Job's fields. On the claim path,
    # so no per-field lookups.
    values = list(row[:SEQ])
    values[3] = ENCODINGS[values[3]]
    values[6] = STATES[values[6]]
    values[20] = ENCODINGS[values[20]]
    values.append(bool(row[SEQ + 1]))
    values.append(None if row[SEQ + 2] is None else decode_progress(row[SEQ + 2]))
    job = Job(*values)
    headers = row[SEQ + 3]
    if headers is not None:  # most jobs have none: no call for them
        # SQLite's text; psycopg decodes PostgreSQL's json itself.
        job.headers = json.loads(headers) if isinstance(headers, str) else headers
    if len(row) > SEQ + 4 and row[SEQ + 4] is not None:
        parents = row[SEQ + 4]
        job.depends_on = tuple(json.loads(parents) if isinstance(parents, str) else parents)
        job.on_dependency_failure = POLICIES[row[SEQ + 5] or 0]
    return job


def load_named_blocks(text: str, source: str, **placeholders: str) -> dict[str, str]:
    """The statements of a SQL file, by name: each block starts with a ``-- name: x`` line
    (text before the first one is the file's header) and has its ``{placeholder}``\\ s
    filled from ``placeholders``.

    A file that would load wrong fails here, naming ``source``: a name used twice, a block
    with no statement, a ``{placeholder}`` with no value given.
    """
    pieces = _BLOCK.split(text)
    blocks: dict[str, str] = {}
    for name, body in zip(pieces[1::2], pieces[2::2], strict=True):
        if name in blocks:
            raise StoreError(source, f"block {name!r} is defined twice")
        statement = body.strip()
        if not statement:
            raise StoreError(source, f"block {name!r} is empty")
        for key, value in placeholders.items():
            statement = statement.replace("{" + key + "}", value)
        unfilled = _PLACEHOLDER.search(statement)
        if unfilled:
            raise StoreError(source, f"block {name!r} has no value for {unfilled[0]}")
        blocks[name] = statement
    return blocks


def numbered_migrations(folder: Traversable) -> tuple[tuple[int, str, str], ...]:
    """``(version, name, text)`` of each ``NNN_name.sql`` file in ``folder``, in order; two
    files of one version fail, naming them."""
    found: dict[int, tuple[int, str, str]] = {}
    for entry in folder.iterdir():
        match = _MIGRATION_FILE.fullmatch(entry.name)
        if not match:
            continue
        version = int(match[1])
        if version in found:
            raise StoreError(
                str(folder), f"migrations {found[version][1]!r} and {match[2]!r} are both {version}"
            )
        found[version] = (version, match[2], entry.read_text())
    return tuple(found[version] for version in sorted(found))
