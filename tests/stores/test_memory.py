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
