"""Job dependencies, on every store: a job added with ``depends_on`` waits until its parents
are done, released by their acks; a parent ending otherwise applies the child's policy; the
client's chains and groups are built on it."""

from __future__ import annotations

import pytest

from disquette import JobState, ManualClock, connect_async
from disquette._concurrency import async_sleep
from disquette.client_async import AsyncClient
from disquette.errors import InvalidJobId, InvalidOption, JobFailed, JobNotFound, NotSupported
from disquette.flows import step
from disquette.job import Job
from disquette.stores.types import JobFilter, dependency_error

from . import UNKNOWN_ID
from ._fixtures import clock_fixture, store_url_fixture  # noqa: F401


async def _states(jobs: AsyncClient, *job_ids: str) -> list[JobState]:
    return [(await jobs.show(job_id)).state for job_id in job_ids]


async def _take(jobs: AsyncClient, *queues: str) -> list[Job]:
    return await jobs.timeout(0).get_many(*queues, count=100)


async def _fail_for_good(jobs: AsyncClient, queue: str, job_id: str) -> None:
    (job,) = await _take(jobs, queue)
    assert job.id == job_id
    await jobs.fail(job, "boom")


@pytest.mark.requires("dependencies")
async def test_a_diamond_runs_in_order(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        top = await jobs.add("top", "q")
        left = await jobs.add("left", "q", depends_on=[top])
        right = await jobs.add("right", "other", depends_on=[top])
        bottom = await jobs.add("bottom", "q", depends_on=[left, right, left])
        assert (await jobs.show(bottom)).depends_on == (left, right)
        assert await _states(jobs, left, right, bottom) == [JobState.WAITING] * 3
        assert await jobs.qlen("q") == 1
        assert await jobs.qlen("other") == 0
        (first,) = await _take(jobs, "q", "other")
        assert first.id == top
        await jobs.ack(first, "top's result")
        assert await _states(jobs, left, right, bottom) == [
            JobState.QUEUED,
            JobState.QUEUED,
            JobState.WAITING,
        ]
        (middle,) = await _take(jobs, "other")
        assert middle.id == right
        assert middle.depends_on == (top,)
        await jobs.ack(middle)
        assert (await jobs.show(bottom)).state is JobState.WAITING
        (middle,) = await _take(jobs, "q")
        assert middle.id == left
        await jobs.ack(middle)
        (last,) = await _take(jobs, "q")
        assert last.id == bottom
        assert [parent.result if parent else None for parent in await jobs.parents(last)] == [
            None,
            None,
        ]
        assert [parent.id if parent else None for parent in await jobs.parents(middle)] == [top]
        await jobs.ack(last)
        assert await jobs.wait(bottom, timeout=0) is None


@pytest.mark.requires("dependencies")
async def test_a_released_child_queues_behind_the_jobs_already_queued(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        parent = await jobs.add("parent", "p")
        child = await jobs.add("child", "q", depends_on=[parent])
        clock.advance(5)
        earlier = await jobs.add("queued meanwhile", "q")
        clock.advance(1)  # the release raises the child's run_at to now: behind ``earlier``
        await jobs.ack((await _take(jobs, "p"))[0])
        assert [job.id for job in await _take(jobs, "q")] == [earlier, child]


@pytest.mark.requires("dependencies")
async def test_a_child_of_done_parents_is_ready_at_once(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        parent = await jobs.add("parent", "q")
        await jobs.ack((await _take(jobs, "q"))[0])
        child = await jobs.add("child", "q", depends_on=[parent])
        later = await jobs.delay(30).add("later child", "q", depends_on=[parent])
        assert await _states(jobs, child, later) == [JobState.QUEUED, JobState.SCHEDULED]


@pytest.mark.requires("dependencies")
async def test_an_unknown_parent_refuses_the_whole_add(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        parent = await jobs.add("parent", "q")
        with pytest.raises(JobNotFound) as caught:
            await jobs.add_many(["a", "b"], "q", depends_on=[parent, UNKNOWN_ID])
        assert caught.value.job_id == UNKNOWN_ID
        with pytest.raises(JobNotFound):
            await jobs.add_chain(step("x", "q"), step("y", "q"), after=[UNKNOWN_ID])
        assert await jobs.qlen("q") == 1
        assert [job.id for job in await _take(jobs, "q")] == [parent]


@pytest.mark.requires("dependencies", "failures")
async def test_a_failed_parent_fails_its_waiting_children_and_theirs(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        parent = await jobs.max_attempts(1).add("parent", "q")
        child = await jobs.add("child", "q", depends_on=[parent])
        grandchild = await jobs.add("grandchild", "q", depends_on=[child])
        await _fail_for_good(jobs, "q", parent)
        assert await _states(jobs, parent, child, grandchild) == [JobState.FAILED] * 3
        assert (await jobs.show(child)).last_error == dependency_error(parent, "failed")
        assert (await jobs.show(grandchild)).last_error == dependency_error(child, "failed")
        with pytest.raises(JobFailed):
            await jobs.wait(grandchild, timeout=0)
        assert await _take(jobs, "q") == []
        late = await jobs.add("added after the failure", "q", depends_on=[parent])
        assert await _states(jobs, late) == [JobState.FAILED]


@pytest.mark.requires("dependencies", "failures")
async def test_policy_run_releases_a_child_whatever_its_parents_became(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        failing = await jobs.max_attempts(1).add("failing", "p")
        succeeding = await jobs.add("succeeding", "s")
        child = await jobs.add(
            "child", "q", depends_on=[failing, succeeding], on_dependency_failure="run"
        )
        await _fail_for_good(jobs, "p", failing)
        assert await _states(jobs, child) == [JobState.WAITING]
        await jobs.ack((await _take(jobs, "s"))[0])
        (released,) = await _take(jobs, "q")
        assert released.id == child
        parents = await jobs.parents(released)
        assert [parent.state if parent else None for parent in parents] == [
            JobState.FAILED,
            JobState.DONE,
        ]
        late = await jobs.add("late", "q", depends_on=[failing], on_dependency_failure="run")
        assert await _states(jobs, late) == [JobState.QUEUED]


@pytest.mark.requires("dependencies", "failures")
async def test_a_retry_after_an_error_releases_nothing(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        parent = await jobs.max_attempts(3).add("parent", "p")
        child = await jobs.add("child", "q", depends_on=[parent])
        await jobs.fail((await _take(jobs, "p"))[0], "transient")
        assert await _states(jobs, child) == [JobState.WAITING]
        clock.advance(3600)
        (again,) = await _take(jobs, "p")
        await jobs.ack(again)
        assert [job.id for job in await _take(jobs, "q")] == [child]


@pytest.mark.requires("dependencies", "cancellation")
async def test_cancelling_a_parent_cancels_or_releases_its_children(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        parent = await jobs.add("parent", "p")
        cancelled = await jobs.add("cancelled with it", "q", depends_on=[parent])
        released = await jobs.add(
            "runs anyway", "q", depends_on=[parent], on_dependency_failure="run"
        )
        assert await jobs.cancel(parent) is JobState.CANCELLED
        assert await _states(jobs, cancelled, released) == [JobState.CANCELLED, JobState.QUEUED]
        assert (await jobs.show(cancelled)).last_error == dependency_error(parent, "cancelled")
        assert [job.id for job in await _take(jobs, "q")] == [released]


@pytest.mark.requires("dependencies", "cancellation")
async def test_a_cancelled_waiting_job_stays_cancelled(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        parent = await jobs.add("parent", "p")
        child = await jobs.add("child", "q", depends_on=[parent])
        grandchild = await jobs.add("grandchild", "q", depends_on=[child])
        assert await jobs.cancel(child) is JobState.CANCELLED
        assert await _states(jobs, child, grandchild) == [JobState.CANCELLED] * 2
        await jobs.ack((await _take(jobs, "p"))[0])
        assert await _states(jobs, child) == [JobState.CANCELLED]
        assert await _take(jobs, "q") == []


@pytest.mark.requires("dependencies")
async def test_deleting_a_parent_ends_its_children(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        parent = await jobs.add("parent", "p")
        child = await jobs.add("child", "q", depends_on=[parent])
        await jobs.delete(parent)
        assert await _states(jobs, child) == [JobState.CANCELLED]
        assert (await jobs.show(child)).last_error == dependency_error(parent, "deleted")


@pytest.mark.requires("dependencies", "follows_clock")
async def test_an_expired_parent_ends_its_children(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        parent = await jobs.ttl(60).add("parent", "p")
        child = await jobs.add("child", "q", depends_on=[parent])
        clock.advance(61)
        state = JobState.WAITING
        for _ in range(300):  # stores drop expired jobs in their own upkeep: give it a while
            await _take(jobs, "p", "q")
            state = (await jobs.show(child)).state
            if state is not JobState.WAITING:
                break
            await async_sleep(0.01)
        assert state is JobState.CANCELLED
        assert (await jobs.show(child)).last_error == dependency_error(parent, "expired")


@pytest.mark.requires("dependencies", "follows_clock")
async def test_a_parent_whose_lease_runs_out_releases_nothing(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        parent = await jobs.retry_after(10).add("parent", "p")
        child = await jobs.add("child", "q", depends_on=[parent])
        await _take(jobs, "p")
        clock.advance(11)
        (again,) = await _take(jobs, "p", "q")
        assert again.id == parent
        assert await _states(jobs, child) == [JobState.WAITING]
        await jobs.ack(again)
        assert [job.id for job in await _take(jobs, "q")] == [child]


@pytest.mark.requires("dependencies")
async def test_waiting_jobs_are_counted_and_never_delivered(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        parent = await jobs.delay(60).add("parent", "p")
        children = await jobs.add_many(["a", "b", "c"], "q", depends_on=[parent])
        assert await jobs.qlen("q") == 0
        assert await jobs.peek("q", 10) == []
        assert await jobs.enqueue(children) == 0
        assert await _take(jobs, "q") == []
        row = (await jobs.stats()).by_queue()["q"]
        assert (row.waiting, row.queued) == (3, 0)
        if jobs.store.capabilities.job_filter:
            count = await jobs.count(JobFilter(queue="q", states=frozenset({JobState.WAITING})))
            assert (count.value, count.capped) == (3, False)


@pytest.mark.requires("dependencies")
async def test_a_chain_runs_link_by_link(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        ids = await jobs.add_chain(
            step({"n": 1}, "q"), step({"n": 2}, "r", type="second"), step({"n": 3}, "q")
        )
        assert len(set(ids)) == 3
        order = []
        for expected in ids:
            (job,) = await _take(jobs, "q", "r")
            assert job.id == expected
            order.append(job.body["n"])
            await jobs.ack(job, job.body["n"] * 10)
        assert order == [1, 2, 3]
        assert (await jobs.show(ids[1])).type == "second"
        assert await jobs.wait(ids[2], timeout=0) == 30


@pytest.mark.requires("dependencies", "failures")
async def test_a_group_callback_reads_its_members_results(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        group = await jobs.add_group(
            [step(n, "work") for n in range(4)], then=step("sum", "callbacks")
        )
        assert group.callback is not None
        assert await _states(jobs, group.callback) == [JobState.WAITING]
        for job in await _take(jobs, "work"):
            assert await _take(jobs, "callbacks") == []
            await jobs.ack(job, job.body * job.body)
        (callback,) = await _take(jobs, "callbacks")
        parents = await jobs.parents(callback)
        assert sum(parent.result for parent in parents if parent is not None) == 14
        # "success" (the default): a member failing for good fails the callback.
        failing = await jobs.max_attempts(1).add_group(
            [step("ok", "work2"), step("bad", "work2")], then=step("never", "callbacks")
        )
        ok, bad = await _take(jobs, "work2")
        await jobs.ack(ok)
        await jobs.fail(bad, "boom")
        assert failing.callback is not None
        assert await _states(jobs, failing.callback) == [JobState.FAILED]
        # "completion": the callback runs once every member has ended, however.
        completing = await jobs.max_attempts(1).add_group(
            [step("ok", "work3"), step("bad", "work3")],
            then=step("always", "callbacks"),
            on="completion",
        )
        ok, bad = await _take(jobs, "work3")
        await jobs.fail(bad, "boom")
        assert completing.callback is not None
        assert await _states(jobs, completing.callback) == [JobState.WAITING]
        await jobs.ack(ok)
        assert [job.id for job in await _take(jobs, "callbacks")] == [completing.callback]


async def test_bad_dependencies_are_refused(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        with pytest.raises(InvalidJobId):
            await jobs.add("x", "q", depends_on=["not an id"])
        with pytest.raises(InvalidOption):
            await jobs.add("x", "q", depends_on=UNKNOWN_ID)
        with pytest.raises(InvalidOption):
            await jobs.add("x", "q", depends_on=[UNKNOWN_ID], on_dependency_failure="later")  # type: ignore[arg-type]
        with pytest.raises(InvalidOption):
            await jobs.add_chain()
        with pytest.raises(InvalidOption):
            await jobs.add_group([step("x", "q")], on="sometimes")  # type: ignore[arg-type]
        if not jobs.store.capabilities.dependencies:
            parent = await jobs.add("parent", "q")
            with pytest.raises(NotSupported):
                await jobs.add("child", "q", depends_on=[parent])
            assert await jobs.qlen("q") == 1
