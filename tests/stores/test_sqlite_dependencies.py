"""Job dependencies on the SQLite store (issue 16, schema version 7): the upgrade of a file of
the previous version, what an ack costs with and without children, releases that wake
waiters in this process and in others, the due watermark, and the ends that happen outside
the conformance suite's reach (an expired unique holder, a dead holder's at-most-once job,
a flush, a large fan-out)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from disquette import Client, JobState, ManualClock, connect
from disquette.stores._sql import COLUMNS, STATE_CODES
from disquette.stores.sqlite import database, peers
from disquette.stores.sqlite import store as sqlite_module
from disquette.stores.sqlite.store import QUERIES, SqliteStore
from disquette.stores.types import dependency_error

#: The schema version that added dependencies.
VERSION = 7
#: The previous version's insert and claim, as its store ran them.
OLD_INSERT = """
INSERT INTO jobs (id, queue, state, priority, run_at, created_at, body, encoding, type,
                  retry_after, expires_at, max_attempts, result_ttl, headers)
VALUES (?, 'q', ?, 100, 0, 0, ?, 1, NULL, 300, NULL, 25, 3600, NULL)
"""
OLD_CLAIM = f"""
UPDATE jobs SET state = 2, attempts = attempts + 1, leased_at = 1, holder = NULL,
    holder_attempts = attempts + 1, lease_until = 1e12
WHERE seq IN (SELECT seq FROM jobs WHERE queue = ? AND state = 1
              ORDER BY priority, run_at, seq LIMIT 10)
RETURNING {COLUMNS}
"""
IDS = {
    state: f"D-00000000-{letter * 24}-0001"
    for letter, state in zip("ABCDEF", list(JobState)[:6], strict=True)  # before waiting
}


def _store(client: Client) -> SqliteStore:
    store = client.store
    assert isinstance(store, SqliteStore)
    return store


def _file_at_previous_version(path: Path) -> None:
    """What the previous version made: a job in each of its states."""
    old = sqlite3.connect(path, isolation_level=None)
    for version in range(1, VERSION):
        database.SqliteDatabase._script(old, QUERIES[sqlite_module._MIGRATIONS[version]])
    old.execute(f"PRAGMA user_version = {VERSION - 1}")
    for state, job_id in IDS.items():
        old.execute(OLD_INSERT, (job_id, STATE_CODES[state], state.value.encode()))
    old.execute("UPDATE jobs SET run_at = 1e12 WHERE state = 0")
    old.execute("UPDATE jobs SET attempts = 1, leased_at = 0, lease_until = 1e12 WHERE state = 2")
    old.execute("UPDATE jobs SET finished_at = 1, expires_at = 1e12 WHERE state IN (3, 5)")
    old.execute(
        "UPDATE jobs SET finished_at = 1, error_count = 1, last_error = 'e' WHERE state = 4"
    )
    old.close()


def test_a_file_of_the_previous_version_is_upgraded_and_its_jobs_become_parents(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    _file_at_previous_version(path)
    with connect(f"sqlite:///{path}") as jobs:
        for state, job_id in IDS.items():
            job = jobs.show(job_id)
            assert (job.state, job.body, job.depends_on) == (state, state.value, ())
        pending = [IDS[JobState.SCHEDULED], IDS[JobState.QUEUED], IDS[JobState.ACTIVE]]
        waiting = jobs.add("waits", "w", depends_on=[*pending, IDS[JobState.DONE]])
        failed = jobs.add("fails", "w", depends_on=[IDS[JobState.FAILED]])
        assert [jobs.show(i).state for i in (waiting, failed)] == [
            JobState.WAITING,
            JobState.FAILED,
        ]
        # A process of the previous version goes on adding and claiming, and never sees
        # the waiting job (its claim takes state 1 only).
        raw = sqlite3.connect(path, isolation_level=None)
        older = "D-00000000-GGGGGGGGGGGGGGGGGGGGGGGG-0001"
        raw.execute(OLD_INSERT, (older, 1, b"older"))
        claimed = [row[0] for row in raw.execute(OLD_CLAIM, ("q",)).fetchall()]
        assert claimed == [IDS[JobState.QUEUED], older]
        assert raw.execute(OLD_CLAIM, ("w",)).fetchall() == []
        raw.close()
        jobs.enqueue([IDS[JobState.SCHEDULED]])
        for job_id in pending:
            assert jobs.show(waiting).state is JobState.WAITING
            jobs.ack(job_id)
        (released,) = jobs.timeout(0).get_many("w")
        assert (released.id, released.depends_on) == (waiting, (*pending, IDS[JobState.DONE]))
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == (
        sqlite_module._SCHEMA_VERSION
    )


def _traced(client: Client, action: Callable[[], object]) -> list[str]:
    """The statements ``action`` runs (a trigger's program is traced with the text of the
    statement that fired it: counted once), by their first word."""
    statements: list[str] = []
    conn = _store(client)._conn
    assert conn is not None
    conn.set_trace_callback(statements.append)
    try:
        action()
    finally:
        conn.set_trace_callback(None)
    kept = [text for i, text in enumerate(statements) if i == 0 or statements[i - 1] != text]
    return [verb for verb in map(_verb, kept) if verb not in ("PRAGMA", "SELECT")]


def _verb(statement: str) -> str:
    lines = (line.strip() for line in statement.splitlines())
    return next(line for line in lines if line and not line.startswith("--")).split()[0]


def test_an_ack_is_one_statement_unless_the_job_has_waiting_children(tmp_path: Path) -> None:
    with connect(f"sqlite:///{tmp_path / 'jobs.db'}") as jobs:
        jobs.add("plain", "q")
        parent = jobs.add("parent", "q")
        child = jobs.add("child", "c", depends_on=[parent])
        plain, held = jobs.timeout(0).get_many("q")
        assert _traced(jobs, lambda: jobs.ack(plain)) == ["UPDATE"]
        verbs = _traced(jobs, lambda: jobs.ack(held))
        # Left alone by the lone statement, then acked and released in one transaction.
        assert verbs[:3] == ["UPDATE", "BEGIN", "UPDATE"]
        assert verbs[-1] == "COMMIT"
        assert "BEGIN" not in verbs[2:]
        assert [job.id for job in jobs.timeout(0).get_many("c")] == [child]
        assert jobs.show(parent).state is JobState.DONE


def test_a_release_wakes_a_getter_of_this_process(tmp_path: Path) -> None:
    with connect(f"sqlite:///{tmp_path / 'jobs.db'}") as jobs:
        parent = jobs.add("parent", "p")
        child = jobs.add("child", "q", depends_on=[parent])
        woken = _waiting_on(jobs, "q")
        jobs.ack(jobs.timeout(0).get("p"))
        assert woken.wait(30)  # set at once; a lost wake-up fails the test
        assert [job.id for job in jobs.timeout(0).get_many("q")] == [child]


def test_a_release_wakes_a_getter_of_another_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with connect(url) as consumer, connect(url) as producer:
        parent = producer.add("parent", "p")
        child = producer.add("child", "q", depends_on=[parent])
        woken = _waiting_on(consumer, "q")
        # Past the producer's look at who listens (peers.RELIST_SECONDS): it sees us now.
        time.sleep(2 * peers.RELIST_SECONDS)
        producer.ack(producer.timeout(0).get("p"))
        assert woken.wait(30)  # the datagram arrives at once; a lost one fails the test
        assert [job.id for job in consumer.timeout(0).get_many("q")] == [child]


def _waiting_on(client: Client, queue: str) -> threading.Event:
    """What a blocked ``get`` of ``queue`` waits for: set when the store announces it."""
    woken = threading.Event()
    _store(client).wakeups.subscribe([queue], woken.set)
    return woken


def test_a_child_released_into_the_future_comes_due_by_the_watermark(tmp_path: Path) -> None:
    clock = ManualClock()
    with connect(f"sqlite:///{tmp_path / 'jobs.db'}", clock=clock) as jobs:
        parent = jobs.add("parent", "p")
        child = jobs.delay(30).add("child", "q", depends_on=[parent])
        jobs.ack(jobs.timeout(0).get("p"))
        assert jobs.show(child).state is JobState.SCHEDULED
        assert _store(jobs)._due_at <= clock.now() + 30
        assert jobs.timeout(0).get_many("q") == []
        clock.advance(30)
        assert [job.id for job in jobs.timeout(0).get_many("q")] == [child]


def test_an_expired_unique_holder_ends_its_children(tmp_path: Path) -> None:
    clock = ManualClock()
    with connect(f"sqlite:///{tmp_path / 'jobs.db'}", clock=clock) as jobs:
        holder = jobs.unique("k").ttl(10).add("holder", "p")
        child = jobs.add("child", "q", depends_on=[holder])
        clock.advance(11)
        # The add finds the holder past its TTL and deletes it before the expiry does.
        successor = jobs.unique("k").add_result("successor", "p")
        assert successor.created
        job = jobs.show(child)
        assert (job.state, job.last_error) == (
            JobState.CANCELLED,
            dependency_error(holder, "expired"),
        )


def test_a_dead_holders_at_most_once_parent_fails_its_children(tmp_path: Path) -> None:
    with connect(f"sqlite:///{tmp_path / 'jobs.db'}", holder="worker-1") as jobs:
        parent = jobs.retry_after(0).add("parent", "p")
        child = jobs.add("child", "q", depends_on=[parent])
        grandchild = jobs.add("grandchild", "q", depends_on=[child], on_dependency_failure="run")
        jobs.timeout(0).get("p")
        assert jobs.release_leases("worker-1") == 1
        assert [jobs.show(i).state for i in (parent, child)] == [JobState.FAILED] * 2
        assert jobs.show(child).last_error == dependency_error(parent, "failed")
        assert [job.id for job in jobs.timeout(0).get_many("q")] == [grandchild]


def test_a_flush_forgets_what_waiting_jobs_wait_for(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    with connect(f"sqlite:///{path}") as jobs:
        parent = jobs.add("parent", "p")
        jobs.add_many(["a", "b", "c"], "q", depends_on=[parent])
        jobs.store.flush()
        raw = sqlite3.connect(path)
        assert raw.execute("SELECT count(*) FROM job_dependencies").fetchone()[0] == 0
        raw.close()


def test_a_parent_releases_more_children_than_a_due_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "DUE_BATCH", 10)
    clock = ManualClock()
    with connect(f"sqlite:///{tmp_path / 'jobs.db'}", clock=clock) as jobs:
        parent = jobs.ttl(60).add("parent", "p")
        run = jobs.add_many(range(25), "q", depends_on=[parent], on_dependency_failure="run")
        ended = jobs.add_many(range(25), "r", depends_on=[parent])
        clock.advance(61)
        assert len(jobs.timeout(0).get_many("q", count=100)) == 25
        states = {jobs.show(job_id).state for job_id in ended}
        assert states == {JobState.CANCELLED}
        assert len(run) == 25


@pytest.mark.parametrize("nonblocking", [False, True])
def test_a_batch_ack_acks_parents_among_other_jobs(tmp_path: Path, nonblocking: bool) -> None:
    with connect(f"sqlite:///{tmp_path / 'jobs.db'}") as jobs:
        plain = jobs.add("plain", "q")
        parent = jobs.add("parent", "q")
        child = jobs.add("child", "c", depends_on=[parent])
        jobs.timeout(0).get_many("q")
        store = _store(jobs)
        batch = [plain, parent, "D-00000000-ZZZZZZZZZZZZZZZZZZZZZZZZ-0001"]
        if nonblocking:  # as the asyncio client first tries it: in one transaction
            with store.nonblocking():
                done = store.ack(batch)
        else:  # one statement, then the parent in a transaction
            done = store.ack(batch)
        assert sorted(done) == sorted([plain, parent])
        assert [job.id for job in jobs.timeout(0).get_many("c")] == [child]


def test_parents_past_a_due_batch_are_all_expired_with_their_children(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "DUE_BATCH", 3)
    clock = ManualClock()
    with connect(f"sqlite:///{tmp_path / 'jobs.db'}", clock=clock) as jobs:
        first = jobs.ttl(60).add("first", "p")
        many = jobs.add_many(range(5), "q", depends_on=[first])  # fill a batch of waits
        second = jobs.ttl(61).add("second", "p")
        (child,) = jobs.add_many(["child"], "q", depends_on=[second])
        clock.advance(100)
        ends = {job_id: jobs.show(job_id).last_error for job_id in [*many, child]}
        assert set(ends.values()) == {
            dependency_error(first, "expired"),
            dependency_error(second, "expired"),
        }
        assert ends[child] == dependency_error(second, "expired")
