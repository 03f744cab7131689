"""The PostgreSQL store's hot paths (issue 12): NOTIFYs only for registered waiters, the
registrations of dead processes dropped, maintenance bounded per call and applied by one
process at a time, done rows pruned on a count of acks rather than in every claim.

Whether a NOTIFY was sent is read on a LISTEN connection of the test's own: after the
store's call, the test sends a marker NOTIFY from a second connection; notifications are
delivered in commit order, so whatever the store sent arrives before the marker."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from disquette import Client, Job, ManualClock, connect
from disquette.stores.postgres import listener as listener_module
from disquette.stores.postgres.statements import channel_name
from tests.servers.postgres import fresh_url, split_url

#: Rows a call of the bounded maintenance changes per step (maintain_due's batch).
BATCH = 1000


@pytest.fixture
def url() -> str:
    return fresh_url()


@pytest.fixture
def listening(url: str) -> Iterator[Listening]:
    with Listening(url) as spy:
        yield spy


class Listening:
    """A LISTEN connection on the store's two channels, and a second one for markers."""

    def __init__(self, url: str) -> None:
        self.base, self.schema = split_url(url)
        self.ready = channel_name(self.schema)
        self.done = channel_name(self.schema, ".done")
        self._listen = psycopg.connect(self.base, autocommit=True)
        self._other = psycopg.connect(self.base, autocommit=True)
        for channel in (self.ready, self.done):
            self._listen.execute(f'LISTEN "{channel}"')

    def sent(self) -> list[tuple[str, str]]:
        """The NOTIFYs (channel, payload) committed since the last call."""
        self._other.execute("SELECT pg_notify(%s, 'marker')", [self.done])
        seen: list[tuple[str, str]] = []
        for notify in self._listen.notifies(timeout=60):
            if (notify.channel, notify.payload) == (self.done, "marker"):
                return seen
            seen.append((notify.channel, notify.payload))
        raise AssertionError("the marker NOTIFY never arrived")

    def waiters(self) -> set[tuple[int, str, int]]:
        """The registered waiters: (kind, name, backend pid)."""
        try:
            rows = self._other.execute(f'SELECT kind, name, pid FROM "{self.schema}".waiters')
        except psycopg.errors.UndefinedTable:  # the store has not migrated the schema yet
            return set()
        return {(int(kind), str(name), int(pid)) for kind, name, pid in rows}

    def until_registered(self, kind: int, name: str) -> int:
        """The backend pid of the first waiter (kind, name), once one is registered."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for row_kind, row_name, pid in self.waiters():
                if (row_kind, row_name) == (kind, name):
                    return pid
            time.sleep(0.02)
        raise AssertionError(f"no waiter ({kind}, {name!r}) was registered")

    def until_unregistered(self, kind: int, name: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if (kind, name) not in {(row[0], row[1]) for row in self.waiters()}:
                return
            time.sleep(0.02)
        raise AssertionError(f"the waiter ({kind}, {name!r}) stayed registered")

    def backend_gone(self, pid: int) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = self._other.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid]
            ).fetchone()
            if found == (0,):
                return
            time.sleep(0.02)
        raise AssertionError(f"backend {pid} never went away")

    def __enter__(self) -> Listening:
        return self

    def __exit__(self, *exc: object) -> None:
        self._listen.close()
        self._other.close()


def _in_thread(call: Any) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(call()), daemon=True)
    thread.start()
    return thread, outcome


def test_without_a_registered_waiter_no_call_sends_a_notify(url: str, listening: Listening) -> None:
    with connect(url) as jobs:
        jobs.add("a", "q")
        jobs.add_many(["b", "c"], "q")
        first, second = jobs.timeout(0).get_many("q", count=2)
        jobs.ack(first)
        jobs.nack(second)
        jobs.fail(jobs.timeout(0).get("q"), "boom")
        jobs.delete(jobs.add("d", "q"))
        assert listening.sent() == []


def test_a_blocked_get_registers_its_queue_and_only_that_queue_is_notified(
    url: str, listening: Listening
) -> None:
    with connect(f"{url}&poll_interval=60") as getter, connect(url) as jobs:
        blocked, got = _in_thread(lambda: getter.timeout(60).get("q"))
        listening.until_registered(1, "q")
        assert listening.sent() == []  # registering sends nothing
        jobs.add("elsewhere", "other")
        assert listening.sent() == []
        jobs.add("here", "q")
        assert listening.sent() == [(listening.ready, "q")]
        blocked.join(60)
        assert [job.body for job in got] == ["here"]


def test_a_wait_registers_its_job_and_only_that_job_s_end_is_notified(
    url: str, listening: Listening
) -> None:
    """A wait registers its job (kind 3): the ends of other jobs send nothing, its own
    sends its id, and the listener wakes the wait on that job."""
    with connect(f"{url}&poll_interval=60") as waiter, connect(url) as jobs:
        job_id = jobs.add("work", "q")
        other_id = jobs.add("other", "q")
        job = jobs.timeout(0).get("q")
        other = jobs.timeout(0).get("q")
        assert (job.id, other.id) == (job_id, other_id)
        waiting, result = _in_thread(lambda: waiter.timeout(60).wait(job_id))
        listening.until_registered(3, job_id)
        assert 2 not in {kind for kind, _, _ in listening.waiters()}
        jobs.ack(other, "not waited on")
        jobs.delete(jobs.add("gone", "q"))
        assert listening.sent() == []
        jobs.ack(job, "forty-two")
        assert listening.sent() == [(listening.done, job_id)]
        waiting.join(60)
        assert result == ["forty-two"]
        listening.until_unregistered(3, job_id)  # nothing waits on it any more


@pytest.mark.parametrize("end", ["fail for good", "cancel", "delete", "release holder"])
def test_each_end_of_a_waited_job_sends_its_id(url: str, listening: Listening, end: str) -> None:
    with (
        connect(f"{url}&poll_interval=60") as waiter,
        connect(url, holder="dead-worker") as jobs,
    ):
        at_most_once = end == "release holder"  # released: failed for good
        job_id = jobs.max_attempts(1).retry_after(0 if at_most_once else 30).add("w", "q")
        job = None if end == "cancel" else jobs.timeout(0).get("q")
        waiting, outcome = _in_thread(lambda: _outcome(waiter, job_id))
        listening.until_registered(3, job_id)
        if job is None:
            jobs.cancel(job_id)  # a queued job: cancelled at once
        elif end == "fail for good":
            jobs.fail(job, "boom")
        elif end == "delete":
            jobs.delete(job_id)
        else:
            assert jobs.release_leases("dead-worker") == 1
        assert listening.sent() == [(listening.done, job_id)]
        waiting.join(60)
        expected = {"fail for good": "JobFailed", "cancel": "JobCancelled"}
        assert outcome == [expected.get(end, "JobFailed" if end != "delete" else "JobNotFound")]


def _outcome(client: Client, job_id: str) -> str:
    try:
        client.timeout(60).wait(job_id)
    except Exception as exc:  # the kind of end is what is returned
        return type(exc).__name__
    return "done"


def test_a_waiter_of_the_previous_version_still_hears_every_end(
    url: str, listening: Listening
) -> None:
    """A process of the previous version registers kind 2 and reads an empty payload as
    "some job ended": it is still sent one for each end."""
    with connect(url) as jobs:
        job = jobs.timeout(0).get("q") if jobs.add("w", "q") else None
        assert job is not None
        with psycopg.connect(listening.base, autocommit=True) as old:
            old.execute(
                f'INSERT INTO "{listening.schema}".waiters (kind, name, pid, started) '
                "SELECT 2, '', pid, backend_start FROM pg_stat_activity "
                "WHERE pid = pg_backend_pid()"
            )
            jobs.ack(job)
            assert listening.sent() == [(listening.done, "")]


BLOCKED = """
    import sys, disquette
    jobs = disquette.connect(sys.argv[1])
    print("ready", flush=True)
    jobs.timeout(600).get("q")
"""


def test_the_registration_of_a_dead_process_is_dropped(url: str, listening: Listening) -> None:
    """A killed process leaves its rows behind (a NOTIFY nobody reads, at worst): the next
    listener to connect deletes the rows of backends that are gone."""
    blocked = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(BLOCKED), f"{url}&poll_interval=60"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        dead = listening.until_registered(1, "q")
    finally:
        blocked.send_signal(signal.SIGKILL)
        blocked.wait()
    listening.backend_gone(dead)
    assert dead in {pid for _, _, pid in listening.waiters()}
    with connect(f"{url}&poll_interval=60") as getter, connect(url) as jobs:
        blocked_get, got = _in_thread(lambda: getter.timeout(60).get("q2"))
        alive = listening.until_registered(1, "q2")
        assert {pid for _, _, pid in listening.waiters()} == {alive}
        jobs.add("x", "q2")
        blocked_get.join(60)
        assert [job.body for job in got] == ["x"]


def _maintenance_lock(schema: str) -> str:
    return f"SELECT pg_advisory_xact_lock(hashtextextended('disquette maintain \"{schema}\"', 0))"


def test_maintenance_applies_a_bounded_batch_per_call(url: str) -> None:
    clock = ManualClock(1e9)
    with connect(url, clock=clock) as jobs:
        jobs.delay(10).add_many(["x"] * (2 * BATCH + BATCH // 2), "q")
        clock.advance(11)
        assert jobs.qlen("q") == BATCH
        assert jobs.qlen("q") == 2 * BATCH
        assert jobs.qlen("q") == 2 * BATCH + BATCH // 2


def test_maintenance_is_applied_by_one_process_at_a_time(url: str) -> None:
    """While another process holds the maintenance lock (it is applying the same due
    changes), a claim goes on without waiting and without the job it would promote."""
    base, schema = split_url(url)
    clock = ManualClock(1e9)
    with connect(url, clock=clock) as jobs, psycopg.connect(base) as other:
        job_id = jobs.delay(10).add("later", "q")
        clock.advance(11)
        other.execute(_maintenance_lock(schema))  # in a transaction: held until commit
        assert jobs.timeout(0).get_many("q") == []
        other.commit()
        assert [job.id for job in jobs.timeout(0).get_many("q")] == [job_id]


def _done_rows(url: str) -> int:
    base, schema = split_url(url)
    with psycopg.connect(base) as conn:
        row = conn.execute(f'SELECT count(*) FROM "{schema}".done').fetchone()
    assert row is not None
    return int(row[0])


def _claim_and_ack(jobs: Client, count: int) -> list[Job]:
    jobs.result_ttl(5).add_many(["x"] * count, "q")
    claimed: list[Job] = []
    while len(claimed) < count:
        claimed += jobs.timeout(0).get_many("q", count=100)
    jobs.ack_many(claimed)
    return claimed


def test_done_rows_are_pruned_on_a_count_of_acks_not_by_claims(url: str) -> None:
    clock = ManualClock(1e9)
    with connect(url, clock=clock) as jobs:
        _claim_and_ack(jobs, 1000)
        clock.advance(10)  # their result_ttl has run out
        assert jobs.timeout(0).get_many("q") == []
        assert _done_rows(url) == 1000, "a claim pruned done rows"
        _claim_and_ack(jobs, 1000)  # the 2,000th ack prunes
        assert _done_rows(url) == 1000


def test_jobs_coming_due_wake_a_registered_getter(url: str, listening: Listening) -> None:
    """The maintenance NOTIFYs the queues it made jobs ready in, when a getter waits."""
    clock = ManualClock(1e11)  # far ahead of the getter's clock: only this store promotes
    with connect(f"{url}&poll_interval=60") as getter, connect(url, clock=clock) as jobs:
        job_id = jobs.delay(10).add("later", "q")
        blocked, got = _in_thread(lambda: getter.timeout(60).get("q"))
        listening.until_registered(1, "q")
        assert listening.sent() == []
        clock.advance(11)
        # The maintenance before the count promotes the job, unless the getter's own (a
        # claim as it registered) holds the maintenance lock just then: the next one does.
        sent: list[tuple[str, str]] = []
        for _ in range(100):
            jobs.qlen("q")
            sent += listening.sent()
            if sent:
                break
        assert sent == [(listening.ready, "q")]
        blocked.join(60)
        assert [job.id for job in got] == [job_id]


def test_a_waiter_nothing_waits_for_any_more_is_unregistered_then_registered_again(
    url: str, listening: Listening, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once no get waits on a queue here (for ``_FORGET_AFTER`` seconds, 0 in this test),
    the process's row goes and adds to that queue send no NOTIFY; the next blocked get
    registers the queue again and is woken by the next add."""
    monkeypatch.setattr(listener_module, "_FORGET_AFTER", 0.0)
    with connect(f"{url}&poll_interval=60") as getter, connect(url) as jobs:
        blocked, got = _in_thread(lambda: getter.timeout(60).get("q"))
        listening.until_registered(1, "q")
        jobs.add("first", "q")
        assert listening.sent() == [(listening.ready, "q")]
        blocked.join(60)
        assert [job.body for job in got] == ["first"]
        listening.until_unregistered(1, "q")
        jobs.add("unwatched", "q")
        assert listening.sent() == []
        assert getter.timeout(0).get("q").body == "unwatched"
        blocked, got = _in_thread(lambda: getter.timeout(60).get("q"))
        listening.until_registered(1, "q")
        jobs.add("second", "q")
        blocked.join(60)
        assert [job.body for job in got] == ["second"]
