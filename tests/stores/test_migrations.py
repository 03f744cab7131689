"""Issue 13's migrations (SQLite version 4, PostgreSQL 005: cancellation and progress,
unique keys, headers): a store filled by the previous version is upgraded in place, keeps
every job in every state, and a process of the previous version goes on adding and claiming
during the upgrade."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from disquette import Client, JobState, ManualClock, connect
from disquette.periodic import periodic
from disquette.stores._sql import STATE_CODES
from disquette.stores.postgres.statements import migrations as postgres_migrations
from disquette.stores.sqlite import store as sqlite_module
from disquette.stores.sqlite.store import QUERIES
from tests.servers.postgres import fresh_url, split_url

#: Issue 13's migration (cancellation and progress, unique keys, headers), per store.
SQLITE_VERSION = 4
POSTGRES_VERSION = 5
#: Every PostgreSQL migration (the upgrade from before 5 applies every later one too).
POSTGRES_VERSIONS = [version for version, _, _ in postgres_migrations()]

#: Ids of the jobs a previous version left, one per state.
IDS = {
    state: f"D-00000000-{letter * 24}-0001"
    for letter, state in zip("ABCDE", list(JobState)[:5], strict=True)  # before cancelled
}

#: The previous version's insert, as its SQLite store ran it (no headers column).
SQLITE_OLD_INSERT = """
INSERT INTO jobs (id, queue, state, priority, run_at, created_at, body, encoding, type,
                  retry_after, expires_at, max_attempts, result_ttl)
VALUES (?, 'q', ?, 100, 0, 0, ?, 1, 'kind', 300, NULL, 25, 3600)
"""


def _sqlite_file_at_previous_version(path: Path) -> None:
    """What the previous version made, with a job in each state."""
    old = sqlite3.connect(path, isolation_level=None)
    for version in range(1, SQLITE_VERSION):
        for statement in QUERIES[sqlite_module._MIGRATIONS[version]].split(";\n"):
            if statement.strip():
                old.execute(statement)
    old.execute(f"PRAGMA user_version = {SQLITE_VERSION - 1}")
    for state, job_id in IDS.items():
        old.execute(SQLITE_OLD_INSERT, (job_id, STATE_CODES[state], state.value.encode()))
    old.execute("UPDATE jobs SET run_at = 1e12 WHERE state = 0")
    old.execute("UPDATE jobs SET attempts = 1, leased_at = 0, lease_until = 1e12 WHERE state = 2")
    old.execute("UPDATE jobs SET finished_at = 1, expires_at = 1e12 WHERE state = 3")
    old.execute(
        "UPDATE jobs SET finished_at = 1, error_count = 25, last_error = 'e' WHERE state = 4"
    )
    old.close()


def test_sqlite_upgrade_keeps_every_job_and_the_previous_versions_insert(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    _sqlite_file_at_previous_version(path)
    with connect(f"sqlite:///{path}") as jobs:
        for state, job_id in IDS.items():
            job = jobs.show(job_id)
            assert (job.state, job.body, job.type, job.headers) == (state, state.value, "kind", {})
        new = jobs.add("new", "q", headers={"trace": "1"})
        # A process of the previous version adds with its own insert: no headers, no error.
        raw = sqlite3.connect(path, isolation_level=None)
        older = "D-00000000-FFFFFFFFFFFFFFFFFFFFFFFF-0001"
        raw.execute(SQLITE_OLD_INSERT, (older, 1, b"older"))
        raw.close()
        claimed = jobs.timeout(0).get_many("q", count=3)
        assert {job.id: job.headers for job in claimed} == {
            IDS[JobState.QUEUED]: {},
            new: {"trace": "1"},
            older: {},
        }
        jobs.ack(jobs.show(IDS[JobState.ACTIVE]))
        jobs.retry(IDS[JobState.FAILED])
        _schedules_work(jobs)
    version = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
    assert version == sqlite_module._SCHEMA_VERSION >= SQLITE_VERSION


def _schedules_work(jobs: Client) -> None:
    """The upgraded schema has the schedule registry, empty."""
    assert jobs.schedules() == []
    jobs.store.register_schedules([periodic(60, name="s", queue="q").info()])
    jobs.pause_schedule("s")
    assert [(info.name, info.paused) for info in jobs.schedules()] == [("s", True)]


#: The columns the previous version read, and its claim as it ran it (binary, prepared).
_OLD_COLUMNS = (
    "id, queue, body, encoding, type, priority, state, created_at, run_at, retry_after, "
    "expires_at, max_attempts, result_ttl, attempts, nacks, additional_deliveries, "
    "error_count, last_error, lease_until, result, result_encoding, finished_at, seq"
)


def test_postgres_upgrade_keeps_every_job_and_the_previous_versions_claim(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from disquette.stores.postgres import statements as module

    url = fresh_url(migrate="false")
    base, schema = split_url(url)
    previous = module.migrations()[: POSTGRES_VERSION - 1]
    monkeypatch.setattr(module, "migrations", lambda: previous)
    old_claim = (
        f"SELECT {_OLD_COLUMNS} FROM {schema}.claim(%(queues)b::text[], %(count)s::int4,"
        " %(now)s::float8, %(holder)s::text);"
    )

    def claim_as_before(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
        params = {"queues": ["q"], "count": 1, "now": 1e11, "holder": None}
        cursor = conn.execute(old_claim, params, binary=True, prepare=True)
        return [str(row[0]) for row in cursor.fetchall()]

    jobs_columns = (
        "id, queue, body, encoding, type, priority, state, created_at, run_at, retry_after,"
        " max_attempts, result_ttl"
    )
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(module.migration_script(schema))  # the previous version's schema
        for state, job_id in IDS.items():
            if state is JobState.DONE:
                conn.execute(
                    f"INSERT INTO {schema}.done (id, queue, body, encoding, type, priority,"
                    " created_at, run_at, retry_after, expires_at, max_attempts, result_ttl,"
                    " attempts, nacks, additional_deliveries, error_count, result_encoding,"
                    " finished_at, seq) VALUES (%s, 'q', %s, 1, 'kind', 100, 0, 0, 300, 1e12,"
                    " 25, 3600, 1, 0, 0, 0, 0, 1, 0)",
                    (job_id, state.value.encode()),
                )
                continue
            conn.execute(
                f"INSERT INTO {schema}.jobs ({jobs_columns}, attempts, lease_until, leased_at)"
                " VALUES (%s, 'q', %s, 1, 'kind', 100, %s, 0, %s, 300, 25, 3600, %s, %s, %s)",
                (
                    job_id,
                    state.value.encode(),
                    STATE_CODES[state],
                    1e12 if state is JobState.SCHEDULED else 0.0,
                    1 if state is JobState.ACTIVE else 0,
                    1e12 if state is JobState.ACTIVE else None,
                    0.0 if state is JobState.ACTIVE else None,
                ),
            )
        # The previous version's claim, prepared on this connection before the upgrade.
        later = "D-00000000-FFFFFFFFFFFFFFFFFFFFFFFF-0001"
        for _ in range(6):
            assert claim_as_before(conn) in ([IDS[JobState.QUEUED]], [])
        monkeypatch.undo()
        with connect(url) as jobs:
            assert jobs.store.migrate() == [
                version for version in POSTGRES_VERSIONS if version >= POSTGRES_VERSION
            ]
            for state, job_id in IDS.items():
                job = jobs.show(job_id)
                expected = JobState.ACTIVE if state is JobState.QUEUED else state
                assert (job.state, job.body, job.type, job.headers) == (
                    expected,
                    state.value,
                    "kind",
                    {},
                )
            # The previous version's process goes on claiming with its prepared statement.
            conn.execute(
                f"INSERT INTO {schema}.jobs ({jobs_columns}) VALUES"
                " (%s, 'q', 'x', 0, NULL, 100, 1, 1, 1, 300, 25, 3600)",
                (later,),
            )
            assert claim_as_before(conn) == [later]
            new = jobs.add("new", "q", headers={"trace": "1"})
            assert jobs.show(new).headers == {"trace": "1"}
            assert [(job.id, job.headers) for job in jobs.timeout(0).get_many("q")] == [
                (new, {"trace": "1"})
            ]
            jobs.retry(IDS[JobState.FAILED])
            jobs.ack(jobs.timeout(0).get("q"))
            assert jobs.show(IDS[JobState.FAILED]).state is JobState.DONE
            # Unique keys, cancellation and progress work on the upgraded schema too.
            first = jobs.unique("k").add_result("unique", "q")
            assert first.created
            assert jobs.unique("k").add("again", "q") == first.id
            assert jobs.cancel(first.id) is JobState.CANCELLED
            active = jobs.show(IDS[JobState.ACTIVE])
            jobs.progress(active, {"step": 1})
            assert jobs.show(active.id).progress == {"step": 1}
            _schedules_work(jobs)
        versions = conn.execute(f"SELECT version FROM {schema}.schema_migrations").fetchall()
    assert [version for (version,) in versions] == POSTGRES_VERSIONS


#: The previous version's claim (migration 5's claim_jobs), as its store ran it.
_CLAIM_JOBS = (
    "SELECT id FROM {schema}.claim_jobs(%(queues)b::text[], %(count)s::int4, %(now)s::float8,"
    " %(holder)s::text);"
)


def test_postgres_upgrade_to_6_keeps_jobs_and_the_previous_versions_claim(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Migration 6 (issue 12: waiters, bounded maintenance) on a schema the previous version
    filled: its jobs stay, its prepared claim goes on working during the upgrade, and this
    version claims, promotes and gates its NOTIFYs on the upgraded schema."""
    from disquette.stores.postgres import statements as module

    url = fresh_url(migrate="false")
    base, schema = split_url(url)
    previous = module.migrations()[:5]
    monkeypatch.setattr(module, "migrations", lambda: previous)
    old_claim = _CLAIM_JOBS.format(schema=schema)

    def claim_as_before(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
        params = {"queues": ["q"], "count": 1, "now": 1e11, "holder": None}
        cursor = conn.execute(old_claim, params, binary=True, prepare=True)
        return [str(row[0]) for row in cursor.fetchall()]

    columns = (
        "id, queue, body, encoding, type, priority, state, created_at, run_at, retry_after,"
        " max_attempts, result_ttl"
    )
    queued, scheduled = (f"D-00000000-{letter * 24}-0001" for letter in "AB")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(module.migration_script(schema))  # the previous version's schema
        for job_id, state in ((queued, 1), (scheduled, 0)):
            conn.execute(
                f"INSERT INTO {schema}.jobs ({columns}) VALUES"
                " (%s, 'q', 'x', 0, NULL, 100, %s, 1, %s, 300, 25, 3600)",
                (job_id, state, 2e11 if state == 0 else 1.0),
            )
        # Prepared by now (psycopg prepares a statement on its fifth run).
        assert [claim_as_before(conn) for _ in range(6)] == [[queued]] + [[]] * 5
        monkeypatch.undo()
        with connect(url) as jobs:
            assert jobs.store.migrate() == [v for v in POSTGRES_VERSIONS if v >= 6]
            persistence = conn.execute(
                "SELECT relpersistence FROM pg_class WHERE oid = %s::regclass",
                [f"{schema}.waiters"],
            ).fetchone()
            assert persistence == ("u",), "the waiters table is unlogged"
            # The previous version's process goes on claiming with its prepared statement.
            later = "D-00000000-FFFFFFFFFFFFFFFFFFFFFFFF-0001"
            conn.execute(
                f"INSERT INTO {schema}.jobs ({columns}) VALUES"
                " (%s, 'q', 'x', 0, NULL, 100, 1, 1, 1, 300, 25, 3600)",
                (later,),
            )
            assert claim_as_before(conn) == [later]
            # This version adds, claims, acks and waits on the upgraded schema.
            new = jobs.add("new", "q")
            assert jobs.timeout(0).get("q").id == new
            jobs.ack(new, "r")
            assert jobs.wait(new) == "r"
            assert jobs.show(scheduled).state is JobState.SCHEDULED
        with connect(url, clock=ManualClock(2e11 + 1)) as due:
            # Promoted when due; the old claims' leases (until 1e11 + 300) have run out.
            again = {job.id for job in due.timeout(0).get_many("q", count=10)}
            assert again == {queued, later, scheduled}
