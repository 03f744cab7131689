"""What dashboards read and do (issue 14), on every store: the worker registry, jobs
selected by a filter (counted with a cap, paged by keyset, acted on in bulk) and rollups."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from disquette import JobState, ManualClock, connect_async
from disquette.client_async import AsyncClient
from disquette.errors import InvalidInput, InvalidOption, NotSupported
from disquette.stores.types import (
    DURATION_BUCKETS,
    JobCount,
    JobFilter,
    QueueEvent,
    RollupRow,
    WorkerInfo,
)

from ._fixtures import clock_fixture, store_url_fixture  # noqa: F401  # this module's fixtures


def _worker(worker_id: str, now: float, in_flight: int = 0) -> WorkerInfo:
    return WorkerInfo(
        id=worker_id,
        host="box",
        pid=42,
        queues=("a", "b"),
        concurrency=8,
        in_flight=in_flight,
        started_at=now,
        heartbeat_at=now,
        version="0.1.0",
    )


@pytest.mark.requires("workers", "follows_clock")
async def test_worker_registry(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        assert await jobs.workers() == []
        await jobs.store.register_worker(_worker("w2", clock.now()), 30)
        await jobs.store.register_worker(_worker("w1", clock.now()), 30)
        assert [w.id for w in await jobs.workers()] == ["w1", "w2"]
        clock.advance(20)
        beat = _worker("w1", clock.now(), in_flight=3)
        await jobs.store.register_worker(beat, 30)  # a heartbeat renews and updates
        clock.advance(15)  # w2's heartbeats stopped 35 s ago: forgotten
        assert await jobs.workers() == [beat]
        await jobs.store.unregister_worker("w1")
        await jobs.store.unregister_worker("w1")  # gone already: no error
        assert await jobs.workers() == []


async def _fill(jobs: AsyncClient) -> list[str]:
    """Seven jobs in two queues with types, bodies and one error; ids oldest first."""
    ids = [
        await jobs.type("mail").add({"user": {"id": 7, "name": "ann"}, "vip": True}, "a"),
        await jobs.type("mail").add({"user": {"id": 8, "name": "bob"}, "vip": False}, "a"),
        await jobs.type("sms").add({"user": {"id": "7"}, "n": 1.5}, "a"),
        await jobs.add("plain text", "b"),
        await jobs.add(b"\xff\x00", "b"),
        await jobs.add({"user": None, "list": [1]}, "b"),
        await jobs.type("mail").max_attempts(1).add({"user": {"id": 9}}, "b"),
    ]
    job = await jobs.timeout(0).get("b")
    assert job.id == ids[3]
    await jobs.nack(job)
    return ids


async def _ids(jobs: AsyncClient, where: JobFilter) -> list[str]:
    page = await jobs.scan_jobs(where, limit=100)
    assert page.cursor is None
    count = await jobs.count(where)
    assert count == JobCount(len(page.jobs), capped=False)
    return [job.id for job in page.jobs]


@pytest.mark.requires("job_filter")
async def test_filters(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        ids = await _fill(jobs)
        newest_first = ids[::-1]
        assert await _ids(jobs, JobFilter()) == newest_first
        assert await _ids(jobs, JobFilter(queue="a")) == ids[2::-1]
        assert await _ids(jobs, JobFilter(type="mail")) == [ids[6], ids[1], ids[0]]
        assert await _ids(jobs, JobFilter(queue="b", type="mail")) == [ids[6]]
        assert await _ids(jobs, JobFilter(id_prefix=ids[4])) == [ids[4]]
        assert await _ids(jobs, JobFilter(queue="nothing")) == []
        queued = frozenset({JobState.QUEUED})
        assert await _ids(jobs, JobFilter(states=queued, queue="a")) == ids[2::-1]


@pytest.mark.requires("job_filter")
async def test_body_filters(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        ids = await _fill(jobs)
        by_path = await _ids(jobs, JobFilter(body_path="user.id", body_value="7"))
        assert by_path == [ids[2], ids[0]]  # the number 7 and the string "7"
        assert await _ids(jobs, JobFilter(body_path="user.name", body_value="bob")) == [ids[1]]
        assert await _ids(jobs, JobFilter(body_path="vip", body_value="true")) == [ids[0]]
        assert await _ids(jobs, JobFilter(body_path="vip", body_value="false")) == [ids[1]]
        assert await _ids(jobs, JobFilter(body_path="n", body_value="1.5")) == [ids[2]]
        # a path alone: the value exists and is no null, object or array
        assert await _ids(jobs, JobFilter(body_path="user.id")) == [ids[6], ids[2], ids[1], ids[0]]
        assert await _ids(jobs, JobFilter(body_path="user")) == []
        assert await _ids(jobs, JobFilter(body_path="list")) == []
        matching = JobFilter(queue="a", type="mail", body_path="user.id", body_value="8")
        assert await _ids(jobs, matching) == [ids[1]]


@pytest.mark.requires("job_filter", "failures", "follows_clock")
async def test_error_and_time_filters(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        start = clock.now()
        ids = await _fill(jobs)
        clock.advance(10)
        later = await jobs.add("later", "c")
        for job in await jobs.timeout(0).get_many("b", count=10):
            await jobs.fail(job, f"ValueError: bad {job.id[-4:]} input")
        assert await _ids(jobs, JobFilter(error="bad")) == ids[6:2:-1]
        assert await _ids(jobs, JobFilter(error="Bad")) == []  # case-sensitive
        failed = frozenset({JobState.FAILED})
        assert await _ids(jobs, JobFilter(states=failed)) == [ids[6]]
        assert await _ids(jobs, JobFilter(since=start + 5)) == [later]
        assert await _ids(jobs, JobFilter(since=start, until=start + 5)) == ids[::-1]


@pytest.mark.requires("job_filter")
async def test_count_is_capped(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        await jobs.add_many(list(range(12)), "q")
        assert await jobs.count(cap=12) == JobCount(12, capped=False)
        capped = await jobs.count(cap=5)
        assert capped == JobCount(5, capped=True)
        assert str(capped) == "5+"
        assert await jobs.count(JobFilter(queue="q"), cap=11) == JobCount(11, capped=True)


@pytest.mark.requires("job_filter")
async def test_keyset_pages(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        ids = [await jobs.add(i, "q") for i in range(7)]
        await jobs.add("elsewhere", "other")
        seen: list[str] = []
        page = await jobs.scan_jobs(JobFilter(queue="q"), limit=3)
        sizes = [len(page.jobs)]
        seen += [job.id for job in page.jobs]
        newer = await jobs.add("added during the walk", "q")  # comes before page one
        while page.cursor is not None:
            page = await jobs.scan_jobs(JobFilter(queue="q"), page.cursor, limit=3)
            sizes.append(len(page.jobs))
            seen += [job.id for job in page.jobs]
        assert seen == ids[::-1]
        assert sizes == [3, 3, 1]
        assert newer not in seen
        exact = await jobs.scan_jobs(JobFilter(queue="q"), limit=8)
        assert (len(exact.jobs), exact.cursor) == (8, None)


@pytest.mark.requires("job_filter", "failures")
async def test_bulk_by_filter_and_ids(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        failing = [await jobs.max_attempts(1).add(i, "f") for i in range(5)]
        for job in await jobs.timeout(0).get_many("f", count=5):
            await jobs.fail(job, "boom")
        failed = JobFilter(queue="f", states=frozenset({JobState.FAILED}))
        assert await jobs.bulk("retry", filter=failed, limit=3) == 3
        assert (await jobs.count(failed)).value == 2
        assert await jobs.bulk("retry", filter=JobFilter(queue="f")) == 2  # queued: passed over
        assert await jobs.qlen("f") == 5
        assert await jobs.bulk("delete", ids=failing[:2]) == 2
        assert await jobs.bulk("delete", ids=failing[:2]) == 0
        assert await jobs.bulk("delete", filter=JobFilter(queue="f")) == 3
        assert await jobs.count() == JobCount(0, capped=False)


@pytest.mark.requires("job_filter", "cancellation", "follows_clock")
async def test_bulk_cancel_and_enqueue(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        later = [await jobs.delay(60).add(i, "s") for i in range(4)]
        assert await jobs.bulk("enqueue", ids=later[:2]) == 2  # run now
        assert await jobs.qlen("s") == 2
        scheduled = JobFilter(queue="s", states=frozenset({JobState.SCHEDULED}))
        assert await jobs.bulk("cancel", filter=scheduled) == 2
        cancelled = frozenset({JobState.CANCELLED})
        assert (await jobs.count(JobFilter(states=cancelled))).value == 2


async def test_bad_filters_and_arguments(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        for bad in [
            {"body_path": "a..b"},
            {"body_path": "a[0]"},
            {"body_path": "$.a"},
            {"body_value": "x"},
            {"states": frozenset()},
            {"type": ""},
            {"since": float("nan")},
            {"queue": ""},
        ]:
            with pytest.raises(InvalidInput):
                JobFilter(**bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidOption):
            await jobs.count(cap=0)
        with pytest.raises(InvalidOption):
            await jobs.scan_jobs(limit=0)
        with pytest.raises(InvalidOption):
            await jobs.scan_jobs(cursor="nope")
        with pytest.raises(InvalidOption):
            await jobs.bulk("explode", ids=[])  # type: ignore[arg-type]
        with pytest.raises(InvalidOption):
            await jobs.bulk("delete")
        with pytest.raises(InvalidOption):
            await jobs.rollups("day")  # type: ignore[arg-type]
        with pytest.raises(InvalidOption):
            await _first(jobs.watch(refresh=0))


async def _first(events: AsyncIterator[QueueEvent]) -> QueueEvent:
    async for event in events:
        return event
    raise AssertionError("watch() ended")


def _row(resolution: str, start: float, queue: str, job_type: str, done: int) -> RollupRow:
    histogram = [0] * len(DURATION_BUCKETS)
    histogram[3] = done
    histogram[8] = 1
    return RollupRow(resolution, start, queue, job_type, done, 1, tuple(histogram))  # type: ignore[arg-type]


@pytest.mark.requires("rollups", "follows_clock")
async def test_rollups_sum_and_prune(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        minute = clock.now() - clock.now() % 60
        await jobs.store.record_rollups([_row("minute", minute, "q", "mail", 9)])
        await jobs.store.record_rollups(  # a second worker's flush of the same minute
            [_row("minute", minute, "q", "mail", 9), _row("minute", minute, "q", "", 1)]
        )
        await jobs.store.record_rollups([_row("hour", minute - minute % 3600, "q", "mail", 4)])
        rows = await jobs.rollups("minute")
        assert [(r.queue, r.type, r.completed, r.errors) for r in rows] == [
            ("q", "", 1, 1),
            ("q", "mail", 18, 2),
        ]
        mail = rows[1]
        assert (mail.p50, mail.p95, mail.p99) == (0.025, 1.0, 1.0)
        assert await jobs.rollups("minute", type="mail") == [mail]
        assert await jobs.rollups("minute", since=minute + 60) == []
        assert [r.completed for r in await jobs.rollups("hour", queue="q")] == [4]
        clock.advance(8 * 3600 + 60)
        await jobs.store.record_rollups([])  # a flush prunes
        assert await jobs.rollups("minute") == []
        assert len(await jobs.rollups("hour")) == 1
        clock.advance(3 * 86400)
        await jobs.store.record_rollups([])
        assert await jobs.rollups("hour") == []


async def test_lacking_stores_refuse(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        capabilities = jobs.store.capabilities
        if not capabilities.workers:
            with pytest.raises(NotSupported):
                await jobs.workers()
        if not capabilities.job_filter:
            with pytest.raises(NotSupported):
                await jobs.count()
            with pytest.raises(NotSupported):
                await jobs.bulk("delete", filter=JobFilter())
        if not capabilities.rollups:
            with pytest.raises(NotSupported):
                await jobs.rollups()
