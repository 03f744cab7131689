"""``claim_deliveries`` (what the Disque server's GETJOB claims with) leases what ``claim``
leases: the same jobs, in the same order, with the same leases and counters, on every
store, on the store of this flavor. Each test runs one scenario twice, on queues of its
own for each method, and compares."""

from __future__ import annotations

from typing import Any

import pytest

from disquette import Job, ManualClock, connect_async
from disquette.stores.types import Delivery

from ._fixtures import clock_fixture, store_url_fixture  # noqa: F401  # this module's fixtures

#: The two sides of each scenario: the queues' prefix, by the method that claims.
SIDES = ("claim", "deliveries")


def _lease(job: Job) -> tuple[Any, ...]:
    """What a job's lease and counters are, to compare between the two sides."""
    lease = None if job.lease_until is None else pytest.approx(job.lease_until, abs=2)
    return (job.state, job.attempts, job.nacks, job.additional_deliveries, lease)


async def _both(
    jobs: Any, queues: list[str], count: int, *, holder: str | None = None
) -> tuple[list[Job], list[Delivery]]:
    """``claim`` on the ``claim`` side's ``queues``, ``claim_deliveries`` on the other's;
    checks that they leased the same jobs (by body), in the same order, alike."""
    store = jobs.store
    claimed = await store.claim([f"claim-{q}" for q in queues], count, holder=holder)
    delivered = await store.claim_deliveries(
        [f"deliveries-{q}" for q in queues], count, holder=holder
    )
    assert all(type(delivery) is Delivery for delivery in delivered)
    assert [(d.raw_body, d.queue.removeprefix("deliveries-")) for d in delivered] == [
        (job.raw_body, job.queue.removeprefix("claim-")) for job in claimed
    ]
    for job, delivery in zip(claimed, delivered, strict=True):
        # What each returns is what the store holds now: the same lease on both sides.
        assert Delivery.of(job)[2:] == delivery[2:]
        held_job, held_delivery = await jobs.show(job.id), await jobs.show(delivery.id)
        assert Delivery.of(held_delivery) == delivery
        assert _lease(held_delivery) == _lease(held_job) == _lease(job)
    return claimed, delivered


async def test_claim_deliveries_leases_what_claim_leases(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        for side in SIDES:
            await jobs.add_many([b"a1", b"a2"], f"{side}-a")
            await jobs.add_many([b"b1", b"b2", b"b3"], f"{side}-b")
            await jobs.add("c1", f"{side}-c")
        await _both(jobs, ["empty", "a", "b"], 3)
        await _both(jobs, ["c"], 1)
        claimed, delivered = await _both(jobs, ["b", "a", "c"], 10)
        assert await _both(jobs, ["a", "b", "c"], 5) == ([], [])
        # A delivery is acked as the job claimed is, by id or by its delivery.
        store = jobs.store
        for job, delivery in zip(claimed, delivered, strict=True):
            assert await store.ack([job.id], attempts=[job.attempts]) == [job.id]
            assert await store.ack([delivery.id], attempts=[job.attempts]) == [delivery.id]


@pytest.mark.requires("priorities", "follows_clock")
async def test_claim_deliveries_keeps_claims_order_pauses_and_counters(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        for side in SIDES:
            queue = f"{side}-q"
            await jobs.add("p100-first", queue)
            await jobs.delay(5).add("p100-delayed", queue)
            await jobs.add("p100-second", queue)
            await jobs.priority(1).add("p1", queue)
            await jobs.retry_after(1).priority(2).add("lapses", queue)
            await jobs.priority(3).add("nacked", queue)
            await jobs.priority(200).add("p200", queue)
            await jobs.add("paused", f"{side}-paused")
            await jobs.pause(f"{side}-paused")
        clock.advance(10)
        claimed, delivered = await _both(jobs, ["paused", "q"], 3)
        assert [job.body for job in claimed] == ["p1", "lapses", "nacked"]
        # A nack and a lease that runs out: counted, and delivered first again.
        await jobs.nack_many([claimed[2], delivered[2].id])
        clock.advance(2)
        claimed, _ = await _both(jobs, ["paused", "q"], 2)
        assert [(job.body, job.nacks, job.additional_deliveries) for job in claimed] == [
            ("lapses", 0, 1),
            ("nacked", 1, 0),
        ]
        claimed, _ = await _both(jobs, ["paused", "q"], 10)
        assert [job.body for job in claimed] == [
            "p100-first",
            "p100-second",
            "p100-delayed",
            "p200",
        ]


@pytest.mark.requires("lease_holders")
async def test_claim_deliveries_record_the_holder(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        for side in SIDES:
            await jobs.add_many(["a", "b"], f"{side}-q")
        await _both(jobs, ["q"], 2, holder="host:1")
        assert await jobs.release_leases("host:1") == 4
        assert await jobs.qlen("claim-q") == await jobs.qlen("deliveries-q") == 2


@pytest.mark.parametrize("result_ttl", [0.0, 3600.0])
async def test_ack_and_claim_deliveries_acks_then_claims(
    store_url: str, clock: ManualClock, result_ttl: float
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        await jobs.result_ttl(result_ttl).add_many([b"1", b"2", b"3", b"4"], "cycle")
        store = jobs.store
        held = await store.claim_deliveries(["cycle"], 2)
        ids = [delivery.id for delivery in held]
        done, claimed = await store.ack_and_claim_deliveries(ids, ["cycle"], 1)
        assert sorted(done) == sorted(ids)
        assert [(type(d), d.raw_body, d.queue) for d in claimed] == [(Delivery, b"3", "cycle")]
        assert await store.ack(ids) == []  # done already
        # The acks stand when the claim finds nothing; one id is acked as a batch is.
        last = await store.claim_deliveries(["cycle"], 5)
        assert await store.ack_and_claim_deliveries([claimed[0].id], ["cycle"], 5) == (
            [claimed[0].id],
            [],
        )
        assert [d.raw_body for d in last] == [b"4"]
        assert await store.ack([last[0].id, claimed[0].id]) == [last[0].id]
        assert await jobs.qlen("cycle") == 0
