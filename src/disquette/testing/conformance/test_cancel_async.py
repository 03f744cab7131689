"""Cancellation and progress, on every store: a pending job ends ``cancelled`` at once, an
active one gets a cancel request its holder learns of, and the holder's progress is kept."""

from __future__ import annotations

import pytest

from disquette import JobState, ManualClock, connect_async
from disquette._concurrency import async_sleep
from disquette.errors import (
    BodyNotSerializable,
    InvalidState,
    JobCancelled,
    JobNotFound,
    LeaseLost,
    ProgressTooLarge,
)
from disquette.job import MAX_PROGRESS_BYTES
from disquette.stores.types import CANCEL_CHANNEL

from . import UNKNOWN_ID
from ._fixtures import clock_fixture, store_url_fixture  # noqa: F401  # this module's fixtures


@pytest.mark.requires("cancellation")
async def test_scheduled_and_queued_jobs_are_cancelled_at_once(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        queued = await jobs.add("now", "q")
        scheduled = await jobs.delay(60).add("later", "q")
        assert await jobs.cancel(queued) is JobState.CANCELLED
        assert await jobs.cancel(scheduled) is JobState.CANCELLED
        for job_id in (queued, scheduled):
            job = await jobs.show(job_id)
            assert job.state is JobState.CANCELLED
            assert job.finished_at is not None
            with pytest.raises(JobCancelled):
                await jobs.wait(job_id, timeout=0)
        clock.advance(120)
        assert await jobs.qlen("q") == 0
        assert await jobs.timeout(0).get_many("q") == []


@pytest.mark.requires("cancellation", "tracks_deliveries")
async def test_an_active_job_gets_a_request_its_holder_ends_cancelled(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        job_id = await jobs.add("long", "q")
        job = await jobs.timeout(0).get("q")
        seen: list[bool] = []
        unsubscribe = jobs.store.wakeups.subscribe([CANCEL_CHANNEL], lambda: seen.append(True))
        try:
            assert await jobs.cancel(job_id) is JobState.ACTIVE
            for _ in range(1000):  # the request is announced on the cancel channel
                if seen:
                    break
                await async_sleep(0.01)
            assert seen
        finally:
            unsubscribe()
        shown = await jobs.show(job_id)
        assert shown.state is JobState.ACTIVE
        assert shown.cancel_requested
        assert await jobs.cancel(job_id) is JobState.ACTIVE  # asking again changes nothing
        with pytest.raises(JobCancelled) as refused:
            await jobs.working(job)
        assert refused.value.requested
        with pytest.raises(JobCancelled):
            await jobs.progress(job, 0.5)
        await jobs.ack_cancelled(job)
        assert (await jobs.show(job_id)).state is JobState.CANCELLED
        with pytest.raises(JobCancelled):
            await jobs.wait(job_id, timeout=0)
        await jobs.ack(job)  # a cancelled job stays cancelled
        assert (await jobs.show(job_id)).state is JobState.CANCELLED


@pytest.mark.requires("cancellation", "results", "failures")
async def test_finished_and_unknown_jobs_cannot_be_cancelled(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        done, failed, cancelled = [await jobs.max_attempts(1).add(n, "q") for n in range(3)]
        await jobs.ack(await jobs.timeout(0).get("q"))
        await jobs.fail(await jobs.timeout(0).get("q"), "boom")
        await jobs.cancel(cancelled)
        for job_id, state in ((done, "done"), (failed, "failed"), (cancelled, "cancelled")):
            with pytest.raises(InvalidState) as refused:
                await jobs.cancel(job_id)
            assert refused.value.state == state
        with pytest.raises(JobNotFound):
            await jobs.cancel(UNKNOWN_ID)


@pytest.mark.requires("cancellation")
async def test_stats_count_cancelled_jobs(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        ids = [await jobs.type("mail").add(n, "q") for n in range(3)]
        await jobs.cancel(ids[0])
        await jobs.cancel(ids[1])
        row = (await jobs.stats()).by_queue()["q"]
        assert (row.cancelled, row.queued) == (2, 1)
        assert (await jobs.stats()).by_type()["mail"].cancelled == 2


@pytest.mark.requires("cancellation", "follows_clock")
async def test_cancelled_jobs_are_kept_for_their_result_ttl(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        job_id = await jobs.result_ttl(60).add("x", "q")
        await jobs.cancel(job_id)
        clock.advance(59)
        assert (await jobs.show(job_id)).state is JobState.CANCELLED
        clock.advance(2)
        with pytest.raises(JobNotFound):
            await jobs.show(job_id)


@pytest.mark.requires("progress", "follows_clock")
async def test_progress_round_trips_and_extends_the_lease(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        job_id = await jobs.retry_after(30).add("x", "q")
        job = await jobs.timeout(0).get("q")
        assert job.progress is None
        clock.advance(20)
        deadline = await jobs.progress(job, 0.25)
        assert deadline == pytest.approx(clock.now() + 30)
        assert (await jobs.show(job_id)).progress == 0.25
        report = {"done": 3, "of": 10, "step": "résumé"}
        await jobs.progress(job, report)
        shown = await jobs.show(job_id)
        assert shown.progress == report
        assert shown.lease_until == pytest.approx(clock.now() + 30)
        clock.advance(25)  # past the first lease: the progress extended it
        assert (await jobs.show(job_id)).state is JobState.ACTIVE
        with pytest.raises(ProgressTooLarge):
            await jobs.progress(job, "x" * MAX_PROGRESS_BYTES)
        with pytest.raises(BodyNotSerializable):
            await jobs.progress(job, object())
        assert (await jobs.show(job_id)).progress == report


@pytest.mark.requires("progress", "tracks_deliveries", "follows_clock")
async def test_progress_of_an_older_delivery_is_refused(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        job_id = await jobs.retry_after(10).add("x", "q")
        first = await jobs.timeout(0).get("q")
        clock.advance(11)
        second = await jobs.timeout(0).get("q")
        with pytest.raises(LeaseLost):
            await jobs.progress(first, 1)
        await jobs.progress(second, 2)
        assert (await jobs.show(job_id)).progress == 2
        with pytest.raises(LeaseLost):
            await jobs.ack_cancelled(first)


@pytest.mark.requires("progress")
async def test_progress_needs_a_held_job(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        job_id = await jobs.add("x", "q")
        with pytest.raises(InvalidState):
            await jobs.progress(job_id, 1)
        with pytest.raises(JobNotFound):
            await jobs.progress(UNKNOWN_ID, 1)
