"""PostgreSQL-specific powers: transactional enqueue and completion, LISTEN/NOTIFY across
processes, a database restart mid-run, synchronous replication, bloat under churn, plans."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import sqlalchemy
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from disquette import JobState, ManualClock, connect, connect_async
from disquette.cli import EXIT_UNAVAILABLE
from disquette.errors import (
    ClientClosed,
    InvalidOption,
    InvalidURL,
    JobNotFound,
    NotReplicated,
    StoreError,
    StoreRefused,
    StoreUnavailable,
)
from tests.servers.postgres import (
    PrivateCluster,
    free_port,
    fresh_url,
    session_database_url,
    split_url,
    with_database,
)
from tests.servers.proxy import ReplyLosingProxy, replay_ack_nack_and_fail

ROOT = Path(__file__).resolve().parents[2]
#: Every migration of the store, in order (the one place a new migration changes).
MIGRATIONS = [
    (1, "init"),
    (2, "disque"),
    (3, "holders"),
    (4, "lapsed"),
    (5, "cancel_unique_headers"),
    (6, "hot_paths"),
    (7, "operations"),
    (8, "flow_limits"),
    (9, "dependencies"),
    (10, "wakeups"),
    (11, "maintainer"),
    (12, "wake_guard"),
]


def scalar(cursor: psycopg.Cursor[Any]) -> Any:
    """The first column of the query's one row."""
    row = cursor.fetchone()
    assert row is not None
    return row[0]


def _python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code), *args]


@pytest.fixture
def url() -> str:
    return fresh_url()


# -- transactional enqueue -----------------------------------------------------------------


def test_add_inside_a_psycopg_transaction_appears_on_commit_only(url: str) -> None:
    base, _ = split_url(url)
    with connect(url) as jobs, psycopg.connect(base) as conn:
        conn.execute("SELECT 1")  # the caller's transaction is open
        committed = jobs.add("kept", "q", connection=conn)
        assert jobs.qlen("q") == 0, "visible before the caller's commit"
        assert jobs.timeout(0).get_many("q") == []
        conn.commit()
        assert jobs.qlen("q") == 1
        rolled_back = jobs.add_many(["gone"], "q", connection=conn)[0]
        conn.rollback()
        with pytest.raises(JobNotFound):
            jobs.show(rolled_back)
        assert jobs.timeout(0).get("q").id == committed


async def test_async_add_inside_a_psycopg_transaction(url: str) -> None:
    base, _ = split_url(url)
    async with connect_async(url) as jobs:
        conn = await psycopg.AsyncConnection.connect(base)
        try:
            job_id = await jobs.add(b"x", "q", connection=conn)
            assert await jobs.qlen("q") == 0
            await conn.commit()
            assert (await jobs.timeout(0).get("q")).id == job_id
        finally:
            await conn.close()


def test_add_through_a_sqlalchemy_session_and_connection(url: str) -> None:
    base, _ = split_url(url)
    engine = sqlalchemy.create_engine(base.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with connect(url) as jobs:
            with Session(engine) as session:
                jobs.add("session", "q", connection=session)
                assert jobs.qlen("q") == 0
                session.commit()
            assert jobs.qlen("q") == 1
            with Session(engine) as session:
                dropped = jobs.add("rolled back", "q", connection=session)
                session.rollback()
            with pytest.raises(JobNotFound):
                jobs.show(dropped)
            with engine.connect() as connection:
                jobs.add("connection", "q", connection=connection)
                assert jobs.qlen("q") == 1
                connection.commit()
            assert jobs.qlen("q") == 2
            with pytest.raises(InvalidOption):
                jobs.add("x", "q", connection=object())
    finally:
        engine.dispose()


async def test_async_add_through_a_sqlalchemy_async_session(url: str) -> None:
    base, _ = split_url(url)
    engine = create_async_engine(base.replace("postgresql://", "postgresql+psycopg://"))
    try:
        async with connect_async(url) as jobs:
            async with AsyncSession(engine) as session:
                job_id = await jobs.add(b"x", "q", connection=session)
                assert await jobs.qlen("q") == 0
                await session.commit()
            assert (await jobs.timeout(0).get("q")).id == job_id
    finally:
        await engine.dispose()


# -- transactional completion --------------------------------------------------------------

WORKER = """
    import os, signal, sys, psycopg, disquette
    url, base, schema, crash = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "crash"
    jobs = disquette.connect(url)
    job = jobs.timeout(30).get("q")
    with psycopg.connect(base) as conn:
        # The job's effect and its completion, in one transaction.
        conn.execute(f"INSERT INTO {schema}.effects (job_id) VALUES (%s)", [job.id])
        jobs.ack(job, connection=conn)
        if crash:
            print("crashing", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)  # after the work, before the commit
        conn.commit()
    print("committed", job.id, job.attempts, flush=True)
"""


def test_ack_in_the_callers_transaction_gives_exactly_once_effects(url: str) -> None:
    base, schema = split_url(url)
    with connect(url) as jobs:
        job_id = jobs.retry_after(1).add("pay", "q")
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE {schema}.effects (job_id text)")
        first = subprocess.run(
            _python(WORKER, url, base, schema, "crash"), capture_output=True, text=True, timeout=60
        )
        assert first.returncode == -signal.SIGKILL, first.stderr
        assert jobs.show(job_id).state is JobState.ACTIVE, "the crashed ack must not commit"
        # The lease runs out (1 s) and the job is delivered again, to a worker that commits.
        second = subprocess.run(
            _python(WORKER, url, base, schema, "ok"), capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 0, second.stderr
        assert f"committed {job_id} 2" in second.stdout  # its second delivery
        with psycopg.connect(base) as conn:
            effects = conn.execute(f"SELECT job_id FROM {schema}.effects").fetchall()
        assert effects == [(job_id,)], "the effect happened exactly once"
        assert jobs.show(job_id).state is JobState.DONE


def test_a_job_being_acked_in_an_open_transaction_is_not_redelivered(url: str) -> None:
    base, _ = split_url(url)
    with connect(url) as jobs, psycopg.connect(base) as conn:
        jobs.retry_after(1).add("slow commit", "q")
        job = jobs.timeout(0).get("q")
        jobs.ack(job, connection=conn)
        time.sleep(1.2)  # the lease has run out, but the ack holds the row
        assert jobs.timeout(0).get_many("q") == []
        conn.commit()
        assert jobs.show(job.id).state is JobState.DONE


# -- LISTEN / NOTIFY ---------------------------------------------------------------------

WAITER = """
    import sys, disquette
    jobs = disquette.connect(sys.argv[1])
    print("ready", flush=True)
    for _ in range(int(sys.argv[2])):
        print(jobs.timeout(30).get("q").body, flush=True)
"""


def _listener_up(url: str, application_name: str, kind: int = 1, timeout: float = 20.0) -> int:
    """The pid of the waiter's LISTEN backend, once it registered its waiters of ``kind``
    (1: blocked gets, 3: waits on a job): from then on, the other processes NOTIFY it."""
    base, schema = split_url(url)
    deadline = time.monotonic() + timeout
    with psycopg.connect(base, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                f"SELECT a.pid FROM pg_stat_activity AS a JOIN {schema}.waiters AS w"
                " ON w.pid = a.pid AND w.started = a.backend_start"
                " WHERE a.application_name = %s AND w.kind = %s",
                [f"{application_name} listener", kind],
            ).fetchone()
            if row is not None:
                return int(row[0])
            time.sleep(0.02)
    raise AssertionError("the waiter never started listening")


def test_a_blocked_get_is_woken_by_an_add_from_another_process(url: str) -> None:
    """With a 60 s poll interval, only the NOTIFY can deliver within the 30 s timeout."""
    name = f"waiter-{uuid.uuid4().hex[:8]}"
    waiter_url = f"{url}&poll_interval=60&application_name={name}"
    with connect(url) as jobs:
        jobs.qlen("q")
        waiter = subprocess.Popen(
            _python(WAITER, waiter_url, "2"), stdout=subprocess.PIPE, text=True
        )
        assert waiter.stdout is not None
        assert waiter.stdout.readline().strip() == "ready"
        _listener_up(url, name)
        jobs.add("first", "q")
        assert waiter.stdout.readline().strip() == "first"
        jobs.add("second", "q")
        assert waiter.stdout.readline().strip() == "second"
        assert waiter.wait(30) == 0


def test_the_listener_reconnects_and_catches_up(url: str) -> None:
    base, _ = split_url(url)
    name = f"waiter-{uuid.uuid4().hex[:8]}"
    waiter_url = f"{url}&poll_interval=60&application_name={name}"
    with connect(url) as jobs:
        jobs.qlen("q")
        waiter = subprocess.Popen(
            _python(WAITER, waiter_url, "1"), stdout=subprocess.PIPE, text=True
        )
        assert waiter.stdout is not None
        assert waiter.stdout.readline().strip() == "ready"
        pid = _listener_up(url, name)
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        # Added while the listener is down: its NOTIFY reaches no one. The reconnected
        # listener wakes every waiter for a catch-up claim.
        jobs.add("while down", "q")
        assert waiter.stdout.readline().strip() == "while down"
        assert waiter.wait(30) == 0


async def test_async_blocked_get_is_woken_across_processes(url: str) -> None:
    async with connect_async(f"{url}&poll_interval=60") as jobs:
        waiter = asyncio.create_task(jobs.timeout(30).get("q"))
        await asyncio.sleep(0.3)
        adder = await asyncio.create_subprocess_exec(
            *_python("import sys, disquette; disquette.connect(sys.argv[1]).add('hi', 'q')", url)
        )
        assert await adder.wait() == 0
        assert (await asyncio.wait_for(waiter, 30)).body == "hi"


WAIT_WAITER = """
    import os, sys, threading, disquette
    from disquette.errors import JobFailed, JobNotFound
    jobs = disquette.connect(sys.argv[1])
    jobs.qlen("q")  # the pool is open: wait's first read of the job is all that is left
    outcome = []

    def wait():
        # No timeout of its own: wait() reads the job once more when one runs out, so it
        # would return the result late instead of failing. Only a wake-up, or the 60 s
        # poll, ends this one.
        try:
            outcome.append(jobs.wait(sys.argv[2]))
        except (JobFailed, JobNotFound) as exc:
            outcome.append(type(exc).__name__)

    print("ready", flush=True)
    if sys.argv[3] == "get first":
        # Woken by an add: the listener is up, and listens for adds only, before the wait.
        print(jobs.timeout(30).get("warm").body, flush=True)
    waiting = threading.Thread(target=wait, daemon=True)
    waiting.start()
    waiting.join(10)
    if not outcome:
        print("still waiting", flush=True)
        os._exit(1)
    print(outcome[0], flush=True)
    jobs.close()
"""


def _blocked_in_wait(url: str, application_name: str, timeout: float = 10.0) -> None:
    """Return once the waiter listens for finished jobs and has read the job (still active):
    from then on, with a 60 s poll interval, only a wake-up can end its wait within the 10 s
    it allows."""
    base, _ = split_url(url)
    _listener_up(url, application_name, kind=3, timeout=timeout)  # a wait on one job
    deadline = time.monotonic() + timeout
    with psycopg.connect(base, autocommit=True) as conn:
        while time.monotonic() < deadline:
            # The read of one job (show) is the only statement with a UNION ALL the waiter
            # sends.
            ready = conn.execute(
                "SELECT bool_or(application_name = %s AND query ILIKE '%%UNION ALL%%') "
                "FROM pg_stat_activity",
                [application_name],
            ).fetchone()
            if ready == (True,):
                return
            time.sleep(0.02)
    raise AssertionError("the waiter never listened for finished jobs, or never read the job")


@pytest.mark.parametrize(
    "finish",
    ["ack", "ack in a transaction", "fail for good", "delete", "ack, the waiter got jobs first"],
)
def test_a_wait_is_woken_when_another_process_finishes_the_job(url: str, finish: str) -> None:
    """With a 60 s poll interval, only the NOTIFY sent with the ack (or the failure, or the
    delete) can end the other process's wait within the 10 s it allows. A waiter whose
    listener was already up for a blocked get starts listening for finished jobs too."""
    base, _ = split_url(url)
    name = f"waiter-{uuid.uuid4().hex[:8]}"
    waiter_url = f"{url}&poll_interval=60&application_name={name}"
    get_first = finish == "ack, the waiter got jobs first"
    with connect(url) as jobs:
        job_id = jobs.max_attempts(1).add("work", "q")
        job = jobs.timeout(0).get("q")
        assert job.id == job_id
        waiter = subprocess.Popen(
            _python(WAIT_WAITER, waiter_url, job_id, "get first" if get_first else "wait"),
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert waiter.stdout is not None
            assert waiter.stdout.readline().strip() == "ready"
            if get_first:
                _listener_up(url, name)
                jobs.add("warm", "warm")
                assert waiter.stdout.readline().strip() == "warm"
            _blocked_in_wait(url, name)
            if finish in ("ack", "ack, the waiter got jobs first"):
                jobs.ack(job, "forty-two")
                expected = "forty-two"
            elif finish == "ack in a transaction":
                with psycopg.connect(base) as conn:
                    jobs.ack(job, "committed", connection=conn)
                    # The NOTIFY is part of the caller's transaction: sent at its commit.
                    conn.commit()
                expected = "committed"
            elif finish == "fail for good":
                assert jobs.fail(job, "boom").state is JobState.FAILED
                expected = "JobFailed"
            else:
                jobs.delete(job)
                expected = "JobNotFound"
            assert waiter.stdout.readline().strip() == expected
            assert waiter.wait(30) == 0
        finally:
            if waiter.poll() is None:
                waiter.kill()
                waiter.wait()


# -- a database restart ------------------------------------------------------------------


@pytest.fixture(scope="module")
def private() -> Iterator[PrivateCluster]:
    cluster = PrivateCluster.create()
    cluster.start()
    yield cluster
    cluster.destroy()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_database_restart_mid_run_loses_no_job(private: PrivateCluster, mode: str) -> None:
    url = f"{private.url()}?schema=restart_{mode}&reconnect_timeout=60"
    total = 3000
    with connect(url) as producer:
        producer.result_ttl(3600).add_many(range(total), "q")
    seen: list[int] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with connect(url) as jobs:
                while True:
                    got = jobs.timeout(3).get_many("q", count=20)
                    if not got:
                        return
                    seen.extend(job.body for job in got)
                    time.sleep(0.002)  # let the restart land mid-run
                    jobs.ack_many(got)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(2)]
    for worker in workers:
        worker.start()
    while len(seen) < total // 4:
        time.sleep(0.01)
    private.restart(mode)
    for worker in workers:
        worker.join(120)
    assert not errors, errors
    assert len(seen) >= total // 2, "the restart happened after the run"
    with connect(url) as jobs:
        # Jobs leased when the connection dropped come back after their lease; no job is
        # lost, though some may be delivered twice (at-least-once).
        jobs.recover_stale(max_age=0)
        leftover = jobs.timeout(0).get_many("q", count=total)
        jobs.ack_many(leftover)
        seen.extend(job.body for job in leftover)
        assert set(seen) == set(range(total))
        assert jobs.stats().by_queue()["q"].done == total


def test_calls_raise_a_retryable_error_while_the_database_is_down(private: PrivateCluster) -> None:
    url = f"{private.url()}?schema=down&reconnect_timeout=0.5"
    with connect(url) as jobs:
        jobs.add("before", "q")
        private.stop()
        try:
            with pytest.raises(StoreUnavailable) as down:
                jobs.qlen("q")
            assert down.value.retryable
        finally:
            private.start()
        assert jobs.qlen("q") == 1  # the same client works again


def test_a_restart_mid_call_is_waited_out_without_driver_warnings(
    private: PrivateCluster, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"{private.url()}?schema=quiet&reconnect_timeout=60"
    with connect(url) as jobs:
        jobs.add("before", "q")
        private.stop("immediate")
        restart = threading.Timer(1.0, private.start)
        restart.start()
        try:
            assert jobs.qlen("q") == 1  # the call waits for the server to come back
        finally:
            restart.join()
    noise = [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("psycopg") and record.levelno >= logging.WARNING
    ]
    assert noise == []  # each failed connection attempt was a warning of the pool


# -- replication -------------------------------------------------------------------------


@pytest.mark.slow
def test_replicate_waits_for_a_synchronous_standby_and_refuses_without_one() -> None:
    primary = PrivateCluster.create({"synchronous_standby_names": "'disquette_standby'"})
    standby = PrivateCluster.create(initialize=False)
    try:
        primary.start()
        primary.base_backup_into(standby, "disquette_standby")
        standby.start()
        url = f"{primary.url()}?schema=replicated"
        with connect(url) as jobs, psycopg.connect(standby.url(), autocommit=True) as replica:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with psycopg.connect(primary.url()) as conn:
                    state = conn.execute("SELECT sync_state FROM pg_stat_replication").fetchall()
                if state == [("sync",)]:
                    break
                time.sleep(0.05)
            assert state == [("sync",)]
            job_id = jobs.replicate(1).add("replicated", "q")
            # remote_apply: the standby shows the job as soon as the add returns.
            row = replica.execute(
                "SELECT state FROM replicated.jobs WHERE id = %s", [job_id]
            ).fetchone()
            assert row == (1,)
            with pytest.raises(NotReplicated) as two:
                jobs.replicate(2).add("x", "q")
            assert (two.value.wanted, two.value.available) == (2, 1)
            standby.stop()
            while (
                psycopg.connect(primary.url())
                .execute("SELECT 1 FROM pg_stat_replication")
                .fetchone()
            ):
                time.sleep(0.05)
            with pytest.raises(NotReplicated):
                jobs.replicate(1).add("no standby", "refused")
            primary.configure({"synchronous_standby_names": "''"})
            primary.reload()
            assert "refused" not in jobs.stats().by_queue(), "refused before anything was written"
    finally:
        standby.destroy()
        primary.destroy()


# -- bloat, plans, migrations, URLs --------------------------------------------------------


def test_the_jobs_table_stays_small_under_churn(url: str) -> None:
    base, schema = split_url(url)
    with (
        connect(f"{url}&vacuum_every=4000") as client,
        psycopg.connect(base, autocommit=True) as conn,
    ):
        jobs = client.timeout(0).result_ttl(0)
        for _ in range(20):
            jobs.add_many([b"x" * 100] * 1000, "q")
            while got := jobs.get_many("q", count=500):
                jobs.ack_many(got)
        pages = scalar(
            conn.execute(
                "SELECT pg_relation_size(%s) / current_setting('block_size')::int",
                [f"{schema}.jobs"],
            )
        )
    # 20,000 jobs of ~200 bytes went through: 500 pages if nothing were reclaimed. What
    # stays is the dead rows of about one vacuum interval.
    assert pages < 200, pages


def test_claim_and_maintenance_read_the_partial_indexes(url: str) -> None:
    base, schema = split_url(url)
    with connect(url) as jobs, psycopg.connect(base, autocommit=True) as conn:
        for _ in range(20):
            jobs.add_many(range(1000), "q")
        jobs.add_many(range(1000), "other")
        conn.execute(f"ANALYZE {schema}.jobs")
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                f"EXPLAIN SELECT r.id FROM {schema}.jobs AS r WHERE r.queue = 'q' AND r.state = 1 "
                "ORDER BY r.priority, r.run_at, r.seq LIMIT 100 FOR UPDATE SKIP LOCKED"
            )
        )
        assert "Index Scan using jobs_ready" in plan, plan
        assert "Seq Scan" not in plan, plan
        assert "Sort" not in plan, plan
        for where in (
            "e.expires_at <= 0",
            "e.state = 0 AND e.run_at <= 0",
            "e.state = 2 AND e.lease_until <= 0",
        ):
            plan = "\n".join(
                row[0]
                for row in conn.execute(
                    f"EXPLAIN SELECT e.id FROM {schema}.jobs AS e WHERE {where}"
                )
            )
            assert "Seq Scan" not in plan, (where, plan)


def test_migrations_are_versioned_and_can_be_left_to_the_operator(url: str) -> None:
    base, schema = split_url(url)
    with connect(f"{url}&migrate=false") as jobs:
        with pytest.raises(StoreUnavailable, match="migrate"):
            jobs.qlen("q")
        assert jobs.store.migrate() == [version for version, _ in MIGRATIONS]
        assert jobs.store.migrate() == []
        assert jobs.qlen("q") == 0
    with psycopg.connect(base) as conn:
        versions = conn.execute(f"SELECT version, name FROM {schema}.schema_migrations").fetchall()
    assert versions == MIGRATIONS


def test_migration_3_keeps_leased_jobs_and_the_previous_versions_claim(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from disquette.stores.postgres import statements as module

    url = fresh_url(migrate="false")
    base, schema = split_url(url)
    previous = module.migrations()[:2]
    monkeypatch.setattr(module, "migrations", lambda: previous)
    # The previous version's claim, verbatim, as its store ran it (binary, prepared by
    # psycopg after five runs): it must keep working on the connection that prepared it.
    old_claim = (
        f"SELECT * FROM {schema}.claim(%(queues)b::text[], %(count)s::int4, %(now)s::float8);"
    )

    def claim_as_before(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
        params = {"queues": ["q"], "count": 1, "now": 1e11}  # leased far ahead
        cursor = conn.execute(old_claim, params, binary=True, prepare=True)
        return [str(row[0]) for row in cursor.fetchall()]

    with psycopg.connect(base, autocommit=True) as conn, connect(url) as jobs:
        conn.execute(module.migration_script(schema))  # a schema at version 2
        leased = "D-00000000-AAAAAAAAAAAAAAAAAAAAAAAA-0001"
        conn.execute(  # added by the previous version
            f"INSERT INTO {schema}.jobs (id, queue, body, encoding, priority, state, created_at,"
            " run_at, retry_after, max_attempts, result_ttl)"
            " VALUES (%s, 'q', 'leased before', 1, 100, 1, 0, 0, 300, 25, 3600)",
            (leased,),
        )
        assert claim_as_before(conn) == [leased]
        for _ in range(6):
            assert claim_as_before(conn) == []
        monkeypatch.undo()
        assert jobs.store.migrate() == [version for version, _ in MIGRATIONS[2:]]
        assert jobs.show(leased).state is JobState.ACTIVE
        # A process of the previous version goes on claiming with its prepared statement.
        later = jobs.add("claimed by an old process", "q")
        assert claim_as_before(conn) == [later]
        mine = jobs.add("mine", "q")
        assert [job.id for job in jobs.store.claim(["q"], 1, holder="h")] == [mine]
        assert jobs.release_leases("h") == 1
        assert [job.state for job in map(jobs.show, (leased, later))] == [JobState.ACTIVE] * 2


def test_migration_5_keeps_every_job_and_the_previous_versions_claim(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from disquette.stores.postgres import statements as module

    url = fresh_url(migrate="false")
    base, schema = split_url(url)
    previous = module.migrations()[:4]
    monkeypatch.setattr(module, "migrations", lambda: previous)
    # The previous version's claim, as its store ran it (binary, prepared).
    old_claim = (
        f"SELECT id FROM {schema}.claim(%(queues)b::text[], %(count)s::int4, %(now)s::float8,"
        " %(holder)s::text);"
    )

    def claim_as_before(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
        params = {"queues": ["q"], "count": 1, "now": 1e9, "holder": "old"}
        cursor = conn.execute(old_claim, params, binary=True, prepare=True)
        return [str(row[0]) for row in cursor.fetchall()]

    ids = [f"D-00000000-AAAAAAAAAAAAAAAAAAAAAAA{n}-0001" for n in range(4)]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(module.migration_script(schema))  # a schema at version 4, filled by it
        for job_id in ids:
            conn.execute(
                f"INSERT INTO {schema}.jobs (id, queue, body, encoding, priority, state,"
                " created_at, run_at, retry_after, max_attempts, result_ttl)"
                " VALUES (%s, 'q', 'x', 0, 100, 1, 0, 0, 300, 25, 3600)",
                (job_id,),
            )
        assert claim_as_before(conn) == [ids[0]]
        for _ in range(5):
            claim_as_before(conn)  # prepared by now; every job is leased
        conn.execute(f"UPDATE {schema}.jobs SET state = 1 WHERE id = ANY(%s)", (ids[2:],))
        monkeypatch.undo()
        with connect(url, clock=ManualClock(1e9)) as jobs:
            assert jobs.store.migrate() == [version for version, _ in MIGRATIONS[4:]]
            active = jobs.show(ids[0])
            assert (active.state, active.cancel_requested, active.progress) == (
                JobState.ACTIVE, False, None,
            )  # fmt: skip
            assert jobs.stats().by_queue()["q"].active + 2 == len(ids)
            # A process of the previous version goes on claiming with its prepared statement.
            assert claim_as_before(conn) == [ids[2]]
            jobs.progress(active, [1, 2])
            assert jobs.cancel(active) is JobState.ACTIVE
            assert jobs.cancel(ids[3]) is JobState.CANCELLED
            assert jobs.show(ids[0]).progress == [1, 2]
            jobs.ack_cancelled(active)
            assert jobs.stats().by_queue()["q"].cancelled == 2


def test_release_leases_leaves_a_job_an_old_version_process_claimed_since(url: str) -> None:
    base, schema = split_url(url)
    with connect(url) as jobs, psycopg.connect(base, autocommit=True) as conn:
        job_id = jobs.add("x", "q")
        assert [job.id for job in jobs.store.claim(["q"], 1, holder="A")] == [job_id]
        # A's lease ran out and a process of the previous version claimed the job: its
        # claim (migration 2's) increments attempts and leases again, knowing no holder.
        conn.execute(
            f"UPDATE {schema}.jobs SET state = 2, attempts = attempts + 1,"
            " lease_until = lease_until + 60 WHERE id = %s",
            (job_id,),
        )
        assert jobs.release_leases("A") == 0
        job = jobs.show(job_id)
        assert (job.state, job.attempts, job.additional_deliveries) == (JobState.ACTIVE, 2, 0)
        # A is gone: its rows go with the release.
        assert conn.execute(f"SELECT count(*) FROM {schema}.holders").fetchone() == (0,)


def test_holder_rows_of_finished_deliveries_are_pruned(url: str) -> None:
    from disquette.stores.postgres import statements as module

    base, schema = split_url(url)
    with connect(url) as jobs, psycopg.connect(base, autocommit=True) as conn:
        ids = jobs.add_many(["a", "b", "c"], "q")
        claimed = jobs.store.claim(["q"], 3, holder="A")
        jobs.store.ack([claimed[0].id])
        jobs.store.nack([claimed[1].id])
        assert [job.id for job in jobs.store.claim(["q"], 1)] == [claimed[1].id]  # again
        conn.execute(module.queries(schema)["prune_holders"])
        # Only the job still on the delivery A's claim made keeps its row.
        rows = conn.execute(f"SELECT id, holder, attempts FROM {schema}.holders").fetchall()
        assert rows == [(claimed[2].id, "A", 1)]
        assert sorted(ids) == sorted(job.id for job in claimed)


def test_schemas_are_independent_stores(url: str) -> None:
    other = fresh_url()
    with connect(url) as first, connect(other) as second:
        first.add("mine", "q")
        assert second.qlen("q") == 0
        assert first.qlen("q") == 1


def test_url_parameters_and_errors(url: str) -> None:
    base = session_database_url()
    secret = base.replace("postgres@", "postgres:hunter2@")
    with connect(f"{secret}?schema=urls&poll_interval=0.5") as jobs:
        assert "hunter2" not in jobs.store.url
        assert jobs.store.poll_interval == 0.5
    for bad in [
        f"{base}?schema=bad-name",
        f"{base}?poll_interval=fast",
        f"{base}?migrate=maybe",
        f"{base}?pool_min=5&pool_max=2",
    ]:
        with pytest.raises(InvalidURL):
            connect(bad)
    jobs = connect(url)
    jobs.close()
    with pytest.raises(ClientClosed):
        jobs.add("x", "q")


@pytest.mark.parametrize("knob", ["retry_for", "reconnect_timeout"])
def test_an_unreachable_server_raises_store_unavailable(knob: str) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/x?{knob}=0.3"
    with connect(nowhere) as jobs, pytest.raises(StoreUnavailable) as down:
        jobs.add("x", "q")
    assert "(retried for 0.3 s)" in str(down.value)


def test_retry_for_and_its_older_name_are_not_both_given() -> None:
    with pytest.raises(InvalidURL, match="not both"):
        connect(f"{session_database_url()}?retry_for=1&reconnect_timeout=2")


# -- connecting, and replays of calls whose reply was lost ---------------------------------


def _with_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{user}@{parts.hostname}:{parts.port or 5432}"))


@pytest.mark.parametrize("case", ["closed port", "missing database", "missing role"])
def test_connection_errors_are_one_line_naming_the_cause(case: str) -> None:
    base = session_database_url()
    url, cause = {
        "closed port": (
            f"postgresql://postgres@127.0.0.1:{free_port()}/x?retry_for=1",
            "Connection refused (retried for 1 s)",
        ),
        "missing database": (
            with_database(base, "disquette_no_such_db"),
            'database "disquette_no_such_db" does not exist',
        ),
        "missing role": (
            _with_user(base, "disquette_no_such_role"),
            'role "disquette_no_such_role" does not exist',
        ),
    }[case]
    started = time.monotonic()
    stats = subprocess.run(
        [sys.executable, "-m", "disquette", "stats", "--url", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    lines = stats.stderr.strip().splitlines()
    assert len(lines) == 1, stats.stderr  # was 11 to 21 lines of the pool's retries
    said = "refused" if case != "closed port" else "unreachable"
    assert lines[0].startswith(f"Error: store {said}: PostgreSQL postgresql://")
    assert lines[0].endswith(cause), lines[0]
    assert stats.returncode == EXIT_UNAVAILABLE
    # A refusal fails at once, an unreachable server after reconnect_timeout (was 20 s).
    assert elapsed < 8, elapsed


def test_a_refusal_is_not_retryable_and_an_outage_is() -> None:
    refused = with_database(session_database_url(), "disquette_no_such_db")
    with connect(refused) as jobs, pytest.raises(StoreRefused) as no:
        jobs.qlen("q")
    assert not no.value.retryable
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/x?reconnect_timeout=0"
    with connect(nowhere) as jobs, pytest.raises(StoreUnavailable) as down:
        jobs.qlen("q")
    assert down.value.retryable
    assert not isinstance(down.value, StoreRefused)
    with pytest.raises(InvalidURL):
        connect(f"{session_database_url()}?no_such_libpq_option=1")


def test_a_busy_pool_is_told_apart_from_an_unreachable_server(url: str) -> None:
    base, schema = split_url(url)
    with (
        connect(f"{url}&pool_max=1&reconnect_timeout=0") as jobs,
        psycopg.connect(base) as locker,
    ):
        assert jobs.qlen("q") == 0  # no retries allowed, and yet the pool may open one
        locker.execute(f"LOCK TABLE {schema}.jobs")
        blocked = threading.Thread(target=jobs.add, args=("waits for the lock", "q"))
        blocked.start()  # holds the pool's only connection until the lock is released
        try:
            deadline = time.monotonic() + 30
            while not scalar(locker.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")):
                assert time.monotonic() < deadline
                time.sleep(0.01)
            with pytest.raises(StoreUnavailable, match="no free connection in the pool"):
                jobs.qlen("q")
        finally:
            locker.commit()
            blocked.join(30)
        assert jobs.qlen("q") == 1


def test_database_errors_are_store_errors(url: str) -> None:
    base, schema = split_url(url)
    with connect(url) as jobs, psycopg.connect(base, autocommit=True) as conn:
        jobs.add("x", "q")
        conn.execute(f"ALTER TABLE {schema}.jobs ADD CHECK (length(body) < 100)")
        with pytest.raises(StoreError, match="check constraint"):
            jobs.add("x" * 200, "q")
        conn.autocommit = False
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1 / 0")
        with pytest.raises(StoreError, match="transaction is aborted"):
            jobs.add("in an aborted transaction", "q", connection=conn)


@pytest.fixture
def lossy(url: str) -> Iterator[tuple[str, ReplyLosingProxy]]:
    """(the store URL through a proxy that can lose a reply, the proxy)."""
    base, schema = split_url(url)
    parts = urlsplit(base)
    proxy = ReplyLosingProxy(parts.port or 5432, "postgres")
    netloc = parts.netloc.rpartition("@")[0] + f"@127.0.0.1:{proxy.port}"
    # The proxy follows the protocol's messages: no TLS or GSSAPI negotiation.
    query = f"schema={schema}&sslmode=disable&gssencmode=disable"
    yield urlunsplit(parts._replace(netloc=netloc, query=query)), proxy
    proxy.close()


def test_an_add_whose_reply_was_lost_is_not_added_again_once_its_job_is_done(
    url: str, lossy: tuple[str, ReplyLosingProxy]
) -> None:
    proxied, proxy = lossy
    with connect(proxied) as jobs, connect(url) as worker:
        jobs.qlen("q")  # connected and migrated

        def work_it_off() -> None:
            worker.ack(worker.timeout(10).get("q"), "result")

        # The add commits, its reply is lost, a worker runs and acks the job, and the
        # store, seeing a lost connection, runs the add again.
        proxy.lose_reply_to(b"lost reply", then=work_it_off)
        job_id = jobs.add(b"lost reply", "q")
        assert proxy.lost == 1
        assert worker.qlen("q") == 0, "the job was queued again: it would run twice"
        assert worker.timeout(0).get_many("q") == []
        assert worker.show(job_id).state is JobState.DONE
        assert worker.wait(job_id, timeout=0) == "result"


def test_an_add_run_again_while_its_job_is_being_acked_adds_nothing(
    url: str, lossy: tuple[str, ReplyLosingProxy]
) -> None:
    proxied, proxy = lossy
    base, _ = split_url(url)
    failures: list[BaseException] = []
    with (
        connect(proxied) as jobs,
        connect(url) as worker,
        psycopg.connect(base) as acking,
        psycopg.connect(base, autocommit=True) as observer,
    ):
        jobs.qlen("q")

        def commit_once_the_add_waits_for_it() -> None:
            try:
                deadline = time.monotonic() + 30
                while not scalar(
                    observer.execute(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                ):
                    assert time.monotonic() < deadline, "the add never waited for the ack"
                    time.sleep(0.01)
            except BaseException as exc:
                failures.append(exc)
            acking.commit()

        def ack_in_a_transaction_that_commits_while_the_add_runs_again() -> None:
            worker.ack(worker.timeout(10).get("q"), "result", connection=acking)
            threading.Thread(target=commit_once_the_add_waits_for_it).start()

        # The add's second run meets its own job deleted by an ack not yet committed: it
        # waits for it, and the ack's done row is not in its snapshot.
        proxy.lose_reply_to(
            b"raced reply", then=ack_in_a_transaction_that_commits_while_the_add_runs_again
        )
        job_id = jobs.add(b"raced reply", "q")
        assert not failures, failures
        assert worker.qlen("q") == 0, "the job was queued again: it would run twice"
        assert worker.show(job_id).state is JobState.DONE


def test_acks_nacks_and_failures_run_again_after_they_committed_change_nothing_more(
    url: str, lossy: tuple[str, ReplyLosingProxy]
) -> None:
    proxied, proxy = lossy
    with connect(proxied) as jobs:
        replay_ack_nack_and_fail(jobs, proxy)


def test_a_worker_started_before_its_database_waits_for_it(tmp_path: Path) -> None:
    cluster = PrivateCluster.create()
    try:
        url = f"{cluster.url()}?reconnect_timeout=60"
        command = ["worker", "tests.worker.apps:handlers", "--url", url, "--log-level", "error"]
        worker = subprocess.Popen(
            [sys.executable, "-m", "disquette", *command],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(1)  # the worker starts while nothing listens on the port
            assert worker.poll() is None, worker.communicate()[1]
            cluster.start()
            with connect(url) as jobs:
                job_id = jobs.type("quick").add("after the start", "default")
                assert jobs.wait(job_id, timeout=60) == "after the start"
        finally:
            worker.terminate()
            worker.wait(30)
    finally:
        cluster.destroy()


def test_a_claim_whose_reply_was_lost_loses_no_job(
    url: str, lossy: tuple[str, ReplyLosingProxy]
) -> None:
    proxied, proxy = lossy
    clock = ManualClock()
    with connect(proxied, clock=clock) as jobs:
        jobs.add_many(["first", "second"], "claimed")
        proxy.lose_reply_to(b"claimed")
        got = jobs.timeout(0).get_many("claimed", count=1)
        assert proxy.lost == 1
        # The first run leased "first", for a reply that was lost; the second run leased
        # the next job. "first" is leased to nobody until its lease runs out.
        assert [job.body for job in got] == ["second"]
        jobs.ack_many(got)
        assert jobs.timeout(0).get_many("claimed") == []
        clock.advance(300 + 1)  # the default retry_after
        again = jobs.timeout(0).get_many("claimed", count=5)
        assert [(job.body, job.additional_deliveries) for job in again] == [("first", 1)]
