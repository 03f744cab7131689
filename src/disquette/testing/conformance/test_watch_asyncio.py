"""``watch()`` on every store, asyncio flavour (see ``test_watch.py``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from disquette import ManualClock, connect_async
from disquette.stores.types import QueueEvent

from ._fixtures import clock_fixture, store_url_fixture  # noqa: F401  # this module's fixtures


async def _add_forever(url: str, queue: str) -> None:
    async with connect_async(url) as other:
        for i in range(300):  # a hang guard: 60 s of adds at most
            await asyncio.sleep(0.2)
            await other.add(i, queue)


async def _until(events: AsyncIterator[QueueEvent], queue: str) -> list[QueueEvent]:
    """The events up to the first of ``queue`` (see ``test_watch.py``)."""
    seen = []
    async for event in events:
        seen.append(event)
        if event == QueueEvent(queue):
            return seen
    raise AssertionError("watch() ended")


async def test_watch_reports_changed_queues(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        await jobs.add("seed", "quiet")
        events = jobs.watch(["busy", "quiet"], debounce=0.01, refresh=0.1)
        adder = asyncio.create_task(_add_forever(store_url, "busy"))
        try:
            seen = await _until(events, "busy")
        finally:
            adder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await adder
            await events.aclose()  # type: ignore[attr-defined]
        assert set(seen) <= {QueueEvent("busy"), QueueEvent("quiet")}


async def test_watch_all_queues_finds_new_ones(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        events = jobs.watch(debounce=0.01, refresh=0.1)
        adder = asyncio.create_task(_add_forever(store_url, "fresh"))
        try:
            await _until(events, "fresh")
        finally:
            adder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await adder
            await events.aclose()  # type: ignore[attr-defined]
