"""Memory-store specifics the conformance suite cannot reach."""

from __future__ import annotations

from disquette import JobState, ManualClock
from disquette.job import Job
from disquette.stores.memory import MemoryStore


def test_release_leases_holds_only_the_delivery_its_claim_made() -> None:
    # The memory store has no process of another version, but keeps the holder the way the
    # shared stores do (with the delivery's attempts): a delivery the holder's claim did not
    # make, here faked by counting an attempt behind the store's back, is not released.
    store = MemoryStore(ManualClock(1000.0))
    store.add([Job("D-1", "q", b"x", created_at=1000.0, run_at=1000.0)], None)
    [claimed] = store.claim(["q"], 1, holder="A")
    store._jobs[claimed.id].attempts += 1
    assert store.release_leases("A") == 0
    job = store.show(claimed.id)
    assert job is not None
    assert (job.state, job.additional_deliveries) == (JobState.ACTIVE, 0)


def test_a_claim_makes_a_due_burst_ready_a_batch_at_a_time() -> None:
    from disquette import connect
    from disquette.stores.memory.store import TICK_BATCH

    clock = ManualClock()
    with connect("memory://", clock=clock) as client:
        client.delay(10).add_many(list(range(TICK_BATCH * 2 + 500)), "q")
        clock.advance(11)
        store = client.store
        assert isinstance(store, MemoryStore)
        left = []
        for _ in range(3):
            client.timeout(0).get("q")
            left.append(len(store._scheduled))
        assert left == [TICK_BATCH + 500, 500, 0]
        # A read applies the whole backlog: counts are never behind.
        client.delay(10).add_many(list(range(TICK_BATCH + 1)), "r")
        clock.advance(11)
        assert client.qlen("r") == TICK_BATCH + 1


def test_the_plain_add_stores_an_id_repeated_in_its_batch_once() -> None:
    # The add without checks (no unique key, no parents, no max_len) skips an id it holds
    # already, or met earlier in the same batch: the queue counts one job, as it holds.
    store = MemoryStore(ManualClock(1000.0))
    first = Job("D-1", "q", b"first", created_at=1000.0, run_at=1000.0)
    store.add([first, Job("D-1", "q", b"again", created_at=1000.0, run_at=1000.0)], None)
    store.add([Job("D-1", "q", b"later", created_at=1000.0, run_at=1000.0)], None)
    assert store.qlen("q") == 1
    [claimed] = store.claim(["q"], 5)
    assert claimed.raw_body == b"first"
    assert store.claim(["q"], 5) == []


def test_the_plain_add_schedules_a_delayed_job_and_counts_each_queue() -> None:
    store = MemoryStore(ManualClock(1000.0))
    jobs = [
        Job("D-1", "a", b"", created_at=1000.0, run_at=1000.0),
        Job("D-2", "b", b"", created_at=1000.0, run_at=1000.0),
        Job("D-3", "a", b"", created_at=1000.0, run_at=1000.0),
        Job("D-4", "a", b"", created_at=1000.0, run_at=1060.0),
    ]
    store.add(jobs, None)
    assert (store.qlen("a"), store.qlen("b")) == (2, 1)
    delayed = store.show("D-4")
    assert delayed is not None
    assert delayed.state is JobState.SCHEDULED
    assert [job.id for job in store.claim(["a"], 5)] == ["D-1", "D-3"]


def test_the_checked_add_stores_an_id_repeated_in_its_batch_once() -> None:
    store = MemoryStore(ManualClock(1000.0))
    jobs = [Job("D-1", "q", body, created_at=1000.0, run_at=1000.0) for body in (b"1", b"2")]
    store.add(jobs, 10)  # a max_len: the add with its checks
    assert store.qlen("q") == 1
    [claimed] = store.claim(["q"], 5)
    assert claimed.raw_body == b"1"
