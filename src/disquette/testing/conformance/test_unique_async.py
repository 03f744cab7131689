"""Unique jobs: an add whose key a job of the queue holds adds nothing and answers that
job's id, on every store that can carry a key (``disque://`` refuses it)."""

from __future__ import annotations

import pytest

from disquette import Encoding, ManualClock, Options, connect_async
from disquette.errors import InvalidOption, NotSupported, UniqueKeyTaken
from disquette.job import AddResult, new_job

from ._fixtures import clock_fixture, store_url_fixture  # noqa: F401  # this module's fixtures


@pytest.mark.requires("unique")
async def test_a_taken_key_adds_nothing_and_answers_the_holder(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        first = await jobs.unique("report:42").add_result("a", "q")
        assert first.created
        again = await jobs.unique("report:42").add_result("b", "q")
        assert again == AddResult(first.id, False)
        assert await jobs.unique("report:42").add("c", "q") == first.id
        # The key is per queue, and another key is another job.
        assert (await jobs.unique("report:42").add_result("d", "other")).created
        assert (await jobs.unique("report:43").add_result("e", "q")).created
        assert await jobs.qlen("q") == 2
        job = await jobs.timeout(0).get("q")
        assert (job.id, job.body) == (first.id, "a")
        # Delivered (active), the job still holds its key.
        assert await jobs.unique("report:42").add("f", "q") == first.id


@pytest.mark.requires("unique")
async def test_add_many_answers_per_item(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        held = await jobs.unique("k1").add("held", "q")
        # One key for the batch: the first body creates the job, the others get its id.
        results = await jobs.unique("k2").add_many_results(["x", "y", "z"], "q")
        assert [r.created for r in results] == [True, False, False]
        assert {r.id for r in results} == {results[0].id}
        assert await jobs.unique("k1").add_many(["u", "v"], "q") == [held, held]
        # Jobs of several keys in one store call: each is answered on its own.
        now = clock.now()
        batch = [
            new_job(f"D-00000000-AAAAAAAAAAAAAAAAAAAAAA{n:02d}-0001", "q", b"", Encoding.BYTES, now)
            for n in range(4)
        ]
        for job, key in zip(batch, ["k1", "k3", "k3", None], strict=True):
            job.unique_key, job.unique_states = key, 7
        existing = await jobs.store.add(batch, None)
        assert existing == {batch[0].id: held, batch[2].id: batch[1].id}
        assert await jobs.qlen("q") == 4


@pytest.mark.requires("unique", "results", "failures")
async def test_the_key_is_free_again_once_its_holder_is_finished(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        keyed = jobs.unique("k").max_attempts(1)
        acked = await keyed.add("ack me", "q")
        await jobs.ack(await jobs.timeout(0).get("q"))
        failed = await keyed.add("fail me", "q")
        assert failed != acked
        await jobs.fail(await jobs.timeout(0).get("q"), "boom")
        deleted = await keyed.add("delete me", "q")
        assert deleted not in (acked, failed)
        # The failed job cannot come back while another holds its key.
        with pytest.raises(UniqueKeyTaken):
            await jobs.retry(failed)
        await jobs.delete(deleted)
        await jobs.retry(failed)
        assert await keyed.add("again", "q") == failed


@pytest.mark.requires("unique", "follows_clock")
async def test_the_key_is_free_again_once_its_holder_expired(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        first = await jobs.unique("k").ttl(10).add("a", "q")
        clock.advance(10)
        second = await jobs.unique("k").add_result("b", "q")
        assert second.created
        assert second.id != first


@pytest.mark.requires("unique", "follows_clock")
async def test_unique_for_holds_the_key_per_time_bucket(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        hourly = jobs.unique("digest", unique_for=3600)
        clock.advance(3600 - clock.now() % 3600)  # the start of a bucket
        first = await hourly.add("a", "q")
        clock.advance(3599)
        assert await hourly.add("b", "q") == first
        clock.advance(1)  # the next bucket: a new job, though the first still waits
        second = await hourly.add_result("c", "q")
        assert second.created
        assert second.id != first
        assert await jobs.qlen("q") == 2


@pytest.mark.requires("unique", "results")
async def test_done_counts_only_when_asked(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        once = jobs.unique("once", states=["scheduled", "queued", "active", "done"])
        first = await once.add("a", "q")
        await jobs.ack(await jobs.timeout(0).get("q"))
        assert await once.add_result("b", "q") == AddResult(first, False)
        # Without "done", the same key is free once the job is done.
        plain = jobs.unique("plain")
        done = await plain.add("c", "q")
        await jobs.ack(await jobs.timeout(0).get("q"))
        assert await plain.add("d", "q") != done


@pytest.mark.requires("unique")
async def test_a_delayed_job_holds_its_key(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        first = await jobs.unique("later").delay(60).add("a", "q")
        assert await jobs.unique("later").add("b", "q") == first
        assert await jobs.qlen("q") == 0


async def test_bad_unique_options_are_typed_errors(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        with pytest.raises(InvalidOption):
            jobs.unique("k" * 257)
        with pytest.raises(InvalidOption):
            jobs.unique("é" * 129)  # 258 bytes
        with pytest.raises(InvalidOption):
            jobs.unique("")
        with pytest.raises(InvalidOption):
            jobs.unique("k", unique_for=0)
        with pytest.raises(InvalidOption):
            jobs.unique("k", unique_for=-1)
        with pytest.raises(InvalidOption):
            jobs.unique("k", states=["queued", "sleeping"])
        with pytest.raises(InvalidOption):
            jobs.unique("k", states=["done"])  # the pending states always count
        with pytest.raises(InvalidOption):
            Options(unique_states=frozenset({"queued"}))  # type: ignore[arg-type]
        assert jobs.unique("k" * 256).options.unique_key == "k" * 256
        assert await jobs.qlen("q") == 0


async def test_a_store_without_unique_refuses_a_key(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        if jobs.store.capabilities.unique:
            assert (await jobs.unique("k").add_result("a", "q")).created
            return
        with pytest.raises(NotSupported):
            await jobs.unique("k").add("a", "q")
        assert await jobs.qlen("q") == 0
