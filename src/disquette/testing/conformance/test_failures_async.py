"""What fails and how: a job's errors (backoff, then kept as failed) and a caller's
mistakes (typed errors that lose nothing), on every store."""

from __future__ import annotations

import pytest

from disquette import JobState, ManualClock, Options, connect_async
from disquette.errors import (
    BodyNotSerializable,
    BodyTooLarge,
    InvalidJobId,
    InvalidOption,
    InvalidQueueName,
    InvalidState,
    JobFailed,
    JobNotFound,
    NotReplicated,
)
from disquette.job import DEFAULT_MAX_BODY_BYTES

from . import UNKNOWN_ID
from ._fixtures import clock_fixture, store_url_fixture  # noqa: F401  # this module's fixtures


@pytest.mark.requires("failures", "follows_clock")
async def test_fail_backs_off_then_keeps_the_job_failed(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        job_id = await jobs.max_attempts(3).add("flaky", "q")
        for errors, backoff in [(1, 1.0), (2, 2.0)]:
            job = await jobs.timeout(0).get("q")
            failed = await jobs.fail(job, f"boom {errors}")
            assert failed.state is JobState.SCHEDULED
            assert failed.error_count == errors
            assert failed.last_error == f"boom {errors}"
            assert failed.run_at == pytest.approx(clock.now() + backoff)
            clock.advance(backoff - 0.01)
            assert await jobs.timeout(0).get_many("q") == []
            clock.advance(0.01)
        job = await jobs.timeout(0).get("q")
        final = await jobs.fail(job, "boom 3")
        assert final.state is JobState.FAILED
        assert [j.id for j in await jobs.failed()] == [job_id]
        assert [j.id for j in await jobs.failed("q")] == [job_id]
        assert await jobs.failed("other") == []
        with pytest.raises(JobFailed) as raised:
            await jobs.wait(job_id, timeout=0)
        assert raised.value.error_count == 3
        assert raised.value.last_error == "boom 3"
        clock.advance(365 * 86400)  # failed jobs are kept
        await jobs.retry(job_id)
        again = await jobs.timeout(0).get("q")
        assert again.id == job_id
        assert again.error_count == 3
        with pytest.raises(InvalidState):
            await jobs.retry(job_id)


async def test_options_compose_across_use_with_and_fluent(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        jobs.use(Options(priority=7, retry_after=60))
        derived = jobs.with_options(Options(ttl=600)).delay(5).type("t")
        assert derived.options.priority == 7
        assert derived.options.retry_after == 60
        assert (derived.options.ttl, derived.options.delay, derived.options.type) == (600, 5, "t")
        assert jobs.options.ttl is None  # deriving does not change the parent
        job_id = await derived.priority(3).add("x", "q")
        job = await jobs.show(job_id)
        assert (job.priority, job.retry_after, job.type) == (3, 60, "t")
        assert job.run_at == pytest.approx(clock.now() + 5)
        assert job.expires_at == pytest.approx(clock.now() + 600)
        await derived.close()  # a derived client leaves the shared store open
        assert await jobs.qlen("q") == 0


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("ttl", -1),
        ("ttl", 0),
        ("delay", float("nan")),
        ("delay", float("inf")),
        ("retry_after", -0.5),
        ("timeout", -1),
        ("priority", 2**40),
        ("priority", True),
        ("priority", 1.5),
        ("max_len", 0),
        ("max_attempts", 0),
        ("replicate", -1),
        ("delay", 10**12),
        ("type", ""),
        ("result_ttl", "60"),
    ],
)
async def test_bad_option_values_are_refused(
    store_url: str, clock: ManualClock, option: str, value: object
) -> None:
    with pytest.raises(InvalidOption) as refused:
        Options(**{option: value})  # type: ignore[arg-type]
    assert refused.value.option == option
    async with connect_async(store_url, clock=clock) as jobs:
        fluent = getattr(jobs, option)
        with pytest.raises(InvalidOption):
            fluent(value)


async def test_a_huge_body_is_refused_before_it_is_copied(
    store_url: str, clock: ManualClock
) -> None:
    huge = memoryview(bytearray(DEFAULT_MAX_BODY_BYTES + 1))
    async with connect_async(store_url, clock=clock) as jobs:
        with pytest.raises(BodyTooLarge) as refused:
            await jobs.add(huge, "q")
        assert refused.value.size == DEFAULT_MAX_BODY_BYTES + 1
        with pytest.raises(BodyTooLarge):
            await jobs.add("x" * (DEFAULT_MAX_BODY_BYTES + 1), "q")
        assert await jobs.qlen("q") == 0


async def test_bad_input_gets_typed_errors_and_loses_nothing(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock, max_body_bytes=1024) as jobs:
        kept = await jobs.add("kept", "q")
        for name in ["", "tab\there", "nul\x00", "x" * 201, 42]:
            with pytest.raises(InvalidQueueName):
                await jobs.add("x", name)  # type: ignore[arg-type]
        with pytest.raises(InvalidQueueName):
            await jobs.get()
        with pytest.raises(BodyNotSerializable):
            await jobs.add(object(), "q")
        with pytest.raises(BodyNotSerializable):
            await jobs.add({"nan": float("nan")}, "q")
        with pytest.raises(BodyTooLarge) as too_large:
            await jobs.add(b"x" * 1025, "q")
        assert (too_large.value.size, too_large.value.limit) == (1025, 1024)
        with pytest.raises(BodyTooLarge):
            await jobs.add_many(["ok", "y" * 2000], "q")
        with pytest.raises(NotReplicated):
            await jobs.replicate(1).add("x", "q")
        for bad_id in ["nope", "D-" + "x" * 38, 12]:
            with pytest.raises(InvalidJobId):
                await jobs.show(bad_id)  # type: ignore[arg-type]
        for operation in (jobs.show, jobs.ack, jobs.nack, jobs.delete, jobs.working, jobs.retry):
            with pytest.raises(JobNotFound) as missing:
                await operation(UNKNOWN_ID)
            assert missing.value.job_id == UNKNOWN_ID
        with pytest.raises(JobNotFound):
            await jobs.wait(UNKNOWN_ID, timeout=0)
        with pytest.raises(InvalidOption):
            await jobs.get_many("q", count=0)
        with pytest.raises(InvalidOption):
            await jobs.peek("q", -1)
        assert await jobs.qlen("q") == 1
        assert (await jobs.timeout(0).get("q")).id == kept
