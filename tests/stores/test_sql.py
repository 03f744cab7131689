"""The SQL stores' shared pieces: the named-block loader, numbered migrations, the row codec."""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path

import pytest

from disquette.errors import StoreError
from disquette.job import Encoding, Job, JobState
from disquette.stores._sql import (
    COLUMNS,
    ENCODINGS,
    SEQ,
    STATE_CODES,
    STATES,
    load_named_blocks,
    numbered_migrations,
    row_to_job,
)
from disquette.stores.postgres import statements as postgres
from disquette.stores.sqlite import store as sqlite


def test_blocks_load_by_name_with_their_placeholders_filled() -> None:
    text = "-- header\n-- name: one\nSELECT {columns} FROM t;\n\n-- name: two\nDELETE FROM t\n"
    blocks = load_named_blocks(text, "x.sql", columns="a, b")
    assert blocks == {"one": "SELECT a, b FROM t;", "two": "DELETE FROM t"}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("-- name: a\nSELECT 1\n-- name: a\nSELECT 2\n", "block 'a' is defined twice"),
        ("-- name: a\n\n  \n-- name: b\nSELECT 2\n", "block 'a' is empty"),
        ("-- name: a\nSELECT 1\n-- name: b\n", "block 'b' is empty"),
        ("-- name: a\nSELECT {columns} FROM {table}\n", "block 'a' has no value for {table}"),
    ],
)
def test_a_file_that_would_load_wrong_fails_naming_the_block(text: str, reason: str) -> None:
    with pytest.raises(StoreError) as caught:
        load_named_blocks(text, "x.sql", columns="a")
    assert str(caught.value) == f"x.sql: {reason}"


def test_every_block_of_the_shipped_query_files_loads() -> None:
    # Both real files go through the loader's checks (it runs at import and per schema).
    assert {"schema", "migrate_2", "migrate_3", "claim", "insert"} <= set(sqlite.QUERIES)
    pg = postgres.queries("disquette")
    assert {"claim", "show", "scan", "prune_holders"} <= set(pg)
    assert '"disquette".' in pg["claim"]


def test_postgres_migrations_are_numbered_in_order() -> None:
    found = numbered_migrations(resources.files("disquette.stores.postgres") / "sql")
    assert [version for version, _, _ in found] == list(range(1, len(found) + 1))
    assert found[0][1] == "init"


def test_two_migrations_of_one_version_fail(tmp_path: Path) -> None:
    (tmp_path / "001_init.sql").write_text("SELECT 1")
    (tmp_path / "001_again.sql").write_text("SELECT 2")
    (tmp_path / "notes.txt").write_text("not a migration")
    with pytest.raises(StoreError, match="are both 1"):
        numbered_migrations(tmp_path)


def test_a_job_survives_the_row_codec() -> None:
    job = Job(
        "id-1",
        "q",
        b"\x00body",
        Encoding.JSON,
        "email",
        7,
        JobState.FAILED,
        1.5,
        2.5,
        30.0,
        99.0,
        3,
        60.0,
        2,
        1,
        1,
        2,
        "boom",
        12.0,
        b"result",
        Encoding.TEXT,
        13.0,
        True,
        {"done": [1, 2]},
    )
    names = [field.name for field in dataclasses.fields(Job)]
    fields = [getattr(job, name) for name in names]
    # After seq, the columns added since; the unique fields are given at add and kept by
    # the stores, not read back into jobs.
    assert names[SEQ:] == [
        "cancel_requested",
        "progress",
        "unique_key",
        "unique_states",
        "headers",
        "depends_on",
        "on_dependency_failure",
    ]
    row = [*fields[:SEQ], 41, 1, '{"done":[1,2]}', None]  # no headers
    row[3], row[6], row[20] = int(job.encoding), STATE_CODES[job.state], int(job.result_encoding)
    assert row_to_job(row) == job
    assert len(COLUMNS.split(", ")) == SEQ + 4 == len(fields) - 3
    # The dependency columns, when a read selects them: JSON text (SQLite) or a list
    # (PostgreSQL's text[]), and the policy's code; NULL parents read as none.
    assert row_to_job([*row, '["p-1","p-2"]', 1]).depends_on == ("p-1", "p-2")
    assert row_to_job([*row, ["p-1"], 1]).on_dependency_failure == "run"
    assert row_to_job([*row, None, None]) == job
    assert all(ENCODINGS[int(encoding)] is encoding for encoding in Encoding)
    assert all(STATES[STATE_CODES[state]] is state for state in JobState)
