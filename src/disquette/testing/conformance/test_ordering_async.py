"""Which job a claim delivers, and when: queue order, priority, delays, TTLs, limits,
pauses and adds sent again (DESIGN.md), on every store, on the client of this flavor."""

from __future__ import annotations

import pytest

from disquette import Job, JobState, ManualClock, connect_async
from disquette.errors import (
    JobNotFound,
    QueueFull,
    Timeout,
)
from disquette.job import new_job_id

from ._fixtures import clock_fixture, store_url_fixture  # noqa: F401  # this module's fixtures


async def test_leftmost_queue_with_a_ready_job_wins(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        await jobs.add("low", "low")
        await jobs.add("high", "high")
        nowait = jobs.timeout(0)
        assert (await nowait.get("urgent", "high", "low")).body == "high"
        assert (await nowait.get("urgent", "high", "low")).body == "low"
        with pytest.raises(Timeout):
            await nowait.get("urgent", "high", "low")


@pytest.mark.requires("priorities", "follows_clock")
async def test_inside_a_queue_priority_then_run_at_then_enqueue_order(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        await jobs.add("p100-first", "q")
        await jobs.delay(5).add("p100-delayed", "q")
        await jobs.add("p100-second", "q")
        await jobs.priority(1).add("p1", "q")
        await jobs.priority(200).add("p200", "q")
        clock.advance(10)
        got = [job.body for job in await jobs.timeout(0).get_many("q", count=10)]
        # The delayed job's run_at is later than both undelayed ones at priority 100.
        assert got == ["p1", "p100-first", "p100-second", "p100-delayed", "p200"]


@pytest.mark.requires("leftmost_first")
async def test_get_many_fills_from_queues_left_to_right(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        await jobs.add_many(["a1", "a2"], "a")
        await jobs.add_many(["b1", "b2"], "b")
        got = await jobs.timeout(0).get_many("a", "b", count=3)
        assert [job.body for job in got] == ["a1", "a2", "b1"]
        assert await jobs.ack_many(got) == 3
        assert await jobs.qlen("b") == 1


@pytest.mark.requires("follows_clock")
async def test_delay_keeps_a_job_scheduled_until_due(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        job_id = await jobs.delay(30).add("later", "q")
        assert (await jobs.show(job_id)).state is JobState.SCHEDULED
        assert await jobs.qlen("q") == 0
        assert await jobs.timeout(0).get_many("q") == []
        clock.advance(29.5)
        assert await jobs.timeout(0).get_many("q") == []
        clock.advance(0.5)
        assert await jobs.qlen("q") == 1
        assert (await jobs.timeout(0).get("q")).id == job_id


@pytest.mark.requires("follows_clock")
async def test_ttl_deletes_a_job_that_is_not_done(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        queued = await jobs.ttl(60).add("short-lived", "q")
        leased_id = await jobs.ttl(60).add("leased", "r")
        leased = await jobs.timeout(0).get("r")
        assert leased.id == leased_id
        kept = await jobs.add("kept", "q")
        clock.advance(60)
        for gone in (queued, leased_id):
            with pytest.raises(JobNotFound):
                await jobs.show(gone)
        assert await jobs.qlen("q") == 1
        assert (await jobs.timeout(0).get("q", "r")).id == kept


async def test_max_len_refuses_adds_and_keeps_the_queue(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        capped = jobs.max_len(2)
        await capped.add("1", "q")
        await capped.add("2", "q")
        with pytest.raises(QueueFull) as refused:
            await capped.add("3", "q")
        assert refused.value.queue == "q"
        assert refused.value.max_len == 2
        with pytest.raises(QueueFull):
            await jobs.max_len(3).add_many(["3", "4"], "q")  # all or nothing
        assert await jobs.qlen("q") == 2
        await jobs.add("uncapped", "q")  # the limit is per call, not per queue
        assert await jobs.qlen("q") == 3


@pytest.mark.requires("keeps_given_ids", "results")
async def test_adding_ids_the_store_holds_adds_nothing(store_url: str, clock: ManualClock) -> None:
    # What a store does when it runs an add again because its reply was lost after the add
    # committed: the same jobs once more, after a worker leased one and finished another.
    async with connect_async(store_url, clock=clock) as jobs:
        now = clock.now()
        batch = [
            Job(new_job_id(None, 300.0), "q", body, created_at=now, run_at=now)
            for body in (b"done", b"leased", b"queued")
        ]
        other = Job(new_job_id(None, 300.0), "r", b"other queue", created_at=now, run_at=now)
        await jobs.store.add([*batch, other], None)
        done, leased = await jobs.timeout(0).get_many("q", count=2)
        await jobs.ack(done, "result")
        # The shapes of add (mixed queues, a uniform batch, one job), each run again.
        await jobs.store.add([*batch, other], None)
        await jobs.store.add(batch, None)
        await jobs.store.add(batch[:1], None)
        assert await jobs.wait(done.id, timeout=0) == "result"
        assert (await jobs.show(done.id)).state is JobState.DONE
        assert (await jobs.show(leased.id)).attempts == 1
        assert [job.body for job in await jobs.timeout(0).get_many("q", count=9)] == [b"queued"]
        assert await jobs.qlen("r") == 1
        assert (await jobs.stats()).by_queue()["q"].done == 1


async def test_pause_stops_delivery_and_resume_restarts_it(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        await jobs.add("held", "paused")
        await jobs.add("other", "open")
        await jobs.pause("paused")
        await jobs.add("accepted while paused", "paused")
        assert (await jobs.timeout(0).get("paused", "open")).body == "other"
        assert await jobs.timeout(0).get_many("paused") == []
        assert (await jobs.stats()).paused == {"paused"}
        await jobs.resume("paused")
        assert (await jobs.timeout(0).get("paused")).body == "held"
        assert (await jobs.stats()).paused == frozenset()


async def test_peek_and_qlen_do_not_lease(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        await jobs.add_many(["a", "b", "c"], "q")
        assert [job.body for job in await jobs.peek("q", 2)] == ["a", "b"]
        assert await jobs.qlen("q") == 3
        assert await jobs.qlen("empty") == 0
        assert (await jobs.timeout(0).get("q")).body == "a"


async def test_odd_queue_names_are_kept_exactly(store_url: str, clock: ManualClock) -> None:
    names = ["with space", "ünïcödé-队列", "{tag}", "a'b\"c;--", "*", "x" * 200, "🚀"]
    async with connect_async(store_url, clock=clock) as jobs:
        for name in names:
            await jobs.add(name, name)
        for name in names:
            job = await jobs.timeout(0).get(name)
            assert (job.queue, job.body) == (name, name)
