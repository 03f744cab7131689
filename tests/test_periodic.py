"""Slots of schedules: cron, aliases, intervals, DST both ways in Europe/Oslo, catch-up."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from disquette.errors import InvalidInput, InvalidSchedule, UnknownTimeZone
from disquette.periodic import Schedule, periodic

OSLO = ZoneInfo("Europe/Oslo")
UTC = ZoneInfo("UTC")


def _at(*fields: int, zone: ZoneInfo = OSLO, fold: int = 0) -> float:
    return datetime(*fields, tzinfo=zone, fold=fold).timestamp()  # type: ignore[arg-type,misc]


def _slots(schedule: Schedule, start: float, count: int) -> list[str]:
    zone = ZoneInfo(schedule.tz)
    out, when = [], start
    for _ in range(count):
        when = schedule.next_after(when)
        out.append(datetime.fromtimestamp(when, zone).strftime("%m-%d %H:%M%z"))
    return out


def test_cron_slots_in_utc() -> None:
    schedule = Schedule("*/20 9 * * 1-5")
    assert _slots(schedule, _at(2024, 5, 3, 9, 30, zone=UTC), 4) == [
        "05-03 09:40+0000",
        "05-06 09:00+0000",
        "05-06 09:20+0000",
        "05-06 09:40+0000",
    ]


@pytest.mark.parametrize(
    ("alias", "expression"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
    ],
)
def test_aliases_are_their_expressions(alias: str, expression: str) -> None:
    start = _at(2024, 2, 27, 13, 5, zone=UTC)
    assert _slots(Schedule(alias), start, 3) == _slots(Schedule(expression), start, 3)


def test_intervals_count_from_the_epoch() -> None:
    schedule = Schedule(90)
    assert schedule.next_after(1000.0) == 1080.0
    assert schedule.next_after(1080.0) == 1170.0
    assert schedule.latest_at(1080.0) == 1080.0
    assert schedule.latest_at(1079.0) == 990.0


def test_zone_moves_the_slots() -> None:
    assert _slots(Schedule("0 3 * * *", tz="Europe/Oslo"), _at(2024, 6, 1), 1) == [
        "06-01 03:00+0200"
    ]


def test_spring_forward_daily_in_the_skipped_hour_fires_once_after_the_gap() -> None:
    # 2024-03-31 02:00 -> 03:00 in Oslo: 02:30 does not exist; it fires at 03:30 CEST.
    slots = _slots(Schedule("30 2 * * *", tz="Europe/Oslo"), _at(2024, 3, 29, 12), 4)
    assert slots == ["03-30 02:30+0100", "03-31 03:30+0200", "04-01 02:30+0200", "04-02 02:30+0200"]


def test_spring_forward_hourly_follows_elapsed_time() -> None:
    slots = _slots(Schedule("@hourly", tz="Europe/Oslo"), _at(2024, 3, 31, 0, 30), 3)
    assert slots == ["03-31 01:00+0100", "03-31 03:00+0200", "03-31 04:00+0200"]


def test_fall_back_daily_in_the_repeated_hour_fires_once() -> None:
    # 2024-10-27 03:00 -> 02:00 in Oslo: 02:30 happens twice; it fires at the first.
    slots = _slots(Schedule("30 2 * * *", tz="Europe/Oslo"), _at(2024, 10, 25, 12), 3)
    assert slots == ["10-26 02:30+0200", "10-27 02:30+0200", "10-28 02:30+0100"]


def test_fall_back_half_hourly_fires_in_both_real_hours() -> None:
    slots = _slots(Schedule("*/30 * * * *", tz="Europe/Oslo"), _at(2024, 10, 27, 1, 30), 6)
    assert slots == [
        "10-27 02:00+0200",
        "10-27 02:30+0200",
        "10-27 02:00+0100",
        "10-27 02:30+0100",
        "10-27 03:00+0100",
        "10-27 03:30+0100",
    ]


def test_latest_at_walks_back_across_the_changes() -> None:
    schedule = Schedule("30 2 * * *", tz="Europe/Oslo")
    assert schedule.latest_at(_at(2024, 3, 31, 12)) == _at(2024, 3, 31, 3, 30)
    hourly = Schedule("@hourly", tz="Europe/Oslo")
    assert hourly.latest_at(_at(2024, 10, 27, 2, 30, fold=1)) == _at(2024, 10, 27, 2, fold=1)


def test_catch_up_latest_fires_the_latest_missed_slot_once() -> None:
    schedule = Schedule(60)
    assert schedule.due(1000.0, started=1000.0, fired=None) == [960.0]
    assert schedule.due(1010.0, started=1000.0, fired=960.0) == []
    assert schedule.due(1300.0, started=1000.0, fired=960.0) == [1260.0]


def test_catch_up_none_fires_only_what_comes_due_while_running() -> None:
    schedule = Schedule(60, catch_up="none")
    assert schedule.due(1000.0, started=1000.0, fired=None) == []
    assert schedule.due(1030.0, started=1000.0, fired=None) == [1020.0]


def test_catch_up_bound_fires_missed_slots_up_to_n() -> None:
    schedule = Schedule(60, catch_up=3)
    assert schedule.due(1000.0, started=1000.0, fired=None) == [840.0, 900.0, 960.0]
    assert schedule.due(1100.0, started=1000.0, fired=960.0) == [1020.0, 1080.0]


def test_retention_covers_the_catch_up_window() -> None:
    assert Schedule(60).retention(960.0) == 60.0 + 300.0
    assert Schedule(60, catch_up=5).retention(960.0) == 300.0 + 300.0


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("61 * * * *", InvalidSchedule),
        ("* * * *", InvalidSchedule),
        ("0 0 * * * *", InvalidSchedule),
        ("@fortnightly", InvalidSchedule),
        ("0 0 30 2 *", InvalidSchedule),
        (0, InvalidSchedule),
        (-5.0, InvalidSchedule),
        (float("nan"), InvalidSchedule),
        (True, InvalidSchedule),
    ],
)
def test_bad_schedules_are_typed_errors(spec: object, error: type[Exception]) -> None:
    with pytest.raises(error) as raised:
        Schedule(spec)  # type: ignore[arg-type]
    assert isinstance(raised.value, InvalidInput)


def test_unknown_zone_and_bad_catch_up_are_typed_errors() -> None:
    with pytest.raises(UnknownTimeZone):
        Schedule("@daily", tz="Europe/Atlantis")
    with pytest.raises(InvalidSchedule):
        Schedule("@daily", catch_up="all")  # type: ignore[arg-type]
    with pytest.raises(InvalidSchedule):
        Schedule("@daily", catch_up=0)


def test_job_ids_are_deterministic_disque_ids() -> None:
    from disquette.job import check_job_id

    first = periodic(60, name="report", queue="q")
    again = periodic(60, name="report", queue="other")
    other = periodic(60, name="cleanup", queue="q")
    assert check_job_id(first.job_id(120.0)) == again.job_id(120.0)
    assert first.job_id(120.0) != first.job_id(180.0)
    assert first.job_id(120.0) != other.job_id(120.0)
    job = first.job(120.0, now=150.0)
    assert job.run_at == 120.0
    assert job.result_ttl >= 60.0
