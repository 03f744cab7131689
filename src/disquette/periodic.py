"""Periodic jobs: schedules, their slots, and the job each slot fires (flavour-free).

A :class:`Schedule` is a cron expression (5 fields, or ``@hourly``, ``@daily``,
``@weekly``, ``@monthly``, ``@yearly``) read in a time zone, or a number of seconds. Its
*slots* are the instants it fires at. A :class:`Periodic` ties a schedule to a job (queue,
type, body); each slot fires one ordinary job whose ``run_at`` is the slot and whose id is
derived from (schedule name, slot), so that any number of schedulers adding it (the store
never adds an id it holds) make one job per slot, with no leader.

Daylight saving time (the DST rule):

- A schedule that names its hours (``30 2 * * *``, ``@daily``) follows the wall clock:
  each matching local time fires once. A local time the clock skips (02:30 when it jumps
  from 02:00 to 03:00) fires at the instant it would have had before the change, one gap
  later on the new clock (03:30); a local time the clock repeats fires at its first
  occurrence only. Two local times landing on one instant fire once.
- A schedule that runs every hour (``*`` in the hour field: ``@hourly``, ``*/15 * * * *``)
  follows elapsed time: it fires at every instant whose local time matches, so the repeated
  hour fires twice (it is two real hours) and the skipped hour, which never happens, fires
  nothing, while no real hour goes without its firings.
- An interval in seconds counts from the Unix epoch (UTC); time zones do not apply.

Catch-up (what a scheduler fires at ``now``): ``"latest"`` the latest slot not after
``now`` (once it has fired it, the next one when it comes); ``"none"`` only slots that come
due while the scheduler runs (after its start); an int ``n`` the last ``n`` slots not after
``now``. A fired job is kept (pending, then done for its ``result_ttl``) at least as long as
any scheduler may still fire its slot: see :meth:`Periodic.retention`.
"""

from __future__ import annotations

import binascii
import dataclasses
import hashlib
import math
import zoneinfo
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from croniter import croniter  # type: ignore[import-untyped]  # no stubs shipped

from .errors import InvalidSchedule, UnknownTimeZone
from .job import (
    MAX_SECONDS,
    Encoding,
    Job,
    check_queue_name,
    encode_value,
    job_id_factory,
    new_job,
    new_job_id,
)
from .stores.types import ScheduleInfo

CatchUp = Literal["latest", "none"] | int

#: The aliases a schedule accepts, as the 5-field expressions they stand for.
ALIASES: Final = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
#: Added to a fired job's retention: schedulers' clocks may differ by this much.
CLOCK_MARGIN: Final = 300.0
#: The largest ``catch_up`` bound (each firing computes that many slots ahead).
MAX_CATCH_UP: Final = 1000
#: The job options a periodic job may set, as its stored definition keeps them.
_OPTIONS: Final = ("priority", "retry_after", "max_attempts", "result_ttl")
_DAY: Final = 86400.0
_EPOCH: Final = datetime(1970, 1, 1)


@dataclasses.dataclass(frozen=True, slots=True)
class Schedule:
    """When a periodic job fires: ``spec`` is a cron expression or seconds, read in ``tz``.

    Raises :class:`~disquette.errors.InvalidSchedule` (bad expression, interval not
    positive, bad ``catch_up``) or :class:`~disquette.errors.UnknownTimeZone`.
    """

    spec: str | float
    tz: str = "UTC"
    catch_up: CatchUp = "latest"
    _zone: zoneinfo.ZoneInfo = dataclasses.field(init=False, repr=False, compare=False)
    _cron: str | None = dataclasses.field(init=False, repr=False, compare=False)
    _elapsed: bool = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_field = object.__setattr__
        set_field(self, "_zone", _zone(self.tz))
        _check_catch_up(self.catch_up)
        spec = self.spec
        if isinstance(spec, str):
            expression = ALIASES.get(spec.strip().lower(), spec.strip())
            if len(expression.split()) != 5 or not croniter.is_valid(expression):
                raise InvalidSchedule(spec, "not a 5-field cron expression or @hourly-style alias")
            set_field(self, "_cron", expression)
            set_field(self, "_elapsed", croniter(expression).expanded[1] == ["*"])
            try:
                self.next_after(0.0)
            except ValueError:  # croniter: no date ever matches (30 February)
                raise InvalidSchedule(spec, "no date matches it") from None
        elif isinstance(spec, int | float) and not isinstance(spec, bool):
            if not (math.isfinite(spec) and 0 < spec <= MAX_SECONDS):
                raise InvalidSchedule(spec, "an interval is a positive number of seconds")
            set_field(self, "_cron", None)
            set_field(self, "_elapsed", True)
        else:
            raise InvalidSchedule(spec, "a cron expression (str) or seconds (int or float)")

    def __str__(self) -> str:
        if self._cron is None:
            return f"every {self.spec:g}s"
        return f"{self.spec} ({self.tz})"

    # -- slots -------------------------------------------------------------------------

    def next_after(self, when: float) -> float:
        """The first slot strictly after ``when`` (seconds since the epoch)."""
        if self._cron is None:
            interval = float(self.spec)
            return (math.floor(when / interval) + 1) * interval
        low, high = self._offsets(when)
        walls = croniter(self._cron, _wall(when + low))
        best: float | None = None
        while True:
            wall: datetime = walls.get_next(datetime)
            later = [slot for slot in self._instants(wall) if slot > when]
            if later:
                best = min(later) if best is None else min(best, *later)
            if best is not None:
                # No later local time can land before best once its earliest instant
                # (the largest offset near best) is past it.
                high = max(high, self._offsets(best)[1])
                if _seconds(wall) - high > best:
                    return best

    def latest_at(self, when: float) -> float:
        """The last slot at or before ``when``."""
        if self._cron is None:
            interval = float(self.spec)
            return math.floor(when / interval) * interval
        low, high = self._offsets(when)
        walls = croniter(self._cron, _wall(when + high + 1))
        best: float | None = None
        while True:
            wall: datetime = walls.get_prev(datetime)
            earlier = [slot for slot in self._instants(wall) if slot <= when]
            if earlier:
                best = max(earlier) if best is None else max(best, *earlier)
            if best is not None:
                low = min(low, self._offsets(best)[0])
                if _seconds(wall) - low < best:
                    return best

    def due(self, now: float, started: float, fired: float | None) -> list[float]:
        """The slots a scheduler fires at ``now``, oldest first, by ``catch_up``.

        ``started``: when the scheduler started; ``fired``: the latest slot it fired.
        """
        latest = self.latest_at(now)
        if fired is not None and latest <= fired:
            return []
        if self.catch_up == "latest":
            return [latest]
        if self.catch_up == "none":
            return [latest] if latest > started else []
        slots = [latest]
        while len(slots) < self.catch_up:
            earlier = self.latest_at(slots[-1] - 1e-3)
            if fired is not None and earlier <= fired:
                break
            slots.append(earlier)
        return slots[::-1]

    def retention(self, slot: float) -> float:
        """Seconds a job fired at ``slot`` must be kept: until no scheduler fires ``slot``
        any more (it is no longer among the last ``catch_up`` slots), plus a margin for
        clocks that differ."""
        horizon, end = (1 if self.catch_up in ("latest", "none") else int(self.catch_up)), slot
        for _ in range(horizon):
            end = self.next_after(end)
        return end - slot + CLOCK_MARGIN

    def _instants(self, wall: datetime) -> list[float]:
        """The instants local time ``wall`` fires at, by the DST rule (module doc)."""
        first = wall.replace(tzinfo=self._zone).timestamp()
        if not self._elapsed:
            return [first]
        instants = []
        for fold in (0, 1):
            local = wall.replace(tzinfo=self._zone, fold=fold)
            instant = local.timestamp()
            if datetime.fromtimestamp(instant, self._zone).replace(tzinfo=None) == wall:
                instants.append(instant)  # a real instant (not in a gap)
        return sorted(set(instants))

    def _offsets(self, when: float) -> tuple[float, float]:
        """The smallest and largest UTC offset of the zone within a day of ``when``."""
        offsets = []
        for instant in (when - _DAY, when, when + _DAY):
            moment = datetime.fromtimestamp(max(instant, 0.0), self._zone)
            offset = moment.utcoffset()
            offsets.append(offset.total_seconds() if offset is not None else 0.0)
        return min(offsets), max(offsets)


@dataclasses.dataclass(frozen=True, slots=True)
class Periodic:
    """A schedule and the job each of its slots fires: ``name`` keys the slots' job ids
    (two schedules with one name share their slots)."""

    name: str
    schedule: Schedule
    queue: str
    type: str | None = None
    raw_body: bytes = b""
    encoding: Encoding = Encoding.BYTES
    priority: int | None = None
    retry_after: float | None = None
    max_attempts: int | None = None
    result_ttl: float | None = None

    def job_id(self, slot: float) -> str:
        """The id of the job that ``slot`` fires: the same in every process."""
        digest = hashlib.sha256(f"{self.name}\0{round(slot * 1000)}".encode()).digest()
        retry_after = self.retry_after if self.retry_after is not None else 1.0
        shape = job_id_factory(None, retry_after, node_prefix=digest[:4].hex())()
        middle = binascii.b2a_base64(digest[4:22], newline=False).decode()
        return shape[:11] + middle + shape[35:]

    def job(self, slot: float, now: float) -> Job:
        """The job ``slot`` fires (made at ``now``; ready at the slot)."""
        keep = self.schedule.retention(slot)
        options: dict[str, object] = {
            "type": self.type,
            "delay": max(0.0, slot - now),
            "result_ttl": max(keep, self.result_ttl or 0.0),
        }
        for name in ("priority", "retry_after", "max_attempts"):
            if (value := getattr(self, name)) is not None:
                options[name] = value
        job = new_job(
            self.job_id(slot),
            self.queue,
            self.raw_body,
            self.encoding,
            now,
            **options,  # type: ignore[arg-type]
        )
        job.run_at = slot
        return job

    def info(self) -> ScheduleInfo:
        """This periodic job's definition as a store keeps it (``register_schedules``)."""
        spec = self.schedule.spec
        return ScheduleInfo(
            name=self.name,
            spec=spec if isinstance(spec, str) else repr(float(spec)),
            tz=self.schedule.tz,
            queue=self.queue,
            type=self.type,
            body=self.raw_body,
            encoding=self.encoding,
            catch_up=str(self.schedule.catch_up),
            options={
                name: value for name in _OPTIONS if (value := getattr(self, name)) is not None
            },
        )

    @classmethod
    def from_info(cls, info: ScheduleInfo) -> Periodic:
        """The periodic job a stored definition describes (the inverse of :meth:`info`)."""
        try:
            spec: str | float = float(info.spec)
        except ValueError:
            spec = info.spec
        catch_up: CatchUp = "none" if info.catch_up == "none" else "latest"
        if info.catch_up.isdigit():
            catch_up = int(info.catch_up)
        schedule = Schedule(spec, tz=info.tz, catch_up=catch_up)
        options: dict[str, Any] = dict(info.options)
        return cls(info.name, schedule, info.queue, info.type, info.body, info.encoding, **options)

    def last_fired(
        self, now: float, exists: Callable[[str], bool], look_back: int = 100
    ) -> float | None:
        """The latest slot at or before ``now`` whose job exists (``exists(job_id)``),
        looking back ``look_back`` slots at most; ``None`` if none does."""
        slot = self.schedule.latest_at(now)
        for _ in range(look_back):
            if exists(self.job_id(slot)):
                return slot
            slot = self.schedule.latest_at(slot - 1e-3)
        return None


def fire_now_job(info: ScheduleInfo, now: float) -> Job:
    """The job "fire now" adds for a stored schedule (no app code needed): an ordinary job
    of its definition, with a fresh id, ready at ``now``. The schedule's slots are not
    touched (each still fires its own job), and a paused schedule fires too (on request)."""
    options: dict[str, object] = {"type": info.type, **info.options}
    retry_after = float(info.options.get("retry_after", 1.0))
    return new_job(
        new_job_id(None, retry_after),
        info.queue,
        info.body,
        info.encoding,
        now,
        **options,  # type: ignore[arg-type]
    )


def periodic(
    schedule: str | float | Schedule,
    *,
    name: str,
    queue: str,
    type: str | None = None,
    body: object = None,
    tz: str = "UTC",
    catch_up: CatchUp = "latest",
    **options: float | int | None,
) -> Periodic:
    """Make a :class:`Periodic` (``schedule`` as a :class:`Schedule` or its ``spec``)."""
    if not isinstance(schedule, Schedule):
        schedule = Schedule(schedule, tz=tz, catch_up=catch_up)
    if not isinstance(name, str) or not name:
        raise InvalidSchedule(schedule.spec, "a periodic job needs a name")
    raw_body, encoding = (
        encode_value(body, 1024 * 1024) if body is not None else (b"", Encoding.BYTES)
    )
    return Periodic(name, schedule, check_queue_name(queue), type, raw_body, encoding, **options)  # type: ignore[arg-type]


def _zone(tz: object) -> zoneinfo.ZoneInfo:
    if not isinstance(tz, str) or not tz:
        raise UnknownTimeZone(tz)
    try:
        return zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise UnknownTimeZone(tz) from None


def _check_catch_up(catch_up: object) -> None:
    if catch_up in ("latest", "none"):
        return
    if isinstance(catch_up, bool) or not isinstance(catch_up, int):
        raise InvalidSchedule(catch_up, "catch_up is 'latest', 'none' or a number of slots")
    if not 1 <= catch_up <= MAX_CATCH_UP:
        raise InvalidSchedule(catch_up, f"catch_up counts 1 to {MAX_CATCH_UP} slots")


def _wall(seconds: float) -> datetime:
    """A naive local time from seconds counted on the local clock."""
    return _EPOCH + timedelta(seconds=seconds)


def _seconds(wall: datetime) -> float:
    """The inverse of :func:`_wall`."""
    return (wall - _EPOCH).total_seconds()


__all__ = ["ALIASES", "CatchUp", "Periodic", "Schedule", "fire_now_job", "periodic"]
