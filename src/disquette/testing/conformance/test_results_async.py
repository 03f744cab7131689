"""Bodies in, results out: what an ack keeps and ``wait`` returns, on every store."""

from __future__ import annotations

import pytest

from disquette import JobState, ManualClock, connect_async
from disquette.errors import (
    BodyNotSerializable,
    InvalidOption,
    JobNotFound,
    Timeout,
)

from . import UNKNOWN_ID
from ._fixtures import clock_fixture, store_url_fixture  # noqa: F401  # this module's fixtures


@pytest.mark.requires("results")
async def test_bodies_round_trip_and_ack_result_is_waited(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        bodies = [b"\x00raw\xff", "texte é", {"to": ["ada"], "n": 1}, [1, 2], 3, None]
        ids = [await jobs.add(body, "q") for body in bodies]
        for job_id, body in zip(ids, bodies, strict=True):
            job = await jobs.timeout(0).get("q")
            assert job.id == job_id
            assert job.body == body
            assert job.state is JobState.ACTIVE
            assert job.attempts == 1
            await jobs.ack(job, {"seen": job_id})
            assert await jobs.wait(job_id, timeout=0) == {"seen": job_id}
            assert (await jobs.show(job_id)).state is JobState.DONE


async def test_ack_tells_which_ids_became_done(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        first, second, third = [await jobs.add(n, "q") for n in range(3)]
        await jobs.timeout(0).get_many("q", count=3)
        await jobs.ack(third)
        store = jobs.store
        # An unknown id, an id twice and an already done id: only the first of each counts.
        done = await store.ack([first, UNKNOWN_ID, second, first, third])
        assert sorted(done) == sorted([first, second])
        assert await store.ack([first, second]) == []
        assert await jobs.ack_many([first, second, third]) == 0


@pytest.mark.requires("results")
async def test_ack_many_keeps_each_jobs_result(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        ids = [await jobs.add(n, "q") for n in range(4)]
        await jobs.timeout(0).get_many("q", count=4)
        results = [{"sent": 0}, None, "two", b"\x00three"]
        # An id given twice is acked once, with its first result.
        assert await jobs.ack_many([*ids, ids[0]], [*results, "again"]) == 4
        for job_id, result in zip(ids, results, strict=True):
            assert await jobs.wait(job_id, timeout=0) == result
        with pytest.raises(InvalidOption):
            await jobs.ack_many(ids, [None])
        with pytest.raises(BodyNotSerializable):
            await jobs.ack_many(ids, [None, None, None, object()])


@pytest.mark.requires("results", "follows_clock")
async def test_wait_times_out_and_done_jobs_are_pruned(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        job_id = await jobs.result_ttl(60).add("x", "q")
        with pytest.raises(Timeout):
            await jobs.wait(job_id, timeout=0.05)
        await jobs.ack(await jobs.timeout(0).get("q"), "result")
        assert await jobs.wait(job_id) == "result"
        clock.advance(60)
        with pytest.raises(JobNotFound):
            await jobs.wait(job_id)
