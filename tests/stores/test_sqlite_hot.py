"""SQLite hot paths (issue 12): claims that skip what is not due, empty queues polled without
the write lock, time-driven changes in batches, ack and claim in one commit, throttled
wake-ups between processes."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from disquette import JobState, ManualClock, connect
from disquette.errors import StoreError, StoreUnavailable
from disquette.stores.sqlite import database, peers
from disquette.stores.sqlite.acks import json_ids
from disquette.stores.sqlite.peers import PeerWakeups
from disquette.stores.sqlite.store import SqliteStore


def _store(client: object) -> SqliteStore:
    store = getattr(client, "store", None)
    assert isinstance(store, SqliteStore)
    return store


def test_a_claim_over_empty_queues_takes_no_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    with connect(f"sqlite:///{path}?busy_timeout=0") as jobs:
        jobs.add("x", "full")
        writer = sqlite3.connect(path, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")  # another connection holds the write lock
        try:
            # A claim over queues holding nothing reads, finds nothing, and takes no lock;
            # one that finds a job needs the lock, and says it is busy.
            assert jobs.timeout(0).get_many("a", "b", "c") == []
            assert jobs.timeout(0).get_many("a") == []
            with pytest.raises(StoreUnavailable, match="locked"):
                jobs.timeout(0).get_many("a", "full")
        finally:
            writer.execute("ROLLBACK")
            writer.close()
        assert [job.body for job in jobs.timeout(0).get_many("a", "full")] == ["x"]


def test_a_claim_sees_what_another_connection_made_due(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    clock = ManualClock()
    with connect(url, clock=clock) as consumer, connect(url, clock=clock) as producer:
        assert consumer.timeout(0).get_many("q") == []  # knows nothing is due, ever
        job_id = producer.delay(5).add("later", "q")
        clock.advance(5)
        assert consumer.timeout(0).get("q").id == job_id
        # A lease another connection took runs out, and this one sees it lapse. (A claim
        # that found nothing last time looks at once; a busy one within 5 ms.)
        producer.retry_after(3).add("leased", "q")
        leased = producer.timeout(0).get("q")
        assert consumer.timeout(0).get_many("q") == []
        clock.advance(3)
        again = consumer.timeout(0).get("q")
        assert (again.id, again.attempts) == (leased.id, 2)


def test_a_claim_knows_its_own_next_due_change(tmp_path: Path) -> None:
    clock = ManualClock()
    with connect(f"sqlite:///{tmp_path / 'jobs.db'}", clock=clock) as jobs:
        store = _store(jobs)
        jobs.retry_after(7).add("a", "q")
        jobs.ttl(100).add("b", "q")
        jobs.delay(50).add("c", "q")
        first = jobs.timeout(0).get("q")
        # Nothing is due before the first lease runs out: no reads to find that out.
        assert store._due_at == pytest.approx(first.lease_until)
        statements: list[str] = []
        assert store._conn is not None
        store._conn.set_trace_callback(statements.append)
        jobs.timeout(0).get("q")
        assert not any("jobs WHERE expires_at" in text for text in statements)
        clock.advance(7)
        redelivered = jobs.timeout(0).get("q")
        assert (redelivered.id, redelivered.attempts) == (first.id, 2)


def test_the_ack_of_a_job_claimed_here_knows_its_row_and_expiry(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    clock = ManualClock()
    with connect(url, clock=clock) as jobs, connect(url, clock=clock) as other:
        store = _store(jobs)
        jobs.result_ttl(30).add("a", "q")
        job = jobs.timeout(0).get("q")
        statements: list[str] = []
        assert store._conn is not None
        store._conn.set_trace_callback(statements.append)
        jobs.ack(job)
        store._conn.set_trace_callback(None)
        # One statement, by rowid, without RETURNING: the store knew the job's result_ttl.
        (ack,) = [text for text in statements if _verb(text) == "UPDATE"]
        assert "WHERE seq = " in ack
        assert "RETURNING" not in ack
        assert store._due_at == clock.now() + 30
        clock.advance(30)
        assert store.show(job.id) is None  # its result's retention ran out, on time
        # Acked elsewhere first: the ack of this delivery does nothing more.
        jobs.add("b", "q")
        second = jobs.timeout(0).get("q")
        other.ack(second.id, "theirs")
        jobs.ack(second, "ours")
        jobs.ack(second)
        assert jobs.wait(second, timeout=0) == "theirs"


def test_time_driven_changes_go_in_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database, "DUE_BATCH", 3)
    path = tmp_path / "jobs.db"
    clock = ManualClock()
    with connect(f"sqlite:///{path}", clock=clock) as jobs:
        jobs.delay(10).add_many(list(range(10)), "q")
        clock.advance(10)
        raw = sqlite3.connect(path)

        def scheduled() -> int:
            return int(raw.execute("SELECT count(*) FROM jobs WHERE state = 0").fetchone()[0])

        # A claim promotes one batch (the earliest due), then claims from it.
        assert jobs.timeout(0).get("q").body == 0
        assert scheduled() == 7
        assert jobs.timeout(0).get("q").body == 1
        assert scheduled() == 4
        # A read applies every batch (each in its own transaction) before it counts.
        assert jobs.qlen("q") == 8
        assert scheduled() == 0
        raw.close()


def test_ack_and_claim_is_one_transaction(tmp_path: Path) -> None:
    with connect(f"sqlite:///{tmp_path / 'jobs.db'}") as jobs:
        jobs.add_many(["a", "b", "c"], "q")
        first = jobs.timeout(0).get("q")
        store = _store(jobs)
        statements: list[str] = []
        assert store._conn is not None
        store._conn.set_trace_callback(statements.append)
        claimed, lost = jobs.ack_many_and_get([first], ["done"], "q", count=2)
        store._conn.set_trace_callback(None)
        assert ([job.body for job in claimed], lost) == (["b", "c"], None)
        # A trigger's program (the flow limits' token spending) is traced again with the
        # text of the statement that fired it: one statement, counted once.
        statements = [text for i, text in enumerate(statements) if statements[i - 1] != text]
        verbs = [_verb(text) for text in statements]
        assert [verb for verb in verbs if verb not in ("PRAGMA", "SELECT")] == [
            "BEGIN",
            "UPDATE",  # the ack
            "UPDATE",  # the claim
            "UPDATE",  # its tokens (an anonymous claim of several: see spend_tokens)
            "COMMIT",
        ]
        assert jobs.show(first).state is JobState.DONE
        assert jobs.wait(first, timeout=0) == "done"


def test_a_worker_acks_one_job_without_a_result_by_one_statement(tmp_path: Path) -> None:
    # A worker whose handler returned None acks each job with its next claim: the one-job
    # ack statement, not a batch's json_each and savepoint (the server's ack_and_claim_
    # deliveries takes those, see below).
    with connect(f"sqlite:///{tmp_path / 'jobs.db'}") as jobs:
        jobs.add_many(["a", "b"], "q")
        first = jobs.timeout(0).get("q")
        store = _store(jobs)
        statements: list[str] = []
        assert store._conn is not None
        store._conn.set_trace_callback(statements.append)
        claimed, lost = jobs.ack_many_and_get([first], [None], "q", count=1)
        store._conn.set_trace_callback(None)
        assert ([job.body for job in claimed], lost) == (["b"], None)
        statements = [text for i, text in enumerate(statements) if statements[i - 1] != text]
        verbs = [_verb(text) for text in statements]
        assert [verb for verb in verbs if verb not in ("PRAGMA", "SELECT")] == [
            "BEGIN",
            "UPDATE",  # the ack
            "UPDATE",  # the claim
            "COMMIT",
        ]
        assert jobs.show(first).state is JobState.DONE


def test_ack_and_claim_rolls_back_both_on_an_error(tmp_path: Path) -> None:
    with connect(f"sqlite:///{tmp_path / 'jobs.db'}") as jobs:
        jobs.add_many(["a", "b"], "q")
        first = jobs.timeout(0).get("q")
        store = _store(jobs)
        result: object = (object(), 0)  # a result the driver cannot bind: nothing happens
        with pytest.raises(StoreError):
            store.ack_and_claim([first.id], [result], ["q"], 1)  # type: ignore[list-item]
        assert jobs.show(first).state is JobState.ACTIVE
        assert jobs.qlen("q") == 1


def test_ack_and_claim_deliveries_is_one_transaction(tmp_path: Path) -> None:
    with connect(f"sqlite:///{tmp_path / 'jobs.db'}") as jobs:
        jobs.result_ttl(0).add_many(["a", "b", "c", "d", "e"], "q")
        store = _store(jobs)
        before = store.claim_deliveries(["q"], 1)[0]
        # The first batch of acks learns that these jobs are kept for no time (ack_batch).
        (first,) = store.ack_and_claim_deliveries([before.id], ["q"], 1)[1]
        statements: list[str] = []
        assert store._conn is not None
        store._conn.set_trace_callback(statements.append)
        done, claimed = store.ack_and_claim_deliveries([first.id], ["q"], 2)
        store._conn.set_trace_callback(None)
        assert (done, [delivery.raw_body for delivery in claimed]) == ([first.id], [b"c", b"d"])
        statements = [text for i, text in enumerate(statements) if statements[i - 1] != text]
        verbs = [_verb(text) for text in statements]
        # One id is acked as a batch is: kept for no time, it is deleted in the ack.
        assert [verb for verb in verbs if verb not in ("PRAGMA", "SELECT")] == [
            "BEGIN",
            "SAVEPOINT",
            "DELETE",  # the ack
            "RELEASE",
            "UPDATE",  # the claim
            "UPDATE",  # its tokens
            "COMMIT",
        ]
        assert store.show(first.id) is None  # deleted with its ack


@pytest.mark.parametrize(
    "ids",
    [
        *([], [""], ["a"], ["D-00000000-AAAA/+=-0001", "b"], ['a","b'], ['"', ""]),
        *(["a\\b"], ["é"], ["a\nb", "c"], ["\x7f"], ["a]"]),
    ],
)
def test_acked_ids_reach_json_each_as_they_are(tmp_path: Path, ids: list[str]) -> None:
    raw = sqlite3.connect(tmp_path / "ids.db")
    assert json.loads(json_ids(ids)) == ids
    rows = raw.execute("SELECT value FROM json_each(?)", (json_ids(ids),)).fetchall()
    assert [row[0] for row in rows] == ids
    raw.close()


def _verb(statement: str) -> str:
    """A statement's first word, after its comments."""
    lines = (line.strip() for line in statement.splitlines())
    return next(line for line in lines if line and not line.startswith("--")).split()[0]


def _listening(path: Path) -> tuple[PeerWakeups, list[list[str]]]:
    got: list[list[str]] = []
    listener = PeerWakeups(str(path), got.append)
    listener.listen(["q"])
    return listener, got


def _until(condition: Callable[[], bool]) -> None:
    """Wait for a datagram's effect (30 s at most: a lost one fails the test)."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.001)


def test_a_channel_announced_again_within_its_window_is_held_then_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "jobs.db"
    listener, got = _listening(path)
    sender = PeerWakeups(str(path), lambda _: None)
    try:
        monkeypatch.setattr(peers, "THROTTLE_SECONDS", 3600.0)
        sender.announce(["q", "done"])
        _until(lambda: len(got) == 1)
        sender.announce(["q"])
        sender.announce(["q", "other"])  # "other" was never sent: it goes at once
        _until(lambda: len(got) == 2)
        assert sender._held == {"q"}
        monkeypatch.setattr(peers, "THROTTLE_SECONDS", 0.001)
        with sender._flush:
            sender._flush.notify()  # end the (one-hour) window now
        _until(lambda: len(got) == 3)
        assert got == [["q", "done"], ["other"], ["q"]]
    finally:
        sender.close()
        listener.close()


def test_held_channels_reach_a_waiter_that_went_back_to_sleep(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    listener, got = _listening(path)
    sender = PeerWakeups(str(path), lambda _: None)
    try:
        sender.announce(["q"])
        _until(lambda: len(got) == 1)
        sender.announce(["q"])  # within the window, or just after: either way it arrives
        _until(lambda: len(got) == 2)
        assert got == [["q"], ["q"]]
    finally:
        sender.close()
        listener.close()


def test_a_claim_of_several_reads_then_claims_in_one_transaction(tmp_path: Path) -> None:
    with connect(f"sqlite:///{tmp_path / 'jobs.db'}") as jobs:
        jobs.add_many(["a", "b"], "q")
        jobs.priority(-1).add("urgent", "q")
        store = _store(jobs)
        statements: list[str] = []
        assert store._conn is not None
        store._conn.set_trace_callback(statements.append)
        claimed = jobs.timeout(0).get_many("q", count=5)
        delivered = store.claim_deliveries(["q"], 5)
        store._conn.set_trace_callback(None)
        assert ([job.body for job in claimed], delivered) == (["urgent", "a", "b"], [])
        verbs = [_verb(text) for i, text in enumerate(statements) if statements[i - 1] != text]
        assert verbs[verbs.index("BEGIN") :][:5] == [
            "BEGIN",
            "SELECT",  # the rows, as the claim leaves them
            "UPDATE",  # the claim, without RETURNING
            "UPDATE",  # its tokens, at once (anonymous: see spend_tokens)
            "COMMIT",
        ]
        assert all("RETURNING" not in text for text in statements)
        # Read before the claim, the rows say what it made of them.
        for job in claimed:
            shown = jobs.show(job)
            assert (job.state, job.attempts, job.lease_until) == (
                shown.state,
                shown.attempts,
                shown.lease_until,
            )


@pytest.mark.parametrize("holder", [None, "host:1"])
def test_a_claim_of_several_spends_a_token_per_job_with_or_without_a_holder(
    tmp_path: Path, holder: str | None
) -> None:
    clock = ManualClock()
    with connect(f"sqlite:///{tmp_path / 'jobs.db'}", clock=clock) as jobs:
        jobs.add_many([str(i) for i in range(10)], "rated")
        jobs.set_limits("rated", rate=(5, 10.0))
        store = _store(jobs)
        assert len(store.claim(["rated"], 3, holder=holder)) == 3
        assert len(store.claim_deliveries(["rated"], 3, holder=holder)) == 2  # 5 tokens
        clock.advance(4)  # two tokens more
        assert len(store.claim_deliveries(["rated"], 9, holder=holder)) == 2
        assert store.claim(["rated"], 9, holder=holder) == []
        assert store._conn is not None
        tokens = store._conn.execute("SELECT tokens FROM queue_limits").fetchone()[0]
        assert tokens == pytest.approx(0.0)


def test_a_version_7_file_gets_the_token_trigger_every_claim_fires(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    with connect(f"sqlite:///{path}") as jobs:
        jobs.set_limits("rated", rate=(5, 3600.0))
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("DROP TRIGGER queue_limits_spend")  # back to version 7's trigger
    old = database.QUERIES["migrate_limits"]
    raw.execute(old[old.index("CREATE TRIGGER") : old.index("END;") + 4])
    raw.execute("PRAGMA user_version = 7")
    raw.close()
    with connect(f"sqlite:///{path}") as jobs:
        jobs.add_many(["a", "b", "c"], "rated")
        store = _store(jobs)
        assert store._conn is not None
        # A claim as a process of version 7 makes it (holder_attempts set): it spends.
        claim = database.CLAIMS[True, False]
        params = {"now": store.clock.now(), "queue": "rated", "count": 1, "holder": None}
        assert len(store._conn.execute(claim, params).fetchall()) == 1
        tokens = store._conn.execute("SELECT tokens FROM queue_limits").fetchone()[0]
        assert tokens == pytest.approx(4.0)
        assert len(store.claim_deliveries(["rated"], 2)) == 2
        tokens = store._conn.execute("SELECT tokens FROM queue_limits").fetchone()[0]
        assert tokens == pytest.approx(2.0)


def test_a_batch_ack_that_acks_fewer_finds_out_which(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    clock = ManualClock()
    with connect(url, clock=clock) as jobs, connect(url, clock=clock) as other:
        store = _store(jobs)
        jobs.result_ttl(30).add_many(["a", "b"], "q")
        jobs.result_ttl(0).add("gone", "q")
        first, second, dropped = jobs.timeout(0).get_many("q", count=3)
        # Every job of the batch acked at once: no row read back, the expiry still known.
        assert jobs.ack_many([first]) == 1
        assert store._due_at == clock.now() + 30
        other.ack(second.id, "theirs")  # acked elsewhere: this ack's statement acks fewer
        assert store.ack([second.id, dropped.id, "D-unknown"], attempts=[1, 1, 1]) == [dropped.id]
        assert jobs.store.show(dropped.id) is None  # kept for no time once done
        assert jobs.wait(second, timeout=0) == "theirs"


def test_one_by_one_acks_of_jobs_kept_for_no_time_delete_them(tmp_path: Path) -> None:
    clock = ManualClock()
    with connect(f"sqlite:///{tmp_path / 'jobs.db'}", clock=clock) as jobs:
        store = _store(jobs)
        jobs.result_ttl(0).add_many(["a", "b"], "q")
        jobs.result_ttl(60).add("kept", "q")
        first, second, kept = (store.claim_deliveries(["q"], 1)[0] for _ in range(3))
        assert store.ack([first.id]) == [first.id]  # marked done, as any one-job ack
        statements: list[str] = []
        assert store._conn is not None
        store._conn.set_trace_callback(statements.append)
        assert store.ack([second.id]) == [second.id]
        store._conn.set_trace_callback(None)
        # The ack before kept its job for no time: this one deletes its own at once.
        assert [_verb(text) for text in statements] == ["DELETE"]
        assert store.show(second.id) is None
        assert store._due_at > clock.now()  # nothing left for the next claim to delete
        # A job kept for a while is marked done, by the ack that tried the delete first.
        assert store.ack([kept.id]) == [kept.id]
        assert jobs.show(kept.id).state is JobState.DONE
        assert store._due_at == clock.now() + 60
