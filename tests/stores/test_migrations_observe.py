"""Issue 14's migrations (SQLite version 5, PostgreSQL 007: the worker registry, rollups,
the indexes of filtered jobs pages, the body function): a store the previous version
filled is upgraded in place, keeps its jobs, and serves the operations views at once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from disquette import Client, JobState, connect
from disquette.stores.postgres.statements import migrations as postgres_migrations
from disquette.stores.sqlite import store as sqlite_module
from disquette.stores.sqlite.store import QUERIES
from disquette.stores.types import DURATION_BUCKETS, JobCount, JobFilter, RollupRow, WorkerInfo
from tests.servers.postgres import fresh_url

QUEUED = "D-00000000-AAAAAAAAAAAAAAAAAAAAAAAA-0001"
DONE = "D-00000000-BBBBBBBBBBBBBBBBBBBBBBBB-0001"
_INSERT = """
INSERT INTO jobs (id, queue, state, priority, run_at, created_at, body, encoding, type,
                  retry_after, expires_at, max_attempts, result_ttl)
VALUES (?, 'q', ?, 100, 0, 0, ?, 2, 'kind', 300, ?, 25, 3600)
"""


def _views_work(jobs: Client) -> None:
    """Every view of issue 14 on the upgraded store."""
    by_body = JobFilter(body_path="n", body_value="1")
    assert [job.id for job in jobs.scan_jobs(by_body).jobs] == [QUEUED]
    assert jobs.count(JobFilter(type="kind")) == JobCount(2, capped=False)
    now = jobs.store.clock.now()
    info = WorkerInfo("w", "h", 1, ("q",), 1, 0, now, now, "x")
    jobs.store.register_worker(info, 30)
    assert jobs.workers() == [info]
    histogram = (1,) + (0,) * (len(DURATION_BUCKETS) - 1)
    row = RollupRow("hour", now - now % 3600, "q", "kind", 1, 0, histogram)
    jobs.store.record_rollups([row])
    assert jobs.rollups("hour") == [row]


def test_sqlite_upgrade_to_5(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    old = sqlite3.connect(path, isolation_level=None)
    for version in range(1, 5):
        for statement in QUERIES[sqlite_module._MIGRATIONS[version]].split(";\n"):
            if statement.strip():
                old.execute(statement)
    old.execute("PRAGMA user_version = 4")
    old.execute(_INSERT, (QUEUED, 1, b'{"n": 1}', None))
    old.execute(_INSERT, (DONE, 3, b'{"n": 2}', 1e12))
    old.close()
    with connect(f"sqlite:///{path}") as jobs:
        assert jobs.show(QUEUED).state is JobState.QUEUED
        _views_work(jobs)
        plan = sqlite3.connect(path).execute(
            "EXPLAIN QUERY PLAN SELECT id FROM jobs WHERE seq < 10 AND queue = 'q' "
            "ORDER BY seq DESC LIMIT 5"
        )
        assert "jobs_queue_seq" in " ".join(str(row) for row in plan)
    assert (
        sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
        == sqlite_module._SCHEMA_VERSION
    )


def test_postgres_upgrade_to_7(monkeypatch: pytest.MonkeyPatch) -> None:
    from disquette.stores.postgres import statements as module

    url = fresh_url(migrate="false")
    base, _, query = url.partition("?")
    schema = dict(pair.split("=", 1) for pair in query.split("&"))["schema"]
    previous = module.migrations()[:6]
    monkeypatch.setattr(module, "migrations", lambda: previous)
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(module.migration_script(schema))
        conn.execute(
            f"INSERT INTO {schema}.jobs (id, queue, body, encoding, type, priority, state,"
            " created_at, run_at, retry_after, max_attempts, result_ttl)"
            " VALUES (%s, 'q', %s, 2, 'kind', 100, 1, 0, 0, 300, 25, 3600)",
            (QUEUED, b'{"n": 1}'),
        )
        conn.execute(
            f"INSERT INTO {schema}.done (id, queue, body, encoding, type, priority,"
            " created_at, run_at, retry_after, expires_at, max_attempts, result_ttl,"
            " attempts, nacks, additional_deliveries, error_count, result_encoding,"
            " finished_at, seq) VALUES (%s, 'q', %s, 2, 'kind', 100, 0, 0, 300, 1e12,"
            " 25, 3600, 1, 0, 0, 0, 0, 1, 100)",
            (DONE, b'{"n": 2}'),
        )
        monkeypatch.undo()
        with connect(url) as jobs:
            # 7 is this upgrade's; later ones (flow limits, 8) come along.
            assert jobs.store.migrate()[0] == 7
            assert jobs.show(DONE).state is JobState.DONE
            _views_work(jobs)
        versions = conn.execute(f"SELECT max(version) FROM {schema}.schema_migrations")
        assert versions.fetchone() == (max(version for version, _, _ in postgres_migrations()),)
