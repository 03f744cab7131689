"""Job dependencies on the PostgreSQL store (issue 16, migration 9): the races between an
add and its parents' ends, made deterministic with a transaction held open on a second
connection; released children waking blocked consumers; counts that a parent's later
ends do not take twice; and the upgrade from the previous version's schema."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from disquette import Client, JobState, ManualClock, connect
from disquette.stores.postgres.statements import migrations
from disquette.stores.types import dependency_error
from tests.servers.postgres import fresh_url, split_url
from tests.stores.test_postgres_hot import Listening


@pytest.fixture
def url() -> str:
    return fresh_url()


def _in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run ``call`` in a thread; its outcome (a result or an exception) lands in the list."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _until_a_backend_waits_for_a_lock(observer: psycopg.Connection[Any]) -> None:
    """Return once some backend of this database waits for a row lock (the call started in
    a thread has reached the row the open transaction holds)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row = observer.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
        if row is not None and row[0]:
            return
        time.sleep(0.01)
    raise AssertionError("no call ever waited for the open transaction")


def _finish(thread: threading.Thread, outcome: list[Any]) -> Any:
    thread.join(60)
    assert outcome, "the call never returned"
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def test_an_ack_racing_the_add_of_a_child_waits_for_it_and_releases_it(url: str) -> None:
    base, _ = split_url(url)
    with (
        connect(url) as jobs,
        psycopg.connect(base) as adding,
        psycopg.connect(base, autocommit=True) as observer,
    ):
        parent = jobs.add("parent", "p")
        held = jobs.timeout(0).get("p")
        # The add's transaction stays open: it holds the parent's row (lock_parents).
        adding.execute("SELECT 1")  # the caller's transaction is open
        child = jobs.add("child", "q", depends_on=[parent], connection=adding)
        acking, acked = _in_thread(lambda: jobs.ack(held))
        _until_a_backend_waits_for_a_lock(observer)
        adding.commit()
        _finish(acking, acked)
        assert jobs.show(parent).state is JobState.DONE
        assert jobs.show(child).state is JobState.QUEUED
        assert [job.id for job in jobs.timeout(0).get_many("q")] == [child]


def test_an_add_racing_the_ack_of_its_parent_waits_for_it_and_finds_it_done(url: str) -> None:
    base, _ = split_url(url)
    with (
        connect(url) as jobs,
        psycopg.connect(base) as acking,
        psycopg.connect(base, autocommit=True) as observer,
    ):
        parent = jobs.add("parent", "p")
        # The ack's transaction stays open: the parent's row is deleted, not yet committed.
        jobs.ack(jobs.timeout(0).get("p"), "r", connection=acking)
        adding, added = _in_thread(lambda: jobs.add("child", "q", depends_on=[parent]))
        _until_a_backend_waits_for_a_lock(observer)
        acking.commit()
        child = _finish(adding, added)
        assert jobs.show(child).state is JobState.QUEUED


def test_two_parents_acked_at_once_release_their_child_once_both_are_done(url: str) -> None:
    base, _ = split_url(url)
    with (
        connect(url) as jobs,
        psycopg.connect(base) as acking,
        psycopg.connect(base, autocommit=True) as observer,
    ):
        first = jobs.add("first", "p")
        second = jobs.add("second", "p")
        child = jobs.add("child", "q", depends_on=[first, second])
        one, other = jobs.timeout(0).get_many("p", count=2)
        # The first ack takes the child's count from 2 to 1 and holds its row.
        jobs.ack(one, connection=acking)
        acking_other, acked = _in_thread(lambda: jobs.ack(other))
        _until_a_backend_waits_for_a_lock(observer)
        assert jobs.show(child).state is JobState.WAITING
        acking.commit()
        _finish(acking_other, acked)
        assert jobs.show(child).state is JobState.QUEUED


def test_a_released_child_wakes_a_blocked_getter_of_another_process(url: str) -> None:
    with (
        Listening(url) as listening,
        connect(f"{url}&poll_interval=60") as getter,
        connect(url) as jobs,
    ):
        parent = jobs.add("parent", "p")
        child = jobs.add("child", "q", depends_on=[parent])
        held = jobs.timeout(0).get("p")
        blocked, got = _in_thread(lambda: getter.timeout(60).get("q"))
        listening.until_registered(1, "q")
        assert listening.sent() == []
        jobs.ack(held)
        assert listening.sent() == [(listening.ready, "q")]
        assert _finish(blocked, got).id == child


def test_a_parent_counts_once_for_a_child_whatever_follows_its_end(url: str) -> None:
    """Policy run: a failed parent counts as finished when it fails; deleting it, or
    retrying it and acking it, must not count it again while another parent is pending."""
    with connect(url) as jobs:
        failing = jobs.max_attempts(1).add("failing", "f")
        retried = jobs.max_attempts(1).add("retried", "r")
        pending = jobs.add("pending", "p")
        child = jobs.add(
            "child", "q", depends_on=[failing, retried, pending], on_dependency_failure="run"
        )
        jobs.fail(jobs.timeout(0).get("f"), "boom")
        jobs.fail(jobs.timeout(0).get("r"), "boom")
        jobs.delete(failing)
        jobs.retry(retried)
        jobs.ack(jobs.timeout(0).get("r"))
        assert jobs.show(child).state is JobState.WAITING
        jobs.ack(jobs.timeout(0).get("p"))
        assert jobs.show(child).state is JobState.QUEUED


def test_a_cascade_ends_a_long_chain_in_the_ending_call(url: str) -> None:
    with connect(url) as jobs:
        first = jobs.max_attempts(1).add("first", "q")
        chain = [first]
        for n in range(50):
            chain.append(jobs.add(n, "q", depends_on=[chain[-1]]))
        fanout = jobs.add_many(list(range(200)), "q", depends_on=[chain[1]])
        assert jobs.cancel(chain[1]) is JobState.CANCELLED
        assert {jobs.show(job_id).state for job_id in chain[2:] + fanout} == {JobState.CANCELLED}
        assert jobs.show(chain[-1]).last_error == dependency_error(chain[-2], "cancelled")
        assert jobs.show(fanout[0]).last_error == dependency_error(chain[1], "cancelled")
        assert jobs.show(first).state is JobState.QUEUED


def test_a_waiting_job_holds_its_unique_key(url: str) -> None:
    with connect(url) as jobs:
        parent = jobs.add("parent", "p")
        child = jobs.unique("k").add("child", "q", depends_on=[parent])
        assert jobs.show(child).state is JobState.WAITING
        assert jobs.unique("k").add("again", "q") == child


#: The previous version's claim (migration 8's claim_limited), as its store ran it.
_OLD_CLAIM = (
    "SELECT id FROM {schema}.claim_limited(%(queues)b::text[], %(count)s::int4,"
    " %(now)s::float8, %(holder)s::text, %(channel)s::text);"
)


def test_upgrade_to_9_keeps_jobs_and_the_previous_versions_claim(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Migration 9 on a schema the previous version filled: its jobs stay (a done one
    reads without parents), its prepared claim goes on working during the upgrade (and
    its maintenance resolves the children of a parent it expires), and this version adds,
    claims and releases dependants on the upgraded schema."""
    from disquette.stores.postgres import statements as module

    url = fresh_url(migrate="false")
    base, schema = split_url(url)
    previous = module.migrations()[:8]
    monkeypatch.setattr(module, "migrations", lambda: previous)
    old_claim = _OLD_CLAIM.format(schema=schema)

    def claim_as_before(conn: psycopg.Connection[Any], now: float = 1e11) -> list[str]:
        params = {"queues": ["q"], "count": 1, "now": now, "holder": None, "channel": "x"}
        cursor = conn.execute(old_claim, params, binary=True, prepare=True)
        return [str(row[0]) for row in cursor.fetchall()]

    columns = (
        "id, queue, body, encoding, type, priority, state, created_at, run_at, retry_after,"
        " expires_at, max_attempts, result_ttl"
    )
    queued, done, later = (f"D-00000000-{letter * 24}-0001" for letter in "ABF")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(module.migration_script(schema))  # the previous version's schema
        conn.execute(
            f"INSERT INTO {schema}.jobs ({columns}) VALUES"
            " (%s, 'q', 'x', 0, NULL, 100, 1, 1, 1, 300, NULL, 25, 3600)",
            (queued,),
        )
        conn.execute(
            f"INSERT INTO {schema}.done (id, queue, body, encoding, type, priority,"
            " created_at, run_at, retry_after, expires_at, max_attempts, result_ttl,"
            " attempts, nacks, additional_deliveries, error_count, result_encoding,"
            " finished_at, seq) VALUES (%s, 'q', 'x', 0, NULL, 100, 0, 0, 300, 1e12,"
            " 25, 3600, 1, 0, 0, 0, 0, 1, 100)",
            (done,),
        )
        # Prepared by now (psycopg prepares a statement on its fifth run).
        assert [claim_as_before(conn) for _ in range(6)] == [[queued]] + [[]] * 5
        monkeypatch.undo()
        clock = ManualClock(1e11)
        with connect(url, clock=clock) as jobs:
            assert jobs.store.migrate()[:1] == [9]  # and any later ones
            assert jobs.show(done).depends_on == ()
            # The previous version's process goes on claiming with its prepared statement.
            conn.execute(
                f"INSERT INTO {schema}.jobs ({columns}) VALUES"
                " (%s, 'q', 'x', 0, NULL, 100, 1, 1, 1, 300, NULL, 25, 3600)",
                (later,),
            )
            assert claim_as_before(conn) == [later]
            _dependants_work(jobs, clock)
            # A parent the previous version's maintenance expires resolves its children.
            parent = jobs.ttl(10).add("expiring", "p")
            child = jobs.add("child", "r", depends_on=[parent])
            assert claim_as_before(conn, now=clock.now() + 11) == []
            assert jobs.show(child).state is JobState.CANCELLED
            assert jobs.show(child).last_error == dependency_error(parent, "expired")
        versions = conn.execute(f"SELECT version FROM {schema}.schema_migrations").fetchall()
    assert [version for (version,) in versions] == [v for v, _, _ in migrations()]


def _dependants_work(jobs: Client, clock: ManualClock) -> None:
    parent = jobs.add("parent", "p")
    child = jobs.add("child", "r", depends_on=[parent], on_dependency_failure="run")
    assert jobs.show(child).state is JobState.WAITING
    assert jobs.qlen("r") == 0
    jobs.ack(jobs.timeout(0).get("p"), "parent's result")
    released = jobs.timeout(0).get("r")
    assert (released.id, released.depends_on, released.on_dependency_failure) == (
        child,
        (parent,),
        "run",
    )
    (shown,) = jobs.parents(released)
    assert shown is not None
    assert shown.result == "parent's result"
    jobs.ack(released)
    assert jobs.show(child).depends_on == (parent,)  # kept in the done table too
