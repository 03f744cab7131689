"""The schedule registry: schedulers register periodic jobs' definitions, the CLI and
dashboards list them, pause and resume them by name, and fire one now from its stored
definition alone (no app code), on every store that keeps one."""

from __future__ import annotations

import dataclasses

import pytest

from disquette import ManualClock, connect_async
from disquette.errors import ScheduleNotFound
from disquette.periodic import Periodic, periodic
from disquette.stores.types import ScheduleInfo

from ._fixtures import clock_fixture, store_url_fixture  # noqa: F401  # this module's fixtures

pytestmark = pytest.mark.requires("schedules")


def _periodics() -> list[Periodic]:
    return [
        periodic("*/5 * * * *", name="report", queue="reports", type="report", body={"n": 1}),
        periodic(
            90,
            name="ping",
            queue="pings",
            body=b"\x00\xff",
            catch_up=3,
            priority=2,
            max_attempts=4,
            retry_after=7.5,
        ),
        periodic("@daily", name="oslo", queue="q", tz="Europe/Oslo", catch_up="none"),
    ]


async def test_register_and_list(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        assert await jobs.schedules() == []
        await jobs.store.register_schedules([item.info() for item in _periodics()])
        listed = await jobs.schedules()
        assert [info.name for info in listed] == ["oslo", "ping", "report"]
        assert listed == sorted((item.info() for item in _periodics()), key=lambda i: i.name)
        ping = listed[1]
        assert (ping.spec, ping.body, ping.catch_up, ping.paused) == (
            "90.0",
            b"\x00\xff",
            "3",
            False,
        )
        assert ping.options == {"priority": 2, "retry_after": 7.5, "max_attempts": 4}
        assert [Periodic.from_info(info) for info in listed] == sorted(
            _periodics(), key=lambda item: item.name
        )


async def test_register_again_updates_and_keeps_paused(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        await jobs.store.register_schedules([item.info() for item in _periodics()])
        await jobs.pause_schedule("report")
        changed = periodic("0 * * * *", name="report", queue="other")
        await jobs.store.register_schedules([dataclasses.replace(changed.info(), paused=False)])
        await jobs.store.register_schedules([])
        report = {info.name: info for info in await jobs.schedules()}["report"]
        assert (report.spec, report.queue, report.paused) == ("0 * * * *", "other", True)
        await jobs.flush()  # jobs go, definitions stay
        assert len(await jobs.schedules()) == 3


async def test_pause_and_resume(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        await jobs.store.register_schedules([item.info() for item in _periodics()])
        await jobs.pause_schedule("ping")
        await jobs.pause_schedule("ping")  # pausing twice is no error
        paused = {info.name: info.paused for info in await jobs.schedules()}
        assert paused == {"oslo": False, "ping": True, "report": False}
        await jobs.resume_schedule("ping")
        assert not any(info.paused for info in await jobs.schedules())
        assert await jobs.store.pause_schedule("ping", True) is True


async def test_unknown_name(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        await jobs.store.register_schedules([_periodics()[0].info()])
        assert await jobs.store.pause_schedule("nope", True) is False
        for call in (jobs.pause_schedule, jobs.resume_schedule, jobs.fire_schedule):
            with pytest.raises(ScheduleNotFound, match="no schedule named 'nope'"):
                await call("nope")
        assert [info.name for info in await jobs.schedules()] == ["report"]


async def test_fire_now_from_the_stored_definition(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        await jobs.store.register_schedules([item.info() for item in _periodics()])
        await jobs.pause_schedule("ping")  # fire now is a request: paused or not
        first = await jobs.fire_schedule("ping")
        second = await jobs.fire_schedule("ping")
        assert first != second  # fresh ids: each request adds a job
        job = await jobs.show(first)
        assert (job.queue, job.body, job.priority, job.max_attempts) == ("pings", b"\x00\xff", 2, 4)
        assert (job.run_at, job.retry_after) == (clock.now(), 7.5)
        assert await jobs.qlen("pings") == 2
        report = await jobs.show(await jobs.fire_schedule("report"))
        assert (report.type, report.body, report.queue) == ("report", {"n": 1}, "reports")


def test_definition_round_trip() -> None:
    for item in _periodics():
        info = dataclasses.replace(item.info(), paused=True)
        assert ScheduleInfo.from_definition(info.name, info.definition(), True) == info
