"""Funnels on the asyncio client: order, acking on hand-over, put, requeue, and closing
mid-stream without losing or duplicating a job, on every store of the conformance suite."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from disquette import AsyncClient, Job, JobState, ManualClock, connect_async
from disquette.errors import ClientClosed, InvalidOption, InvalidQueueName
from disquette.funnel_async import AsyncFunnel

#: Short fetches, so that closing (which waits for a fetch in flight) is quick.
FETCH = 0.05
#: Hang guard: a broken funnel fails the test instead of blocking it for ever.
GUARD = 30.0


async def take(funnel: AsyncFunnel, count: int) -> list[Job]:
    """The next ``count`` jobs the funnel hands over."""
    received: list[Job] = []
    async with asyncio.timeout(GUARD):
        async for job in funnel:
            received.append(job)
            if len(received) == count:
                break
    return received


async def until(predicate: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``predicate`` (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + GUARD
    while True:
        if await predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting until {what}")
        await asyncio.sleep(0.01)


async def active(jobs: AsyncClient, queue: str) -> int:
    row = (await jobs.stats()).by_queue().get(queue)
    return 0 if row is None else row.active


async def test_jobs_come_leftmost_queue_first_in_order_and_acked(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        for n in range(5):
            await jobs.add(f"high-{n}", "high")
            await jobs.add(f"urgent-{n}", "urgent")
        async with AsyncFunnel(
            jobs, "urgent", "high", fetch_count=3, fetch_timeout=FETCH, buffer=4
        ) as funnel:
            received = await take(funnel, 10)
        assert [job.body for job in received] == [f"urgent-{n}" for n in range(5)] + [
            f"high-{n}" for n in range(5)
        ]
        for job in received:
            assert job.state is JobState.DONE
            assert (await jobs.show(job.id)).state is JobState.DONE
        assert await jobs.qlen("urgent") == await jobs.qlen("high") == 0


async def test_close_mid_stream_loses_nothing_and_duplicates_nothing(
    store_url: str, clock: ManualClock
) -> None:
    total, taken, buffer = 120, 37, 25
    async with connect_async(store_url, clock=clock) as jobs:
        ids = await jobs.add_many(range(total), "q")
        async with AsyncFunnel(
            jobs, "q", fetch_count=10, fetch_timeout=FETCH, buffer=buffer
        ) as funnel:
            handed = [job.id for job in await take(funnel, taken)]

            async def buffer_full() -> bool:
                return await active(jobs, "q") == buffer

            # Close while the buffer holds fetched, leased, undelivered jobs.
            await until(buffer_full, "the fetcher fills the buffer")
        assert handed == ids[:taken]
        rest = ids[taken:]
        for job_id in handed:
            assert (await jobs.show(job_id)).state is JobState.DONE
        left = [await jobs.show(job_id) for job_id in rest]
        assert all(job.state is JobState.QUEUED for job in left)
        # The buffered jobs came back through NACK, not through their leases running out.
        assert sum(job.nacks for job in left) == buffer
        assert sum(job.additional_deliveries for job in left) == 0
        assert await jobs.qlen("q") == total - taken

        # NACKed jobs keep their place: a new funnel gets the rest, in order, once each.
        async with AsyncFunnel(jobs, "q", fetch_count=10, fetch_timeout=FETCH) as funnel:
            assert [job.id for job in await take(funnel, len(rest))] == rest
        assert await jobs.qlen("q") == 0
        assert await active(jobs, "q") == 0


async def test_put_sends_with_the_client_options_and_feeds_a_funnel(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        client = jobs.priority(7).type("reply")
        async with AsyncFunnel(client, "in", fetch_timeout=FETCH) as funnel:
            out_id = await funnel.put({"n": 1}, "out")
            in_id = await funnel.put(b"\x00loop", "in")
            (looped,) = await take(funnel, 1)
        out = await jobs.show(out_id)
        assert (out.queue, out.body, out.priority, out.type) == ("out", {"n": 1}, 7, "reply")
        assert out.state is JobState.QUEUED
        assert (looped.id, looped.body, looped.state) == (in_id, b"\x00loop", JobState.DONE)
        with pytest.raises(ClientClosed):
            await funnel.put("late", "out")
        with pytest.raises(ClientClosed):
            await funnel.requeue(looped)


async def test_requeue_puts_a_handed_over_job_back_as_a_new_job(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        client = jobs.type("t").priority(5).retry_after(30).max_attempts(3)
        bodies: list[object] = [b"\x00\xff", "texte", {"k": [1]}]
        for body in bodies:
            await client.add(body, "q")
        async with AsyncFunnel(jobs, "q", fetch_count=3, fetch_timeout=FETCH) as funnel:
            (first,) = await take(funnel, 1)
            new_id = await funnel.requeue(first)
            assert new_id != first.id
            assert (await jobs.show(first.id)).state is JobState.DONE
            copy = await jobs.show(new_id)
            # Queued, or already leased by the fetcher, which had room for it.
            assert copy.state in (JobState.QUEUED, JobState.ACTIVE)
            assert (copy.queue, copy.raw_body, copy.encoding) == (
                first.queue,
                first.raw_body,
                first.encoding,
            )
            assert (copy.type, copy.priority, copy.retry_after, copy.max_attempts) == (
                "t",
                5,
                30,
                3,
            )
            assert copy.nacks == 0
            # Behind the jobs already waiting at its priority.
            received = await take(funnel, 3)
        assert [job.body for job in received] == [*bodies[1:], bodies[0]]
        assert received[-1].id == new_id


async def test_close_is_idempotent_ends_iteration_and_wakes_waiting_consumers(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        funnel = AsyncFunnel(jobs, "empty", fetch_timeout=FETCH)
        async with funnel:

            async def consume() -> list[Job]:
                return [job async for job in funnel]

            consumers = [asyncio.create_task(consume()) for _ in range(3)]
            await asyncio.sleep(0)  # let them start waiting (closing works either way)
            await funnel.close()
            await funnel.close()
            assert funnel.closed
            async with asyncio.timeout(GUARD):
                assert await asyncio.gather(*consumers) == [[], [], []]
        await funnel.close()
        assert [job async for job in funnel] == []

        job_id = await jobs.add("kept", "q")
        never_started = AsyncFunnel(jobs, "q", fetch_timeout=FETCH)
        await never_started.close()
        assert [job async for job in never_started] == []
        assert (await jobs.show(job_id)).state is JobState.QUEUED


async def test_a_buffered_job_whose_lease_ran_out_is_fetched_again_not_handed_twice(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        first, second = await jobs.retry_after(10).add_many(["a", "b"], "q")
        async with AsyncFunnel(jobs, "q", fetch_count=2, fetch_timeout=FETCH) as funnel:
            (got,) = await take(funnel, 1)
            assert got.id == first
            # "b" waits in the buffer (both came in one fetch) while its lease runs out:
            # the store may deliver it elsewhere, so the funnel must not hand it over.
            clock.advance(11)
            (again,) = await take(funnel, 1)
        assert again.id == second
        assert again.attempts == 2
        assert (await jobs.show(second)).state is JobState.DONE


async def test_a_fetcher_error_reaches_the_consumer(sqlite_url: str) -> None:
    jobs = connect_async(sqlite_url)
    funnel = AsyncFunnel(jobs, "q", fetch_timeout=FETCH)
    async with funnel:
        await jobs.close()  # the store goes away under the fetcher
        async with asyncio.timeout(GUARD):
            with pytest.raises(ClientClosed):
                await anext(funnel)
            with pytest.raises(ClientClosed):  # and again: it does not go silent
                await anext(funnel)


async def test_bad_arguments_are_refused() -> None:
    async with connect_async("memory://") as jobs:
        with pytest.raises(InvalidQueueName):
            AsyncFunnel(jobs)
        with pytest.raises(InvalidQueueName):
            AsyncFunnel(jobs, "")
        for bad in (0, -1, 10_001, 2.0, True):
            with pytest.raises(InvalidOption):
                AsyncFunnel(jobs, "q", fetch_count=bad)  # type: ignore[arg-type]
            with pytest.raises(InvalidOption):
                AsyncFunnel(jobs, "q", buffer=bad)  # type: ignore[arg-type]
        for timeout in (0, -1.0, None, float("nan"), float("inf"), "1"):
            with pytest.raises(InvalidOption):
                AsyncFunnel(jobs, "q", fetch_timeout=timeout)  # type: ignore[arg-type]
        funnel = AsyncFunnel(jobs, "a", "b", fetch_count=4)
        assert (funnel.queues, funnel.fetch_count, funnel.buffer) == (["a", "b"], 4, 4)
        assert "open" in repr(funnel)
