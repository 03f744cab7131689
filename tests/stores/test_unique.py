"""Unique jobs under real concurrency, and the SQL stores' migrations that brought them.

The conformance suite (``tests/conformance/test_unique_async.py``) pins the semantics; this
file checks that they hold when several processes race for one key, and that a database
filled by the previous version upgrades without losing a job.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from disquette import JobState, connect
from disquette.stores.sqlite import store as sqlite_store
from disquette.stores.sqlite.store import QUERIES
from tests.servers.postgres import conformance_url as postgres_url
from tests.servers.redis import conformance_url as redis_url

PROCESSES = 5
THREADS = 10


#: The insert of version 3 (before issue 13's columns), to fill a version-3 file.
OLD_INSERT = """
INSERT INTO jobs (id, queue, state, priority, run_at, created_at, body, encoding, type,
                  retry_after, expires_at, max_attempts, result_ttl)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
"""


def _add_from_threads(url: str, ready: Any, results: Any) -> None:
    """In a child process: once every process is connected, ``THREADS`` threads add the
    same unique key at once; their answers go to ``results``."""
    answers: list[tuple[str, bool]] = []
    start = threading.Barrier(THREADS)
    with connect(url) as jobs:
        keyed = jobs.unique("the-one")
        jobs.qlen("q")  # connected: the race starts with no connection to open
        ready.wait()

        def add(n: int) -> None:
            start.wait()
            result = keyed.add_result(n, "q")
            answers.append((result.id, result.created))

        threads = [threading.Thread(target=add, args=(n,)) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    results.put(answers)


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


@pytest.mark.slow
@pytest.mark.parametrize("make_url", [_sqlite_url, postgres_url, redis_url])
def test_fifty_concurrent_adds_of_one_key_create_one_job(tmp_path: Path, make_url: object) -> None:
    url = make_url(tmp_path)  # type: ignore[operator]
    with connect(url) as jobs:  # created (and migrated) once, before the race
        assert jobs.qlen("q") == 0
    # spawn: children start clean (no inherited driver threads or pools).
    context = multiprocessing.get_context("spawn")
    ready, results = context.Barrier(PROCESSES), context.Queue()
    children = [
        context.Process(target=_add_from_threads, args=(url, ready, results))
        for _ in range(PROCESSES)
    ]
    for child in children:
        child.start()
    answers = [answer for _ in children for answer in results.get(timeout=60)]
    for child in children:
        child.join()
        assert child.exitcode == 0
    assert len(answers) == PROCESSES * THREADS
    created = [job_id for job_id, was_created in answers if was_created]
    assert len(created) == 1
    assert {job_id for job_id, _ in answers} == set(created)
    with connect(url) as jobs:
        assert jobs.qlen("q") == 1
        assert jobs.timeout(0).get("q").id == created[0]


def test_a_version_3_sqlite_file_upgrades_and_keeps_its_jobs(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    old = sqlite3.connect(path, isolation_level=None)
    for block in ("schema", "migrate_2", "migrate_3"):  # what version 3 made
        for statement in QUERIES[block].split(";\n"):
            old.execute(statement)
    old.execute("PRAGMA user_version = 3")
    ids = [f"D-00000000-AAAAAAAAAAAAAAAAAAAAAA{n:02d}-0001" for n in range(4)]
    for job_id, state in zip(ids, [0, 1, 2, 4], strict=True):
        row = (job_id, "q", state, 100, 0.0, 0.0, b"x", 0, None, 300.0, None, 1, 3600.0)
        old.execute(OLD_INSERT, row)
    old.execute("UPDATE jobs SET run_at = 1e12 WHERE state = 0")
    old.execute("UPDATE jobs SET attempts = 1, leased_at = 0, lease_until = 1e12 WHERE state = 2")
    old.close()
    with connect(f"sqlite:///{path}") as jobs:
        states = [jobs.show(job_id).state for job_id in ids]
        assert states == [JobState.SCHEDULED, JobState.QUEUED, JobState.ACTIVE, JobState.FAILED]
        first = jobs.unique("k").add_result("new", "q")
        assert first.created
        assert jobs.unique("k").add("again", "q") == first.id
        jobs.retry(ids[3])  # old jobs have no key: nothing to collide with
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == sqlite_store._SCHEMA_VERSION
