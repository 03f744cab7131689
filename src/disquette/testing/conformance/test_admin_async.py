"""What administration and the Disque-protocol server need: stats, deletes, pause modes,
ENQUEUE/DEQUEUE, JSCAN, QSCAN, FLUSHALL and the node registry, on every store."""

from __future__ import annotations

import pytest

from disquette import JobState, ManualClock, connect_async
from disquette.errors import (
    InvalidOption,
    JobNotFound,
    QueuePaused,
)
from disquette.stores.types import QueueInfo

from . import UNKNOWN_ID
from ._fixtures import clock_fixture, store_url_fixture  # noqa: F401  # this module's fixtures


@pytest.mark.requires("results", "failures", "follows_clock")
async def test_stats_per_queue_and_type(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        start = clock.now()
        await jobs.type("mail").add("m1", "q")
        await jobs.type("mail").add("m2", "q")
        await jobs.type("mail").delay(100).add("m3", "q")
        await jobs.type("sms").max_attempts(1).add("s1", "q")
        await jobs.add("plain", "other")
        clock.advance(1)
        mail = await jobs.timeout(0).get("q")
        failing = await jobs.timeout(0).get_many("q", count=2)
        sms = next(job for job in failing if job.type == "sms")
        await jobs.fail(sms, "no route")
        stats = await jobs.stats()
        rows = {(row.queue, row.type): row for row in stats.rows}
        mail_row = rows[("q", "mail")]
        assert (mail_row.scheduled, mail_row.queued, mail_row.active) == (1, 0, 2)
        assert mail_row.oldest_run_at == pytest.approx(start)
        sms_row = rows[("q", "sms")]
        assert (sms_row.failed, sms_row.max_error_count, sms_row.oldest_run_at) == (1, 1, None)
        assert rows[("other", None)].queued == 1
        by_queue = stats.by_queue()
        assert by_queue["q"].active == 2
        assert by_queue["q"].failed == 1
        assert stats.by_type()["mail"].scheduled == 1
        await jobs.ack(mail)
        assert (await jobs.stats()).by_queue()["q"].done == 1


async def test_delete_removes_a_job_in_any_state(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        queued = await jobs.add("q", "q")
        active = await jobs.add("a", "a")
        await jobs.timeout(0).get("a")
        for job_id in (queued, active):
            await jobs.delete(job_id)
            with pytest.raises(JobNotFound):
                await jobs.show(job_id)
        with pytest.raises(JobNotFound):
            await jobs.delete(queued)
        assert await jobs.timeout(0).get_many("q", "a") == []


async def test_pause_modes_refuse_adds_or_stop_delivery(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        await jobs.add("held", "q")
        assert await jobs.pause_mode("q") == "none"
        await jobs.set_pause("q", "in")
        with pytest.raises(QueuePaused) as refused:
            await jobs.add("refused", "q")
        assert refused.value.queue == "q"
        with pytest.raises(QueuePaused):
            await jobs.add_many(["a", "b"], "q")
        with pytest.raises(QueuePaused):
            await jobs.max_len(10).add("refused", "q")
        assert await jobs.qlen("q") == 1
        await jobs.pause("q")  # adds "out" to "in"
        assert await jobs.pause_mode("q") == "all"
        assert await jobs.timeout(0).get_many("q") == []
        await jobs.resume("q")  # removes "out" only
        assert await jobs.pause_mode("q") == "in"
        assert (await jobs.timeout(0).get("q")).body == "held"
        await jobs.set_pause("q", "out")
        await jobs.add("accepted", "q")
        assert await jobs.timeout(0).get_many("q") == []
        assert (await jobs.stats()).paused == {"q"}
        await jobs.set_pause("q", "none")
        assert (await jobs.timeout(0).get("q")).body == "accepted"
        assert await jobs.pause_mode("q") == "none"
        with pytest.raises(InvalidOption):
            await jobs.set_pause("q", "sideways")  # type: ignore[arg-type]


@pytest.mark.requires("follows_clock")
async def test_enqueue_and_dequeue_move_jobs_like_disque(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        first = await jobs.add("first", "q")
        later = await jobs.delay(60).add("later", "q")
        once = await jobs.retry_after(0).add("once", "q")
        assert await jobs.enqueue([first]) == 0  # already queued
        assert await jobs.enqueue([later, UNKNOWN_ID]) == 1  # scheduled -> queued, early
        assert (await jobs.show(later)).additional_deliveries == 0  # never delivered
        got = await jobs.timeout(0).get_many("q", count=3)
        assert [job.body for job in got] == ["first", "once", "later"]
        assert await jobs.enqueue([first, once]) == 1  # delivered at-most-once: left alone
        assert (await jobs.show(first)).additional_deliveries == 1
        assert (await jobs.show(first)).state is JobState.QUEUED
        assert await jobs.dequeue([first, later]) == 1  # only ready jobs
        dequeued = await jobs.show(first)
        assert dequeued.state is JobState.ACTIVE
        assert dequeued.attempts == 1  # not a delivery
        assert await jobs.qlen("q") == 0
        clock.advance(301)  # its retry_after: it comes back
        assert (await jobs.timeout(0).get("q")).id == first
        assert await jobs.enqueue([]) == 0
        assert await jobs.dequeue([]) == 0


async def test_nack_and_enqueue_name_the_queue_of_each_job_they_requeue(
    store_url: str, clock: ManualClock
) -> None:
    # What the server counts as each queue's jobs-in, without reading the jobs.
    async with connect_async(store_url, clock=clock) as jobs:
        a = await jobs.add("a", "qa")
        b = await jobs.add("b", "qb")
        later = await jobs.delay(60).add("later", "qc")
        claimed = await jobs.timeout(0).get_many("qa", "qb", count=2)
        assert sorted(job.id for job in claimed) == sorted([a, b])
        store = jobs.store
        assert await store.nack([a, b, a, UNKNOWN_ID]) == {a: "qa", b: "qb"}
        assert await store.nack([a]) == {}  # queued already
        await jobs.timeout(0).get_many("qa", count=1)
        assert await store.enqueue([a, b, later, UNKNOWN_ID]) == {a: "qa", later: "qc"}
        assert await store.enqueue([a]) == {}


@pytest.mark.requires("results")
async def test_scan_walks_every_job_by_pages(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        a_ids = await jobs.add_many([f"a{i}" for i in range(5)], "a")
        b_ids = await jobs.add_many([f"b{i}" for i in range(3)], "b")
        done = await jobs.timeout(0).get("b")
        await jobs.ack(done)
        seen: list[str] = []
        cursor = 0
        while True:
            cursor, page = await jobs.scan(cursor, 3)
            assert len(page) <= 3
            seen.extend(job.id for job in page)
            if cursor == 0:
                break
        assert seen == a_ids + b_ids  # enqueue order, done jobs included, none twice
        _, only_b = await jobs.scan(0, 100, queue="b")
        assert [job.id for job in only_b] == b_ids
        _, acked = await jobs.scan(0, 100, states=[JobState.DONE])
        assert [job.id for job in acked] == [done.id]
        _, queued_b = await jobs.scan(0, 100, queue="b", states={JobState.QUEUED})
        assert [job.id for job in queued_b] == b_ids[1:]
        assert await jobs.scan(0, 10, queue="none") == (0, [])
        with pytest.raises(InvalidOption):
            await jobs.scan(-1)


async def test_queues_lists_queues_with_jobs_or_a_pause_mode(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        assert await jobs.queues() == []
        await jobs.add_many(["x", "y"], "b")
        await jobs.delay(10).add("later", "a")
        await jobs.set_pause("c", "in")
        assert await jobs.queues() == [
            QueueInfo("a", 0, "none"),
            QueueInfo("b", 2, "none"),
            QueueInfo("c", 0, "in"),
        ]
        await jobs.set_pause("c", "none")
        assert [queue.name for queue in await jobs.queues()] == ["a", "b"]


async def test_flush_deletes_every_job_and_pause(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        job_id = await jobs.add("x", "q")
        await jobs.set_pause("q", "all")
        await jobs.flush()
        assert await jobs.queues() == []
        with pytest.raises(JobNotFound):
            await jobs.show(job_id)
        await jobs.add("after", "q")
        assert (await jobs.timeout(0).get("q")).body == "after"


@pytest.mark.requires("node_registry", "follows_clock")
async def test_node_registry_expires_nodes_that_stop_renewing(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        store = jobs.store
        assert await store.nodes() == []
        await store.register_node("b" * 40, "127.0.0.1:7712", 5)
        await store.register_node("a" * 40, "127.0.0.1:7711", 5)
        assert [(n.id, n.address) for n in await store.nodes()] == [
            ("a" * 40, "127.0.0.1:7711"),
            ("b" * 40, "127.0.0.1:7712"),
        ]
        clock.advance(3)
        await store.register_node("a" * 40, "127.0.0.1:7711", 5)  # heartbeat
        clock.advance(3)
        assert [n.id for n in await store.nodes()] == ["a" * 40]
        await store.unregister_node("a" * 40)
        assert await store.nodes() == []
