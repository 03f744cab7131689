"""Schedulers and the store's schedule registry: a scheduler registers its schedules at
start, fires nothing for a paused one, and fires its next slot once it is resumed."""

from __future__ import annotations

from pathlib import Path

import pytest

from disquette import ManualClock, connect_async
from disquette.periodic import periodic
from disquette.worker.scheduler import Scheduler
from tests.conformance.conftest import STORES

INTERVAL = 60.0
START = 1_700_000_010.0


@pytest.mark.parametrize("store", ["memory", "sqlite"])
async def test_a_paused_schedule_fires_nothing_until_resumed(store: str, tmp_path: Path) -> None:
    clock = ManualClock(START)
    async with connect_async(STORES[store](tmp_path), clock=clock) as client:
        tick = periodic(INTERVAL, name="tick", queue="ticks")
        other = periodic(INTERVAL, name="other", queue="others")
        scheduler = Scheduler(client, [tick, other])
        assert await scheduler.fire_due() == 2  # the latest slot of each (catch_up latest)
        assert [info.name for info in await client.schedules()] == ["other", "tick"]
        await client.pause_schedule("tick")
        for _ in range(3):
            clock.advance(INTERVAL)
            assert await scheduler.fire_due() == 1  # "other" only
        # A scheduler starting meanwhile registers the definition again: still paused.
        late = Scheduler(client, [tick])
        assert await late.fire_due() == 0
        assert await client.qlen("ticks") == 1
        await client.resume_schedule("tick")
        # The slots due while paused are skipped, not caught up...
        assert await scheduler.fire_due() == 0
        assert await client.qlen("ticks") == 1
        # ... and the next one fires.
        clock.advance(INTERVAL)
        assert await scheduler.fire_due() == 2
        assert await late.fire_due() == 1  # the same slot: the store holds one job
        assert await client.qlen("ticks") == 2
        assert await client.qlen("others") == 5
