"""The Redis store's one-by-one add (``add1.lua``, issue 12): the script is told whether a
job is due by the job's own ``run_at`` text when it is, by the clock's now otherwise; the
job hash keeps ``run_at`` exactly, as every other add spells it."""

from __future__ import annotations

from pathlib import Path

import pytest

from disquette import Job, JobState, ManualClock, connect, connect_async
from disquette.job import new_job_id
from disquette.stores.redis.store import RedisStore
from tests.servers.redis import conformance_url, driver

#: A clock reading whose shortest spelling takes all 17 digits.
NOW = 1_700_000_000.123_456_7


def _job(queue: str, created_at: float, run_at: float) -> Job:
    return Job(new_job_id(None, 300.0), queue, b"x", created_at=created_at, run_at=run_at)


def _run_at_text(url: str, store: RedisStore, job_id: str) -> bytes:
    raw = driver().Redis.from_url(url.split("?")[0])
    try:
        text: bytes = raw.hget(store.runner.job_key(job_id, None), "r")
        return text
    finally:
        raw.close()


@pytest.mark.parametrize(
    ("created_at", "run_at", "state"),
    [
        (NOW, NOW, JobState.QUEUED),  # the usual add: due now
        (NOW, NOW - 10.25, JobState.QUEUED),
        (0.0, NOW - 1e-6, JobState.QUEUED),
        (NOW, NOW + 1e-6, JobState.SCHEDULED),
        # created long ago, due later: the clock decides, not created_at
        (0.0, NOW + 5, JobState.SCHEDULED),
        (NOW + 100, NOW - 1, JobState.QUEUED),
    ],
)
def test_a_plain_add_is_due_exactly_when_its_run_at_has_come(
    tmp_path: Path, created_at: float, run_at: float, state: JobState
) -> None:
    url = conformance_url(tmp_path)
    with connect(url, clock=ManualClock(NOW)) as jobs:
        store = jobs.store
        assert isinstance(store, RedisStore)
        job = _job("q", created_at, run_at)
        assert store.add([job], None) == {}
        shown = jobs.show(job.id)
        assert shown is not None
        assert (shown.state, shown.run_at, shown.created_at) == (state, run_at, created_at)
        assert _run_at_text(url, store, job.id) == repr(run_at).encode()
        assert jobs.qlen("q") == (1 if state is JobState.QUEUED else 0)
        assert store.add([job], None) == {}  # a replay: still one job, unchanged
        assert jobs.show(job.id) == shown


def test_a_client_add_keeps_the_clock_reading_as_run_at(tmp_path: Path) -> None:
    url = conformance_url(tmp_path)
    with connect(url, clock=ManualClock(NOW)) as jobs:
        job_id = jobs.add({"n": 1}, "q")
        later = jobs.delay(0.5).add("later", "q")
        shown = jobs.show(job_id)
        assert shown is not None
        assert (shown.state, shown.run_at) == (JobState.QUEUED, NOW)
        delayed = jobs.show(later)
        assert delayed is not None
        assert (delayed.state, delayed.run_at) == (JobState.SCHEDULED, NOW + 0.5)
        assert jobs.timeout(0).get("q").id == job_id


async def test_the_async_add_decides_alike(tmp_path: Path) -> None:
    url = conformance_url(tmp_path)
    async with connect_async(url, clock=ManualClock(NOW)) as jobs:
        due = _job("q", NOW, NOW - 1)
        later = _job("q", NOW, NOW + 1)
        assert await jobs.store.add([due], None) == {}
        assert await jobs.store.add([later], None) == {}
        states = [(await jobs.show(job.id)) for job in (due, later)]
        assert [job.state if job else None for job in states] == [
            JobState.QUEUED,
            JobState.SCHEDULED,
        ]


@pytest.mark.parametrize("delay", [0.0, 30.0])
@pytest.mark.parametrize("type_", [None, "mail"])
def test_a_plain_add_keeps_its_type_due_or_delayed(
    tmp_path: Path, delay: float, type_: str | None
) -> None:
    with connect(conformance_url(tmp_path), clock=ManualClock(NOW)) as jobs:
        client = jobs if type_ is None else jobs.type(type_)
        job_id = client.delay(delay).add("body", "q")
        shown = jobs.show(job_id)
        assert shown is not None
        assert (shown.type, shown.run_at, shown.body) == (type_, NOW + delay, "body")
        assert shown.state is (JobState.SCHEDULED if delay else JobState.QUEUED)
