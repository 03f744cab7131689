"""Flow limits (issue 16) on every store: a queue's concurrency and rate limits, kept in the
store, obeyed by every claim; a lease that runs out frees its slot."""

from __future__ import annotations

import pytest

from disquette import ManualClock, connect_async
from disquette.errors import InvalidOption, NotSupported
from disquette.stores.limits import QueueLimits

from ._fixtures import clock_fixture, store_url_fixture  # noqa: F401  # this module's fixtures


@pytest.mark.requires("limits")
async def test_a_concurrency_limit_is_never_exceeded(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        await jobs.set_limits("q", concurrency=3)
        assert await jobs.limits() == {"q": QueueLimits(concurrency=3)}
        await jobs.add_many(list(range(10)), "q")
        first = await jobs.timeout(0).get_many("q", count=10)
        assert len(first) == 3
        assert await jobs.timeout(0).get_many("q", count=10) == []
        await jobs.ack(first[0])  # an ack frees one slot, a nack another
        await jobs.nack(first[1])
        second = await jobs.timeout(0).get_many("q", count=10)
        assert len(second) == 2
        # The worker's path (ack and claim in one call) obeys it too.
        claimed, _ = await jobs.ack_many_and_get([second[0]], None, "q", count=10)
        assert len(claimed) == 1
        assert await jobs.qlen("q") == 5  # 3 active (the limit), 2 done
        await jobs.set_limits("q")  # no limits: cleared
        assert await jobs.limits() == {}
        assert len(await jobs.timeout(0).get_many("q", count=10)) == 5


@pytest.mark.requires("limits")
async def test_a_limited_queue_leaves_room_for_the_next_queue(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        await jobs.set_limits("a", concurrency=1)
        await jobs.add_many([1, 2, 3], "a")
        await jobs.add_many([4, 5, 6], "b")
        claimed = await jobs.timeout(0).get_many("a", "b", count=4)
        assert sorted(job.body for job in claimed) == [1, 4, 5, 6]


@pytest.mark.requires("limits", "follows_clock")
async def test_a_lease_that_runs_out_frees_its_slot(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        await jobs.set_limits("q", concurrency=2)
        await jobs.retry_after(10).add_many(list(range(5)), "q")
        assert len(await jobs.timeout(0).get_many("q", count=5)) == 2
        clock.advance(5)
        assert await jobs.timeout(0).get_many("q", count=5) == []
        clock.advance(6)  # the holder died: its leases run out, the slots come back
        again = await jobs.timeout(0).get_many("q", count=5)
        assert len(again) == 2


@pytest.mark.requires("limits", "follows_clock")
async def test_a_rate_limit_is_a_token_bucket(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        await jobs.set_limits("q", rate=(10, 1.0))
        await jobs.add_many(list(range(200)), "q")
        started = len(await jobs.timeout(0).get_many("q", count=100))
        assert started == 10  # a full bucket at first
        for _ in range(50):  # 5 seconds, a claim every 0.1 s
            clock.advance(0.1)
            started += len(await jobs.timeout(0).get_many("q", count=100))
        assert 59 <= started <= 60  # 10 + 10/s x 5 s (float steps may round one down)
        clock.advance(60)  # an idle bucket fills up to its count, no further
        assert len(await jobs.timeout(0).get_many("q", count=100)) == 10
        await jobs.set_limits("q", concurrency=100, rate=(5, 60))
        assert await jobs.limits() == {"q": QueueLimits(concurrency=100, rate=(5, 60.0))}


async def test_limits_are_checked(store_url: str) -> None:
    async with connect_async(store_url) as jobs:
        for bad in ({"concurrency": 0}, {"concurrency": True}, {"rate": (0, 1)}):
            with pytest.raises(InvalidOption):
                await jobs.set_limits("q", **bad)
        with pytest.raises(InvalidOption):
            await jobs.set_limits("q", rate=(1, 0))
        with pytest.raises(InvalidOption):
            await jobs.set_limits("q", rate=(1,))  # type: ignore[arg-type]


async def test_a_store_without_limits_refuses_them(store_url: str) -> None:
    async with connect_async(store_url) as jobs:
        if jobs.store.capabilities.limits:
            await jobs.set_limits("q", concurrency=1)
            assert list(await jobs.limits()) == ["q"]
            return
        with pytest.raises(NotSupported):
            await jobs.set_limits("q", concurrency=1)
        with pytest.raises(NotSupported):
            await jobs.limits()
