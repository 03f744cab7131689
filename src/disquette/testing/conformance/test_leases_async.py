"""Leases: expiry and redelivery, ``working``, nacks, stale recovery, a dead holder's
jobs, and calls that belong to one delivery (``LeaseLost``), on every store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from disquette import AsyncClient, Job, JobState, ManualClock, connect_async
from disquette.errors import (
    InvalidOption,
    InvalidState,
    JobFailed,
    LeaseLost,
)
from disquette.stores.types import HOLDER_GONE

from . import UNKNOWN_ID
from ._fixtures import clock_fixture, store_url_fixture  # noqa: F401  # this module's fixtures


@pytest.mark.requires("follows_clock")
async def test_lease_expiry_redelivers_and_counts(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        job_id = await jobs.retry_after(10).add("x", "q")
        first = await jobs.timeout(0).get("q")
        assert first.lease_until == pytest.approx(clock.now() + 10)
        clock.advance(9.9)
        assert await jobs.timeout(0).get_many("q") == []
        clock.advance(0.1)
        again = await jobs.timeout(0).get("q")
        assert again.id == job_id
        assert again.attempts == 2
        assert again.additional_deliveries == 1


@pytest.mark.requires("follows_clock")
async def test_working_extends_the_lease(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        await jobs.retry_after(10).add("long", "q")
        job = await jobs.timeout(0).get("q")
        clock.advance(8)
        assert await jobs.working(job) == pytest.approx(clock.now() + 10)
        clock.advance(8)
        assert await jobs.timeout(0).get_many("q") == []
        await jobs.ack(job)
        with pytest.raises(InvalidState):
            await jobs.working(job)


@pytest.mark.requires("follows_clock", "recovers_stale")
async def test_retry_after_zero_is_never_redelivered(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        job_id = await jobs.retry_after(0).add("once", "q")
        job = await jobs.timeout(0).get("q")
        assert job.lease_until is None
        assert job_id.endswith(("0", "2", "4", "6", "8", "a", "c", "e"))  # Disque: even nibble
        clock.advance(10 * 86400)
        assert await jobs.timeout(0).get_many("q") == []
        assert await jobs.recover_stale() == 0
        assert await jobs.recover_stale(max_age=3600) == 1  # by hand, for a dead worker
        assert (await jobs.timeout(0).get("q")).additional_deliveries == 1


@pytest.mark.requires("recovers_stale", "follows_clock")
async def test_recover_stale_requeues_lapsed_leases(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        await jobs.retry_after(5).add("x", "q")
        await jobs.timeout(0).get("q")
        assert await jobs.recover_stale() == 0
        clock.advance(5)
        assert await jobs.recover_stale() == 1
        assert await jobs.qlen("q") == 1


@pytest.mark.requires("results")
async def test_nack_redelivers_at_once_in_its_old_place(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        first = await jobs.add("first", "q")
        await jobs.add("second", "q")
        job = await jobs.timeout(0).get("q")
        await jobs.nack(job)
        again = await jobs.timeout(0).get("q")
        assert again.id == first
        assert again.nacks == 1
        assert again.attempts == 2
        assert again.additional_deliveries == 0
        await jobs.ack(again)
        await jobs.nack(again)  # no longer leased: left alone
        assert (await jobs.show(first)).state is JobState.DONE


# -- a delivery's calls belong to that delivery (LeaseLost) ----------------------------------


async def _redelivered(jobs: AsyncClient, clock: ManualClock) -> tuple[Job, Job]:
    """A job whose first delivery (A) lost its lease to a second one (B)."""
    await jobs.retry_after(10).add("x", "q")
    first = await jobs.timeout(0).get("q")
    clock.advance(10)
    second = await jobs.timeout(0).get("q")
    assert (second.id, first.attempts, second.attempts) == (first.id, 1, 2)
    return first, second


@pytest.mark.requires("tracks_deliveries", "follows_clock")
@pytest.mark.parametrize("operation", ["ack", "nack", "fail", "working"])
async def test_a_late_call_of_an_older_delivery_raises_lease_lost_and_changes_nothing(
    store_url: str, clock: ManualClock, operation: str
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        first, second = await _redelivered(jobs, clock)
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "ack": lambda: jobs.ack(first, "A's result"),
            "nack": lambda: jobs.nack(first),
            "fail": lambda: jobs.fail(first, "A's error"),
            "working": lambda: jobs.working(first),
        }
        clock.advance(1)
        with pytest.raises(LeaseLost) as lost:
            await calls[operation]()
        assert (lost.value.job_id, lost.value.operation) == (first.id, operation)
        assert (lost.value.attempt, lost.value.current_attempt) == (1, 2)
        assert lost.value.state is JobState.ACTIVE
        assert lost.value.lost == (lost.value,)
        # The store itself refuses, whatever the client read before.
        store = jobs.store
        assert await store.ack([first.id], attempts=[1]) == []
        assert await store.nack([first.id], attempts=[1]) == {}
        assert await store.fail(first.id, "A's error", None, attempt=1) is False
        with pytest.raises(LeaseLost):
            await store.working(first.id, attempt=1)
        # B's delivery is intact: still leased to B, nothing counted or recorded.
        held = await jobs.show(first.id)
        assert (held.state, held.attempts, held.nacks, held.error_count) == (
            JobState.ACTIVE,
            2,
            0,
            0,
        )
        assert held.lease_until == pytest.approx(second.lease_until)
        assert await jobs.timeout(0).get_many("q") == []
        await jobs.ack(second, "B's result")
        assert await jobs.wait(first.id, timeout=0) == "B's result"


@pytest.mark.requires("tracks_deliveries", "follows_clock")
async def test_batches_apply_to_their_other_jobs_and_list_the_lost_ones(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        first, second = await _redelivered(jobs, clock)
        kept_id, held_id, extra_id = await jobs.add_many(["kept", "held", "extra"], "q")
        kept, held, extra = await jobs.timeout(0).get_many("q", count=3)
        assert [kept.id, held.id, extra.id] == [kept_id, held_id, extra_id]
        with pytest.raises(LeaseLost) as lost:
            await jobs.ack_many([first, kept], ["A's", "kept's"])
        assert [(e.job_id, e.attempt, e.current_attempt) for e in lost.value.lost] == [
            (first.id, 1, 2)
        ]
        assert (lost.value.operation, lost.value.applied) == ("ack", 1)
        assert await jobs.wait(kept_id, timeout=0) == "kept's"
        with pytest.raises(LeaseLost) as lost:
            await jobs.nack_many([held, first])
        assert [e.job_id for e in lost.value.lost] == [first.id]
        assert (lost.value.operation, lost.value.applied) == ("nack", 1)
        assert (await jobs.show(held_id)).state is JobState.QUEUED
        assert (await jobs.show(first.id)).state is JobState.ACTIVE
        held_again = await jobs.timeout(0).get("q")
        assert (held_again.id, held_again.attempts) == (held_id, 2)
        # Deliveries 1 (lost), 2 (held) and a bare id in one batch.
        with pytest.raises(LeaseLost) as lost:
            await jobs.ack_many([first, extra_id, held_again])
        assert ([e.job_id for e in lost.value.lost], lost.value.applied) == ([first.id], 2)
        for job_id in (extra_id, held_id):
            assert (await jobs.show(job_id)).state is JobState.DONE
        assert await jobs.ack_many([second]) == 1


@pytest.mark.requires("follows_clock", "results")
async def test_a_bare_id_acts_on_whatever_delivery_holds_the_job(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        first, _ = await _redelivered(jobs, clock)
        assert await jobs.working(first.id) == pytest.approx(clock.now() + 10)
        await jobs.nack(first.id)  # Disque's NACK: by id
        again = await jobs.timeout(0).get("q")
        # The lapse of the first delivery's lease was a redelivery: the second one took it.
        assert (again.attempts, again.nacks, again.additional_deliveries) == (3, 1, 1)
        await jobs.ack(first.id, "by id")  # Disque's ACKJOB: by id
        assert await jobs.wait(first.id, timeout=0) == "by id"


@pytest.mark.requires("results", "failures", "follows_clock")
@pytest.mark.parametrize("seen", [False, True], ids=["unseen", "requeued"])
@pytest.mark.parametrize("by", ["delivery", "id"])
@pytest.mark.parametrize("operation", ["ack", "nack", "fail", "fail for good", "working"])
async def test_a_lapsed_lease_nobody_took_still_belongs_to_its_delivery(
    store_url: str, clock: ManualClock, operation: str, by: str, seen: bool
) -> None:
    # Its lease ran out, yet no newer claim took the job: the delivery still holds it, so
    # its call does what it does on a leased job, and the lapse counts no redelivery.
    async with connect_async(store_url, clock=clock) as jobs:
        max_attempts = 1 if operation == "fail for good" else 3
        job_id = await jobs.retry_after(10).max_attempts(max_attempts).add("x", "q")
        job = await jobs.timeout(0).get("q")
        ref: Job | str = job if by == "delivery" else job.id
        clock.advance(11)
        if seen:
            # The store saw the lease run out (a read, a claim from another queue): the
            # job is ready for a newer claim, until one takes it.
            assert await jobs.timeout(0).get_many("other") == []
            assert await jobs.qlen("q") == 1
        if operation == "ack":
            await jobs.ack(ref, "late but first")
            assert await jobs.wait(job_id, timeout=0) == "late but first"
        elif operation == "nack":
            await jobs.nack(ref)
            back = await jobs.show(job_id)
            assert (back.state, back.nacks, back.lease_until) == (JobState.QUEUED, 1, None)
            assert await jobs.qlen("q") == 1
            again = await jobs.timeout(0).get("q")
            assert (again.id, again.attempts, again.nacks) == (job_id, 2, 1)
            await jobs.ack(again, "after the nack")
        elif operation == "fail":
            failed = await jobs.fail(ref, "late error")
            assert (failed.state, failed.error_count, failed.last_error) == (
                JobState.SCHEDULED,
                1,
                "late error",
            )
            assert failed.run_at == pytest.approx(clock.now() + jobs.backoff(1))
            assert await jobs.qlen("q") == 0
            clock.advance(jobs.backoff(1))
            again = await jobs.timeout(0).get("q")
            assert (again.id, again.attempts, again.error_count) == (job_id, 2, 1)
            await jobs.ack(again, "after the error")
        elif operation == "fail for good":
            failed = await jobs.fail(ref, "late error")
            assert (failed.state, failed.error_count) == (JobState.FAILED, 1)
            assert [j.id for j in await jobs.failed("q")] == [job_id]
            with pytest.raises(JobFailed):
                await jobs.wait(job_id, timeout=0)
        else:
            assert await jobs.working(ref) == pytest.approx(clock.now() + 10)
            held = await jobs.show(job_id)
            assert (held.state, held.lease_until) == (  # type: ignore[comparison-overlap]
                JobState.ACTIVE,
                pytest.approx(clock.now() + 10),
            )
            assert await jobs.qlen("q") == 0
            clock.advance(9.9)
            assert await jobs.timeout(0).get_many("q") == []
            await jobs.ack(ref, "kept working")
        final = await jobs.show(job_id)
        expected = JobState.FAILED if operation == "fail for good" else JobState.DONE
        assert (final.state, final.additional_deliveries) == (expected, 0)  # no redelivery


@pytest.mark.requires("follows_clock")
async def test_a_dequeue_ends_the_hold_of_a_lapsed_lease(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        job_id = await jobs.retry_after(10).add("x", "q")
        job = await jobs.timeout(0).get("q")
        clock.advance(11)
        assert await jobs.qlen("q") == 1  # requeued: an additional delivery...
        assert await jobs.dequeue([job_id]) == 1  # ...that DEQUEUE makes (attempts kept)
        await jobs.nack(job)
        back = await jobs.show(job_id)
        assert (back.state, back.attempts, back.nacks, back.additional_deliveries) == (
            JobState.QUEUED,
            1,
            1,
            1,
        )


@pytest.mark.requires("lease_holders", "failures")
async def test_release_leases_gives_a_dead_holders_jobs_back_at_once(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        store = jobs.store
        lost_ids = await jobs.add_many(["a", "b"], "q")
        alive_id = await jobs.add("c", "q")
        once_id = await jobs.retry_after(0).add("once", "q")
        dead = await store.claim(["q"], 2, holder="host:1")
        assert [job.id for job in dead] == lost_ids
        assert [job.id for job in await store.claim(["q"], 1, holder="host:2")] == [alive_id]
        assert [job.id for job in await store.claim(["q"], 1, holder="host:1")] == [once_id]
        # Leased by the dead holder before, by nobody now: not its job any more.
        again_id = await jobs.add("again", "r")
        dequeued_id = await jobs.add("dequeued", "r")
        await store.claim(["r"], 2, holder="host:1")
        await jobs.nack_many([again_id, dequeued_id])
        assert (await jobs.timeout(0).get("r")).id == again_id
        assert await jobs.dequeue([dequeued_id]) == 1

        assert await jobs.release_leases("host:1") == 3
        for job_id in lost_ids:
            job = await jobs.show(job_id)
            assert (job.state, job.attempts, job.additional_deliveries) == (
                JobState.QUEUED,
                1,
                1,
            )
        once = await jobs.show(once_id)  # at-most-once: never delivered twice
        assert (once.state, once.error_count, once.last_error) == (
            JobState.FAILED,
            1,
            HOLDER_GONE,
        )
        with pytest.raises(JobFailed):
            await jobs.wait(once_id, timeout=0)
        for job_id in (alive_id, again_id, dequeued_id):
            assert (await jobs.show(job_id)).state is JobState.ACTIVE
        assert await jobs.release_leases("host:1") == 0
        assert await jobs.release_leases("host:3") == 0
        redelivered = await jobs.timeout(0).get_many("q", count=10)
        assert [job.id for job in redelivered] == lost_ids
        with pytest.raises(LeaseLost):
            await jobs.ack(dead[0])  # should the dead one come back to life
        with pytest.raises(InvalidOption):
            await jobs.release_leases("")


# -- ack_many_and_get: acks what a consumer finished and leases the next jobs --------------


@pytest.mark.requires("results")
async def test_ack_many_and_get_acks_then_leases_the_next_jobs(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        ids = [await jobs.add(n, "q") for n in range(4)]
        first = await jobs.timeout(0).get("q")
        claimed, lost = await jobs.ack_many_and_get([first], ["r0"], "q", count=2)
        assert lost is None
        assert [job.id for job in claimed] == ids[1:3]
        assert all(job.state is JobState.ACTIVE and job.attempts == 1 for job in claimed)
        assert await jobs.wait(first, timeout=0) == "r0"
        # Nothing to ack: only a claim; nothing left to claim: only the acks.
        claimed, lost = await jobs.ack_many_and_get([], None, "q", count=5)
        assert ([job.id for job in claimed], lost) == (ids[3:], None)
        claimed, lost = await jobs.ack_many_and_get(claimed, None, "empty", "q")
        assert (claimed, lost) == ([], None)
        assert (await jobs.show(ids[3])).state is JobState.DONE


async def test_ack_many_and_get_checks_its_arguments(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        with pytest.raises(InvalidOption):
            await jobs.ack_many_and_get([], None, "q", count=0)
        with pytest.raises(InvalidOption):
            await jobs.ack_many_and_get([UNKNOWN_ID], ["r0", "r1"], "q")


@pytest.mark.requires("tracks_deliveries", "follows_clock")
async def test_ack_many_and_get_returns_lost_deliveries_and_keeps_what_it_claimed(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        await jobs.retry_after(10).add("lapsing", "q")
        first = await jobs.timeout(0).get("q")
        clock.advance(10)
        second = await jobs.timeout(0).get("q")  # the lease ran out: delivered again
        other = await jobs.add("other", "q")
        claimed, lost = await jobs.ack_many_and_get([first], None, "q")
        assert [job.id for job in claimed] == [other]
        assert lost is not None
        assert [(e.job_id, e.attempt, e.current_attempt) for e in lost.lost] == [(first.id, 1, 2)]
        assert (await jobs.show(second.id)).state is JobState.ACTIVE
