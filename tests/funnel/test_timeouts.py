"""``timeout=`` on ``get``, ``get_many`` and funnels, beside the fluent ``timeout(t)``: the
argument wins over the client's option, both flavors, every store that keeps done jobs.

Waits are bounded from above only (hang guards), never timed from below.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from disquette import JobState, ManualClock, connect, connect_async
from disquette.errors import InvalidOption, Timeout

#: Short fetches, so that a funnel notices empty queues quickly.
FETCH = 0.05
#: Hang guard: what would otherwise block for ever must return well within this.
GUARD = 10.0


async def test_get_and_get_many_take_a_timeout_async(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        started = time.monotonic()
        # The client blocks for ever by default: the argument says not to wait.
        with pytest.raises(Timeout) as raised:
            await jobs.get("q", timeout=0)
        assert raised.value.seconds == 0
        with pytest.raises(Timeout) as raised:
            await jobs.get("q", "r", timeout=0.05)
        assert raised.value.seconds == 0.05
        assert await jobs.get_many("q", count=5, timeout=0) == []
        assert await jobs.get_many("q", timeout=0.05) == []
        assert time.monotonic() - started < GUARD

        # The argument wins over the client's option, both ways.
        job_id = await jobs.add("late", "q")
        assert (await jobs.timeout(30).get("q", timeout=0)).id == job_id
        nowait = jobs.timeout(0)

        async def add_soon() -> str:
            await asyncio.sleep(0.1)
            return await jobs.add("soon", "r")

        adder = asyncio.create_task(add_soon())
        got = await nowait.get_many("q", "r", count=3, timeout=GUARD)
        assert [job.id for job in got] == [await adder]
        adder = asyncio.create_task(add_soon())
        assert (await nowait.get("r", timeout=GUARD)).id == await adder

        for bad in (-1, float("nan"), "1", True):
            with pytest.raises(InvalidOption):
                await jobs.get("q", timeout=bad)  # type: ignore[arg-type]
            with pytest.raises(InvalidOption):
                await jobs.get_many("q", timeout=bad)  # type: ignore[arg-type]


def test_get_and_get_many_take_a_timeout_sync(store_url: str, clock: ManualClock) -> None:
    with connect(store_url, clock=clock) as jobs:
        with pytest.raises(Timeout):
            jobs.get("q", timeout=0)
        assert jobs.get_many("q", "r", count=2, timeout=0.05) == []
        nowait = jobs.timeout(0)
        timer = threading.Timer(0.1, lambda: jobs.add("soon", "q"))
        timer.start()
        try:
            assert nowait.get("q", timeout=GUARD).body == "soon"
        finally:
            timer.join()
        with pytest.raises(InvalidOption):
            jobs.get_many("q", timeout=-1)


async def test_a_funnel_with_a_timeout_ends_once_the_queues_stay_empty(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        ids = await jobs.add_many(range(25), "q")
        # timeout=0: everything that is there, then the end (fetches of 10 at a time).
        async with jobs.funnel("q", fetch_count=10, fetch_timeout=FETCH, timeout=0) as funnel:
            async with asyncio.timeout(GUARD):
                received = [job.id async for job in funnel]
            assert received == ids
            # The funnel stays open: iterating again waits again.
            later = await jobs.add("later", "q")
            async with asyncio.timeout(GUARD):
                assert [job.id async for job in funnel] == [later]
        # The client's option counts as the argument would.
        await jobs.add("one", "q")
        async with jobs.timeout(0.1).funnel("q", fetch_timeout=FETCH) as funnel:
            assert funnel.timeout == 0.1
            async with asyncio.timeout(GUARD):
                assert [job.body async for job in funnel] == ["one"]
        # The argument wins over the option.
        async with jobs.timeout(30).funnel("q", fetch_timeout=FETCH, timeout=0) as funnel:
            async with asyncio.timeout(GUARD):
                assert [job async for job in funnel] == []
        for job_id in ids:
            assert (await jobs.show(job_id)).state is JobState.DONE
        with pytest.raises(InvalidOption):
            jobs.funnel("q", timeout=-1)


def test_a_sync_funnel_with_a_timeout_ends_once_the_queues_stay_empty(
    store_url: str, clock: ManualClock
) -> None:
    with connect(store_url, clock=clock) as jobs:
        ids = jobs.add_many(["a", "b", "c"], "q")
        started = time.monotonic()
        with jobs.funnel("q", fetch_count=2, fetch_timeout=FETCH, timeout=0.1) as funnel:
            assert [job.id for job in funnel] == ids
        assert time.monotonic() - started < GUARD
