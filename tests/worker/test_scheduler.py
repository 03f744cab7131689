"""Schedulers against real stores: one job per slot however many schedulers race."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from pathlib import Path

import pytest

from disquette import App, Job, JobState, ManualClock, connect, connect_async
from disquette.errors import NotSupported
from disquette.periodic import periodic
from disquette.worker.scheduler import Scheduler
from tests.conformance.conftest import STORES

INTERVAL = 60.0
START = 1_700_000_000.0


async def _race(url: str, slots: int, schedulers: int) -> None:
    """One process: its own clock, ``schedulers`` schedulers stepping it slot by slot."""
    clock = ManualClock(START)
    async with connect_async(url, clock=clock) as client:
        item = periodic(INTERVAL, name="tick", queue="ticks")
        runners = [Scheduler(client, [item]) for _ in range(schedulers)]
        for _ in range(slots):
            clock.advance(INTERVAL)
            await asyncio.gather(*(runner.fire_due() for runner in runners))


def _process(url: str, slots: int) -> None:
    asyncio.run(_race(url, slots, 4))


@pytest.mark.slow
def test_three_processes_of_four_schedulers_make_one_job_per_slot(tmp_path: Path) -> None:
    # A ManualClock cannot cross processes: each process moves its own over the same 100
    # slots, and all of them add into one SQLite file, so their adds of a slot race.
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_process, args=(url, 100)) for _ in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    with connect(url) as jobs:
        assert jobs.qlen("ticks") == 100


@pytest.mark.parametrize("store", ["memory", "sqlite", "postgres", "redis"])
async def test_per_slot_dedupe_holds_on_every_store(store: str, tmp_path: Path) -> None:
    url = STORES[store](tmp_path)
    clock = ManualClock(START)
    async with connect_async(url, clock=clock) as client:
        item = periodic(INTERVAL, name=f"dedupe-{store}", queue="ticks", catch_up=3)
        runners = [Scheduler(client, [item]) for _ in range(4)]
        for _ in range(10):
            clock.advance(INTERVAL)
            await asyncio.gather(*(runner.fire_due() for runner in runners))
        # 3 caught up at the start, then one per step: 12 slots, one job each.
        assert await client.qlen("ticks") == 12
        job = await client.timeout(0).get("ticks")
        await client.ack(job)
        late = Scheduler(client, [item])
        await late.fire_due()  # a scheduler starting now finds every slot it would fire
        assert await client.qlen("ticks") == 11
        assert (await client.show(job.id)).state is JobState.DONE


async def test_disque_store_refuses_periodic_jobs(tmp_path: Path) -> None:
    async with connect_async(STORES["disque"](tmp_path)) as client:
        with pytest.raises(NotSupported, match="assigns job ids"):
            Scheduler(client, [periodic(60, name="x", queue="q")])


def test_worker_runs_a_periodic_handler_on_sqlite(tmp_path: Path) -> None:
    app = App(f"sqlite:///{tmp_path / 'jobs.db'}")
    ran = threading.Event()
    bodies: list[object] = []

    @app.periodic(1, queue="beat", body={"n": 1})
    def beat(job: Job) -> str:
        bodies.append(job.body)
        ran.set()
        return "ok"

    worker = app.worker(concurrency=1, grace=1)
    worker.start()
    try:
        assert ran.wait(60)
    finally:
        worker.stop()
    assert bodies[0] == {"n": 1}
    with connect(app.url) as jobs:
        done = [job for job in jobs.store.scan(0, 100)[1] if job.type == "beat"]
        assert done
        assert all(job.id.startswith("D-") for job in done)


def test_plain_periodic_call_and_bad_input(tmp_path: Path) -> None:
    app = App(f"sqlite:///{tmp_path / 'jobs.db'}")
    made = app.periodic("@daily", type="cleanup", queue="maint", tz="Europe/Oslo")
    assert made.type == "cleanup"
    assert made.name == "cleanup"
    with pytest.raises(ValueError, match="schedule"):
        app.periodic("not cron", type="x")
