"""SQLite-specific guarantees: several processes on one file, crash safety, the plan."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from disquette import JobState, ManualClock, connect
from disquette.errors import ClientClosed, InvalidURL, StoreError, StoreRefused, StoreUnavailable
from disquette.stores.sqlite.store import _SCHEMA_VERSION, QUERIES

#: The schema version this code brings a file to (the one place a new migration changes).
LATEST_VERSION = _SCHEMA_VERSION


#: The insert of version 3 (before issue 13's columns), to fill a version-3 file.
OLD_INSERT = """
INSERT INTO jobs (id, queue, state, priority, run_at, created_at, body, encoding, type,
                  retry_after, expires_at, max_attempts, result_ttl)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
"""


def _python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code), *args]


CONSUMER = """
    import sys, disquette
    url, out = sys.argv[1], sys.argv[2]
    jobs = disquette.connect(url).timeout(1.0)
    with open(out, "w") as seen:
        while True:
            try:
                job = jobs.get("q")
            except disquette.errors.Timeout:
                break
            seen.write(job.id + "\\n")
            jobs.ack(job)
"""


@pytest.mark.slow
def test_four_processes_share_one_file_without_double_delivery(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with connect(url) as jobs:
        added = set(jobs.retry_after(3600).add_many(range(10_000), "q"))
    outputs = [tmp_path / f"seen-{n}.txt" for n in range(4)]
    consumers = [subprocess.Popen(_python(CONSUMER, url, str(out))) for out in outputs]
    for consumer in consumers:
        assert consumer.wait(120) == 0
    delivered = [line for out in outputs for line in out.read_text().split()]
    assert len(delivered) == len(set(delivered)), "a job was delivered twice while leased"
    assert set(delivered) == added, "a job was lost"
    assert all(out.read_text() for out in outputs), "a consumer got nothing: no contention"
    with connect(url) as jobs:
        by_queue = jobs.stats().by_queue()["q"]
        assert (by_queue.done, by_queue.queued, by_queue.active) == (10_000, 0, 0)


PRODUCER = """
    import sys, disquette
    jobs = disquette.connect(sys.argv[1])
    n = 0
    while True:
        job_id = jobs.add({"n": n, "pad": "x" * 500}, "q")
        print(job_id, flush=True)
        n += 1
"""


@pytest.mark.slow
@pytest.mark.parametrize("synchronous", ["normal", "full"])
def test_kill_9_mid_write_loop_keeps_every_committed_job(tmp_path: Path, synchronous: str) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}?synchronous={synchronous}"
    producer = subprocess.Popen(_python(PRODUCER, url), stdout=subprocess.PIPE, text=True)
    assert producer.stdout is not None
    committed = [producer.stdout.readline().strip() for _ in range(3000)]
    os.kill(producer.pid, signal.SIGKILL)
    producer.wait()
    committed += [line.strip() for line in producer.stdout if line.strip()]
    with sqlite3.connect(tmp_path / "jobs.db") as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with connect(url) as jobs:
        for job_id in committed:
            assert jobs.show(job_id).state is JobState.QUEUED
        assert jobs.qlen("q") >= len(committed)


WAITER = """
    import sys, disquette
    jobs = disquette.connect(sys.argv[1])
    print("ready", flush=True)
    print(jobs.timeout(30).get("q").body, flush=True)
"""


def test_blocking_get_wakes_on_an_add_from_another_process(tmp_path: Path) -> None:
    # A poll interval longer than the waiter's timeout: only the datagram can wake it.
    url = f"sqlite:///{tmp_path / 'jobs.db'}?poll_interval=60"
    with connect(url) as jobs:
        jobs.qlen("q")  # creates the schema before the waiter starts
        waiter = subprocess.Popen(_python(WAITER, url), stdout=subprocess.PIPE, text=True)
        assert waiter.stdout is not None
        assert waiter.stdout.readline().strip() == "ready"
        jobs.add("across processes", "q")
        assert waiter.stdout.readline().strip() == "across processes"
        assert waiter.wait(30) == 0


def test_jobs_survive_reopening_the_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with connect(url) as jobs:
        job_id = jobs.priority(3).type("t").add({"k": "v"}, "q")
    with connect(url) as jobs:
        job = jobs.timeout(0).get("q")
        assert (job.id, job.body, job.priority, job.type) == (job_id, {"k": "v"}, 3, "t")


def test_claim_reads_the_ready_index_not_the_table(tmp_path: Path) -> None:
    with connect(f"sqlite:///{tmp_path / 'jobs.db'}") as jobs:
        jobs.qlen("q")
    raw = sqlite3.connect(tmp_path / "jobs.db")
    plan = raw.execute(
        "EXPLAIN QUERY PLAN " + QUERIES["claim"],
        {"now": 0, "queue": "q", "count": 1, "holder": None},
    ).fetchall()
    details = " | ".join(row[-1] for row in plan)
    assert "USING INDEX jobs_ready" in details or "USING COVERING INDEX jobs_ready" in details
    assert "SCAN jobs" not in details
    for name in ("promote", "requeue_expired_leases", "expire"):
        params = {"now": 0, "batch": 1000}
        steps = raw.execute("EXPLAIN QUERY PLAN " + QUERIES[name], params).fetchall()
        assert all("SCAN jobs" not in row[-1] for row in steps), (name, steps)
    # A batch of acks looks each id up; a holder's jobs are found among the active ones.
    acks = raw.execute(
        "EXPLAIN QUERY PLAN " + QUERIES["ack_many"], {"ids": "[]", "attempts": 1, "now": 0}
    ).fetchall()
    assert all("SCAN jobs" not in row[-1] for row in acks), acks
    release = raw.execute(
        "EXPLAIN QUERY PLAN " + QUERIES["release_holder"], {"holder": "h", "error": "", "now": 0}
    ).fetchall()
    assert [row[-1] for row in release] == ["SCAN jobs USING INDEX jobs_leases"]


def test_counts_of_ready_jobs_read_the_ready_index(tmp_path: Path) -> None:
    # Without the hint, SQLite took jobs_queue_seq for "queue = ? AND state = 1" once a
    # queue held done jobs, and walked them all (qlen, and every claim of a drained queue).
    with connect(f"sqlite:///{tmp_path / 'jobs.db'}") as jobs:
        jobs.add_many([b""] * 200, "q")
        jobs.ack_many(jobs.timeout(0).get_many("q", count=100))
        assert jobs.qlen("q") == 100
    raw = sqlite3.connect(tmp_path / "jobs.db")
    plans = {
        "qlen": raw.execute("EXPLAIN QUERY PLAN " + QUERIES["qlen"], ("q",)),
        "count_queued_up_to": raw.execute(
            "EXPLAIN QUERY PLAN " + QUERIES["count_queued_up_to"], ("q", 10)
        ),
        "ready_queues": raw.execute(
            "EXPLAIN QUERY PLAN " + QUERIES["ready_queues"], {"queues": '["q"]'}
        ),
    }
    for name, cursor in plans.items():
        plan = cursor.fetchall()
        details = " | ".join(row[-1] for row in plan)
        assert "INDEX jobs_ready" in details, (name, plan)
        assert "jobs_queue_seq" not in details, (name, plan)


def test_a_version_2_file_is_migrated_and_keeps_its_jobs(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    job_id = "D-00000000-AAAAAAAAAAAAAAAAAAAAAAAA-0001"
    old = sqlite3.connect(path, isolation_level=None)
    for block in ("schema", "migrate_2"):  # what version 2 made
        for statement in QUERIES[block].split(";\n"):
            old.execute(statement)
    old.execute("PRAGMA user_version = 2")
    row = (job_id, "q", 1, 100, 0.0, 0.0, b"x", 0, None, 300.0, None, 1, 3600.0)
    old.execute(  # version 2's insert
        "INSERT INTO jobs (id, queue, state, priority, run_at, created_at, body, encoding, type,"
        " retry_after, expires_at, max_attempts, result_ttl)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        row,
    )
    old.execute("UPDATE jobs SET state = 2, attempts = 1, leased_at = 0, lease_until = 1e12")
    old.close()
    with connect(f"sqlite:///{path}") as jobs:
        held = jobs.show(job_id)
        assert (held.state, held.attempts) == (JobState.ACTIVE, 1)
        assert jobs.release_leases("anyone") == 0  # leased before holders were recorded
        jobs.add("new", "q")
        assert jobs.store.claim(["q"], 1, holder="h")[0].body == "new"
        assert jobs.release_leases("h") == 1
        jobs.ack(held)
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION


def test_a_version_3_file_is_migrated_for_cancellation_and_keeps_its_jobs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    ids = [f"D-00000000-AAAAAAAAAAAAAAAAAAAAAAA{n}-0001" for n in range(3)]
    old = sqlite3.connect(path, isolation_level=None)
    for block in ("schema", "migrate_2", "migrate_3"):  # what version 3 made
        for statement in QUERIES[block].split(";\n"):
            old.execute(statement)
    old.execute("PRAGMA user_version = 3")
    for job_id in ids:
        row = (job_id, "q", 1, 100, 0.0, 0.0, b"x", 0, None, 300.0, None, 1, 3600.0)
        old.execute(OLD_INSERT, row)
    old.execute(
        "UPDATE jobs SET state = 2, attempts = 1, leased_at = 0, lease_until = 1e12 WHERE id = ?",
        (ids[0],),
    )
    old.execute(
        "UPDATE jobs SET state = 3, finished_at = 0, expires_at = 1e12 WHERE id = ?", (ids[1],)
    )
    old.close()
    with connect(f"sqlite:///{path}") as jobs:
        active, done, queued = (jobs.show(job_id) for job_id in ids)
        assert (active.state, active.cancel_requested, active.progress) == (
            JobState.ACTIVE, False, None,
        )  # fmt: skip
        assert (done.state, queued.state) == (JobState.DONE, JobState.QUEUED)
        jobs.progress(active, {"step": 1})
        assert jobs.cancel(active) is JobState.ACTIVE
        assert jobs.cancel(queued) is JobState.CANCELLED
        assert jobs.show(active).progress == {"step": 1}
        jobs.ack_cancelled(active)
        assert jobs.stats().by_queue()["q"].cancelled == 2
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION


def test_url_settings_and_errors(tmp_path: Path) -> None:
    with connect(f"sqlite:///{tmp_path / 'full.db'}?synchronous=full") as jobs:
        conn = jobs.store._conn  # type: ignore[attr-defined]
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    for bad in [
        "sqlite://",
        "sqlite://host/x.db",
        "sqlite:///x.db?synchronous=off",
        "sqlite:///x.db?poll_interval=fast",
        "sqlite:///x.db?nope=1",
        "mysql://localhost/x",
        "memory:///path",
    ]:
        with pytest.raises(InvalidURL):
            connect(bad)
    with pytest.raises(StoreUnavailable):
        connect(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")


def test_a_closed_client_says_so(tmp_path: Path) -> None:
    jobs = connect(f"sqlite:///{tmp_path / 'jobs.db'}")
    jobs.close()
    with pytest.raises(ClientClosed):
        jobs.add("x", "q")


def test_default_url_is_disquette_db_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISQUETTE_URL", raising=False)
    with connect() as jobs:
        jobs.add("x", "q")
    assert (tmp_path / "disquette.db").exists()
    monkeypatch.setenv("DISQUETTE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    with connect() as jobs:
        jobs.add("x", "q")
    assert (tmp_path / "env.db").exists()


def test_a_read_does_not_starve_behind_writers(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    clock = ManualClock()
    with connect(f"sqlite:///{path}?busy_timeout=2", clock=clock) as jobs:
        jobs.retry_after(1).add(b"x", "q")
        leased = jobs.timeout(0).get("q")
        clock.advance(2)  # the lease ran out: the next write requeues the job
        writer = sqlite3.connect(path, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")  # another connection holds the write lock
        try:
            # Reads answer from the last committed state instead of failing after the
            # 2 s busy timeout; a write still waits for the lock, and says so.
            assert jobs.qlen("q") == 0
            assert jobs.show(leased).state is JobState.ACTIVE
            assert jobs.stats().by_queue()["q"].active == 1
            with pytest.raises(StoreUnavailable, match="locked"):
                jobs.timeout(0).get("q")
        finally:
            writer.execute("ROLLBACK")
            writer.close()
        assert jobs.qlen("q") == 1  # once the lock is free, the read applies the change


def test_opening_waits_for_a_lock_and_refuses_what_waiting_cannot_fix(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "jobs.db"
    with pytest.raises(StoreRefused, match="no directory") as refused:
        connect(f"sqlite:///{missing}")
    assert not refused.value.retryable
    (tmp_path / "not.db").write_bytes(b"not a database, " * 100)
    with pytest.raises(StoreRefused, match="not a database"):
        connect(f"sqlite:///{tmp_path / 'not.db'}")
    path = tmp_path / "jobs.db"
    connect(f"sqlite:///{path}").close()
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # another process writing
    try:
        with pytest.raises(StoreUnavailable) as locked:
            connect(f"sqlite:///{path}?busy_timeout=0.1")
        assert locked.value.retryable
        # Opening waits busy_timeout for the lock, as every write does.
        threading.Timer(0.3, holder.execute, ["COMMIT"]).start()
        with connect(f"sqlite:///{path}?busy_timeout=30") as jobs:
            assert jobs.qlen("q") == 0
    finally:
        holder.close()


def test_database_errors_are_store_errors(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    with connect(f"sqlite:///{path}") as jobs:
        jobs.add("x", "q")
        with sqlite3.connect(path) as conn:
            conn.execute(
                "CREATE TRIGGER no_more BEFORE INSERT ON jobs "
                "BEGIN SELECT RAISE(ABORT, 'no more jobs'); END"
            )
        with pytest.raises(StoreError, match="no more jobs"):
            jobs.add("y", "q")


def test_release_leases_leaves_a_job_an_old_version_process_claimed_since(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    with connect(f"sqlite:///{path}") as jobs:
        job_id = jobs.add("x", "q")
        assert [job.id for job in jobs.store.claim(["q"], 1, holder="A")] == [job_id]
        # A's lease ran out and a process of the previous version claimed the job: its
        # claim increments attempts and leases again, knowing no holder column.
        with sqlite3.connect(path) as conn:
            conn.execute(
                "UPDATE jobs SET state = 2, attempts = attempts + 1,"
                " lease_until = lease_until + 60 WHERE id = ?",
                (job_id,),
            )
        assert jobs.release_leases("A") == 0
        job = jobs.show(job_id)
        assert (job.state, job.attempts, job.additional_deliveries) == (JobState.ACTIVE, 2, 0)
