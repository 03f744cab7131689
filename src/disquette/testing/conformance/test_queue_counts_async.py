"""``queue_counts`` (issue 14) on every store: each queue's jobs by state in one bounded
read, exact under the cap, "at least" past it, with its pause mode and its next ready job."""

from __future__ import annotations

import pytest

from disquette import JobState, connect_async
from disquette.client_async import AsyncClient
from disquette.errors import InvalidOption, InvalidQueueName
from disquette.stores.types import JobCount, QueueCounts

from ._fixtures import clock_fixture, store_url_fixture  # noqa: F401  # this module's fixtures


def _values(counts: QueueCounts) -> dict[str, int]:
    return {state.value: counts.count(state).value for state in JobState}


async def _one_of_each(jobs: AsyncClient) -> None:
    """In queue "a": two queued, one scheduled, active, failed, done and cancelled."""
    await jobs.max_attempts(1).add(3, "a")
    await jobs.fail(await jobs.get("a", timeout=0), "ValueError: boom")
    await jobs.add(4, "a")
    await jobs.ack(await jobs.get("a", timeout=0))
    await jobs.add(5, "a")
    await jobs.get("a", timeout=0)  # stays active
    await jobs.cancel(await jobs.add(6, "a"))
    await jobs.delay(3600).add(2, "a")
    await jobs.add(7, "a")
    await jobs.add(8, "a")


@pytest.mark.requires("queue_counts", "failures", "results", "cancellation")
async def test_every_state_counted_with_pause_modes(store_url: str) -> None:
    async with connect_async(store_url) as jobs:
        assert await jobs.queue_counts() == []
        await _one_of_each(jobs)
        await jobs.add(9, "c")
        await jobs.set_pause("b", "in")  # no job, a pause mode: listed
        await jobs.set_pause("c", "out")
        found = await jobs.queue_counts()
        assert [counts.name for counts in found] == ["a", "b", "c"]
        a, b, c = found
        expected = dict.fromkeys(_values(a), 0)  # every state, a new one included
        expected.update(scheduled=1, queued=2, active=1, done=1, failed=1, cancelled=1)
        assert _values(a) == expected
        assert set(a.counts) == set(JobState)  # every state, a new one included
        assert not any(count.capped for count in a.counts.values())
        assert (a.pause, b.pause, c.pause) == ("none", "in", "out")
        assert _values(b) == dict.fromkeys(_values(b), 0)
        assert _values(c)["queued"] == 1
        nxt = (await jobs.peek("a"))[0]
        assert a.ready_since == pytest.approx(max(nxt.run_at, nxt.created_at))
        assert b.ready_since is None
        assert await jobs.queue_counts("c") == [c]
        assert await jobs.queue_counts("nothing-here") == []


@pytest.mark.requires("queue_counts")
async def test_counts_past_the_cap_are_at_least(store_url: str) -> None:
    async with connect_async(store_url) as jobs:
        await jobs.add_many(list(range(5)), "a")
        await jobs.delay(3600).add_many(list(range(4)), "a")
        (a,) = await jobs.queue_counts(cap=3)
        assert a.count(JobState.QUEUED) == JobCount(3, True)
        scheduled = a.count(JobState.SCHEDULED)
        assert scheduled.value <= 3  # never more than there are
        assert scheduled.capped
        for state in (JobState.ACTIVE, JobState.DONE, JobState.FAILED, JobState.CANCELLED):
            assert a.count(state).value == 0  # a lower bound, capped or not
        (exact,) = await jobs.queue_counts(cap=10)
        assert _values(exact)["queued"] == 5
        assert _values(exact)["scheduled"] == 4
        assert not exact.count(JobState.QUEUED).capped


async def test_bad_arguments_are_refused(store_url: str) -> None:
    async with connect_async(store_url) as jobs:
        for cap in (0, -1, True, 1.5):
            with pytest.raises(InvalidOption):
                await jobs.queue_counts(cap=cap)  # type: ignore[arg-type]
        with pytest.raises(InvalidQueueName):
            await jobs.queue_counts("")


@pytest.mark.requires("queue_counts", "dependencies")
async def test_waiting_jobs_are_counted(store_url: str) -> None:
    async with connect_async(store_url) as jobs:
        # The parent in its children's queue: on Redis Cluster a parent must be there.
        parent = await jobs.add("parent", "w")
        await jobs.add_many(["a", "b"], "w", depends_on=[parent])
        (waiting,) = await jobs.queue_counts("w")
        assert _values(waiting) == {**dict.fromkeys(_values(waiting), 0), "waiting": 2, "queued": 1}
        await jobs.ack(await jobs.get("w", timeout=0))
        (released,) = await jobs.queue_counts("w")
        assert (_values(released)["waiting"], _values(released)["queued"]) == (0, 2)
