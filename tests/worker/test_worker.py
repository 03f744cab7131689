"""The worker in-process, on the memory store and on SQLite files: results, failures and
retries, unknown types, exec timeouts, heartbeats, stopping, misuse, environment."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest

from disquette import AsyncClient, Job, JobState, ManualClock, Options, connect, connect_async
from disquette.errors import InvalidOption, JobFailed
from disquette.worker import (
    AlreadyRunning,
    NoHandlers,
    NotRunning,
    Registry,
    UnknownJobType,
    Worker,
    WorkerPool,
)

from .conftest import wait_until


def fast_retries(url: str, clock: Any = None) -> AsyncClient:
    """A client whose retries come after milliseconds, not seconds."""
    return connect_async(url, clock=clock, backoff_base=0.001, backoff_cap=0.01)


async def until(predicate: Any, what: str = "", timeout: float = 20.0) -> None:
    """Poll an async or sync predicate without blocking the loop (a hang guard)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.01)


async def test_sync_and_async_handlers_results_become_what_wait_returns(store_url: str) -> None:
    def double(job: Job) -> int:
        assert threading.current_thread() is not threading.main_thread()
        return int(job.body["n"]) * 2

    async def shout(job: Job) -> str:
        return str(job.body).upper()

    async def nothing(job: Job) -> None:
        return None

    async with fast_retries(store_url) as client:
        worker = Worker(
            client, {"double": double, "shout": shout, "nothing": nothing}, queues=["q"]
        )
        await worker.start_async()
        try:
            a = await client.type("double").add({"n": 21}, "q")
            b = await client.type("shout").add("hi", "q")
            c = await client.type("nothing").add(b"\x00", "q")
            assert await client.wait(a, timeout=20) == 42
            assert await client.wait(b, timeout=20) == "HI"
            assert await client.wait(c, timeout=20) is None
        finally:
            await worker.stop_async()
        for job_id in (a, b, c):
            job = await client.show(job_id)
            assert (job.state, job.attempts, job.error_count) == (JobState.DONE, 1, 0)
        assert worker.processed == 3


async def test_errors_are_stored_with_traceback_retried_then_failed(store_url: str) -> None:
    attempts: list[int] = []

    def broken(job: Job) -> None:
        attempts.append(job.attempts)
        raise ValueError(f"bad input on attempt {job.attempts}")

    async with fast_retries(store_url) as client:
        worker = Worker(client, {"broken": broken}, queues=["q"])
        await worker.start_async()
        try:
            job_id = await client.type("broken").max_attempts(3).add("x", "q")
            with pytest.raises(JobFailed) as failure:
                await client.wait(job_id, timeout=20)
        finally:
            await worker.stop_async()
        job = await client.show(job_id)
    assert attempts == [1, 2, 3]
    assert (job.state, job.error_count, job.attempts) == (JobState.FAILED, 3, 3)
    assert failure.value.error_count == 3
    assert job.last_error is not None
    assert "Traceback (most recent call last)" in job.last_error
    assert "in broken" in job.last_error
    assert job.last_error.endswith("ValueError: bad input on attempt 3")


async def test_unknown_type_is_an_error_logged_loudly(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="disquette.worker")
    async with fast_retries(store_url) as client:
        worker = Worker(client, {"known": lambda job: None}, queues=["q"])
        await worker.start_async()
        try:
            job_id = await client.type("mystery").max_attempts(1).add("x", "q")
            untyped = await client.max_attempts(1).add("y", "q")
            for target in (job_id, untyped):
                with pytest.raises(JobFailed):
                    await client.wait(target, timeout=20)
        finally:
            await worker.stop_async()
        job = await client.show(job_id)
    assert job.last_error is not None
    assert "no handler for type 'mystery'" in job.last_error
    assert "known" in job.last_error
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR and "mystery" in r.message]
    assert loud, "an unknown type is logged at ERROR"
    assert getattr(loud[0], "job_id", None) == job_id


async def test_a_queue_no_handler_declares_is_logged_once_at_start(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry = Registry()
    registry.register("send", lambda job: None, queue="mail")
    registry.register("resize", lambda job: None, queue="images")
    catch_all = Registry()
    catch_all.register("send", lambda job: None, queue="mail")
    catch_all.register("*", lambda job: None)
    cases: list[tuple[Any, list[str], list[str]]] = [
        (registry, ["mail", "nosuchqueue", "images", "other"], ["nosuchqueue", "other"]),
        (registry, ["mail"], []),
        (catch_all, ["nosuchqueue"], []),  # the catch-all takes anything
        ({"send": lambda job: None}, ["nosuchqueue"], []),  # a mapping declares no queue
    ]
    for handlers, queues, unserved in cases:
        caplog.clear()
        caplog.set_level(logging.INFO, logger="disquette.worker")
        async with connect_async(store_url) as client:
            worker = Worker(client, handlers, queues=queues)
            await worker.start_async()
            await worker.stop_async()
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == len(unserved), warnings
        for queue, message in zip(unserved, warnings, strict=True):
            assert f"no handler declares queue {queue!r}" in message
            assert "(the handlers declare: mail, images)" in message
            assert "no catch-all '*'" in message


async def test_catch_all_handler_gets_jobs_without_their_own(store_url: str) -> None:
    async def anything(job: Job) -> str:
        return f"caught {job.type}"

    async with fast_retries(store_url) as client:
        worker = Worker(client, {"*": anything, "own": lambda job: "own"}, queues=["q"])
        await worker.start_async()
        try:
            a = await client.type("other").add("x", "q")
            b = await client.type("own").add("x", "q")
            c = await client.add("x", "q")
            assert await client.wait(a, timeout=20) == "caught other"
            assert await client.wait(b, timeout=20) == "own"
            assert await client.wait(c, timeout=20) == "caught None"
        finally:
            await worker.stop_async()


async def test_exec_timeout_cancels_async_and_abandons_sync_handlers(store_url: str) -> None:
    release = threading.Event()
    cancelled = asyncio.Event()

    async def sleepy(job: Job) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def stuck(job: Job) -> None:
        release.wait(60)

    registry = Registry()
    registry.register("sleepy", sleepy, exec_timeout=0.2)
    registry.register("stuck", stuck, exec_timeout=0.2)
    registry.register("quick", lambda job: "ok")
    async with fast_retries(store_url) as client:
        worker = Worker(client, registry, queues=["q"], concurrency=1)
        await worker.start_async()
        try:
            a = await client.type("sleepy").max_attempts(1).add("x", "q")
            b = await client.type("stuck").max_attempts(1).add("x", "q")
            c = await client.type("quick").add("x", "q")
            for job_id in (a, b):
                with pytest.raises(JobFailed) as failure:
                    await client.wait(job_id, timeout=20)
                assert "exec timeout" in str(failure.value.last_error)
            # The stuck thread is abandoned and replaced: concurrency 1 still runs jobs.
            assert await client.wait(c, timeout=20) == "ok"
        finally:
            await worker.stop_async()
            release.set()
    assert cancelled.is_set()
    assert worker.abandoned == 1


async def test_heartbeats_keep_a_long_job_leased() -> None:
    clock = ManualClock()
    release = asyncio.Event()
    url = "memory://heartbeat"
    async with connect_async(url, clock=clock) as client:

        async def long(job: Job) -> str:
            await release.wait()
            return "finished"

        worker = Worker(client, {"long": long}, queues=["q"])
        await worker.start_async()
        try:
            job_id = await client.type("long").retry_after(10).add("x", "q")
            await until(lambda: _state(client, job_id, JobState.ACTIVE), "the job to be leased")
            first_lease = (await client.show(job_id)).lease_until
            assert first_lease is not None
            # Six times past the original lease: each time, past half the current lease.
            for _ in range(6):
                lease = (await client.show(job_id)).lease_until
                assert lease is not None
                clock.advance(6)
                await until(
                    lambda lease=lease: _lease_after(client, job_id, lease),
                    "a heartbeat to extend the lease",
                )
            assert (await client.timeout(0).get_many("q")) == [], "redelivered while leased"
            release.set()
            assert await client.wait(job_id, timeout=20) == "finished"
        finally:
            release.set()
            await worker.stop_async()
        job = await client.show(job_id)
    assert (job.attempts, job.additional_deliveries) == (1, 0)
    assert clock.now() > first_lease + 20


@pytest.mark.parametrize("outcome", ["result", "error"])
async def test_a_worker_whose_delivery_was_redelivered_leaves_the_job_to_the_new_one(
    store_url: str, caplog: pytest.LogCaptureFixture, outcome: str
) -> None:
    caplog.set_level(logging.WARNING, logger="disquette.worker")
    release = asyncio.Event()

    async def slow(job: Job) -> str:
        await release.wait()
        if job.body == "error":
            raise RuntimeError("A's error")
        return "A's result"

    async with fast_retries(store_url) as client:
        # One job at a time and none prefetched: the worker does not take the job back.
        worker = Worker(client, {"slow": slow}, queues=["q"], concurrency=1, prefetch=0)
        await worker.start_async()
        try:
            job_id = await client.type("slow").add(outcome, "q")
            await until(lambda: _state(client, job_id, JobState.ACTIVE), "the job to start")
            # As if the worker's lease ran out: delivered again, to another consumer (B).
            assert await client.enqueue([job_id]) == 1
            newer = await client.timeout(0).get("q")
            assert (newer.id, newer.attempts) == (job_id, 2)
            release.set()
            await until(lambda: worker.leases_lost == 1, "the worker to be refused")
        finally:
            release.set()
            await worker.stop_async()
        job = await client.show(job_id)
        assert (job.state, job.attempts, job.error_count, job.result) == (
            JobState.ACTIVE,
            2,
            0,
            None,
        )
        await client.ack(newer, "B's result")
        assert await client.wait(job_id, timeout=0) == "B's result"
    warnings = [r for r in caplog.records if "lost its lease" in r.getMessage()]
    assert [r.levelno for r in warnings] == [logging.WARNING]
    assert getattr(warnings[0], "job_id", None) == job_id
    assert worker.leases_lost == 1


async def test_a_heartbeat_that_finds_the_job_redelivered_drops_its_outcome(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="disquette.worker")
    clock = ManualClock()
    release = asyncio.Event()

    async def long(job: Job) -> str:
        await release.wait()
        return "A's result"

    async with connect_async("memory://lease-lost-heartbeat", clock=clock) as client:
        worker = Worker(client, {"long": long}, queues=["q"], concurrency=1, prefetch=0)
        await worker.start_async()
        try:
            job_id = await client.type("long").retry_after(10).add("x", "q")
            await until(lambda: _state(client, job_id, JobState.ACTIVE), "the job to start")
            clock.advance(10)  # the worker froze past its lease: another consumer takes it
            newer = await client.timeout(0).get("q")
            assert newer.attempts == 2
            await until(lambda: worker.leases_lost == 1, "the heartbeat to be refused")
            release.set()
            await until(lambda: worker.processed == 1, "the handler to return")
        finally:
            release.set()
            await worker.stop_async()
        job = await client.show(job_id)
    assert (job.state, job.attempts, job.result) == (JobState.ACTIVE, 2, None)
    assert len([r for r in caplog.records if "lost its lease" in r.getMessage()]) == 1
    assert worker.leases_lost == 1


async def _state(client: AsyncClient, job_id: str, state: JobState) -> bool:
    return (await client.show(job_id)).state is state


async def _lease_after(client: AsyncClient, job_id: str, lease: float) -> bool:
    current = (await client.show(job_id)).lease_until
    return current is not None and current > lease


async def test_graceful_stop_gives_prefetched_back_and_lets_running_finish(
    store_url: str,
) -> None:
    started = threading.Event()
    release = threading.Event()

    def blocking(job: Job) -> str:
        started.set()
        release.wait(30)
        return "finished"

    async with fast_retries(store_url) as client:
        ids = await client.type("blocking").add_many(["a", "b", "c", "d"], "q")
        worker = Worker(client, {"blocking": blocking}, queues=["q"], concurrency=1, prefetch=3)
        await worker.start_async()
        await until(started.is_set, "the first job to start")
        stopping = asyncio.create_task(worker.stop_async())
        # The prefetched jobs go back at once, while the running one still runs.
        await until(lambda: _count(client, ids, JobState.QUEUED, 3), "the buffer to be NACKed")
        assert not stopping.done()
        release.set()
        await stopping
        jobs = [await client.show(job_id) for job_id in ids]
    assert jobs[0].state is JobState.DONE
    assert jobs[0].result == "finished"
    for job in jobs[1:]:
        assert (job.state, job.nacks, job.attempts) == (JobState.QUEUED, 1, 1)


async def _count(client: AsyncClient, ids: list[str], state: JobState, expected: int) -> bool:
    jobs = [await client.show(job_id) for job_id in ids]
    return sum(job.state is state for job in jobs) == expected


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_forced_stop_and_grace_expiry_give_running_jobs_back(
    store_url: str, kind: str
) -> None:
    started = threading.Event()
    release = threading.Event()

    def blocking_sync(job: Job) -> None:
        started.set()
        release.wait(30)

    async def blocking_async(job: Job) -> None:
        started.set()
        await asyncio.sleep(30)

    handler = blocking_sync if kind == "sync" else blocking_async
    async with fast_retries(store_url) as client:
        for how in ("force", "grace"):
            started.clear()
            job_id = await client.type("blocking").add(how, "q")
            worker = Worker(client, {"blocking": handler}, queues=["q"], concurrency=1)
            await worker.start_async()
            await until(started.is_set, "the job to start")
            if how == "force":
                await worker.stop_async(force=True)
            else:
                await worker.stop_async(grace=0.1)
            job = await client.show(job_id)
            assert (job.state, job.nacks) == (JobState.QUEUED, 1), how
            await client.delete(job_id)
    release.set()


def test_start_stop_misuse_raises_typed_errors(sqlite_url: str) -> None:
    with pytest.raises(NoHandlers):
        Worker(sqlite_url, {})
    with pytest.raises(InvalidOption):
        Worker(sqlite_url, {"t": print}, concurrency=0)
    with pytest.raises(InvalidOption):
        Worker(sqlite_url, {"t": "not callable"})  # type: ignore[dict-item]
    worker = Worker(sqlite_url, {"t": lambda job: None}, queues=["q"])
    with pytest.raises(NotRunning):
        worker.stop()
    worker.start()
    try:
        assert worker.running
        with pytest.raises(AlreadyRunning):
            worker.start()
        with pytest.raises(AlreadyRunning):
            worker.run()
    finally:
        worker.stop()
    assert not worker.running
    with pytest.raises(NotRunning):
        worker.stop()
    # A stopped worker can start again.
    worker.start()
    worker.stop()


def test_start_raises_what_prevents_starting(tmp_path: Any) -> None:
    from disquette.errors import StoreUnavailable

    worker = Worker(f"sqlite:///{tmp_path}/missing/dir/x.db", {"t": print})
    with pytest.raises(StoreUnavailable):
        worker.start()
    assert not worker.running


def test_work_one_and_a_sync_client(store_url: str) -> None:
    with connect(store_url) as client:
        worker = Worker(client, {"inc": lambda job: job.body + 1}, queues=["q"])
        assert worker.work_one() is False
        job_id = client.type("inc").add(41, "q")
        assert worker.work_one() is True
        assert client.wait(job_id, timeout=5) == 42
        assert worker.work_one() is False
        # run() in a thread, stopped from here, shares the sync client's store.
        more = client.type("inc").add_many(range(10), "q")
        thread = threading.Thread(target=worker.run)
        thread.start()
        assert [client.wait(job_id, timeout=20) for job_id in more] == list(range(1, 11))
        wait_until(lambda: worker.running, what="the worker to run")
        worker.stop()
        thread.join(10)
        assert not thread.is_alive()


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> None:
    monkeypatch.setenv("DISQUETTE_QUEUES", "high, low")
    monkeypatch.setenv("DISQUETTE_CONCURRENCY", "3")
    worker = Worker(sqlite_url, {"t": print})
    assert (worker.queues, worker.concurrency) == (["high", "low"], 3)
    explicit = Worker(sqlite_url, {"t": print}, queues=["x"], concurrency=5)
    assert (explicit.queues, explicit.concurrency) == (["x"], 5)
    monkeypatch.setenv("DISQUETTE_CONCURRENCY", "many")
    with pytest.raises(InvalidOption):
        Worker(sqlite_url, {"t": print})
    monkeypatch.delenv("DISQUETTE_QUEUES")
    monkeypatch.delenv("DISQUETTE_CONCURRENCY")
    assert Worker(sqlite_url, {"t": print}).queues == ["default"]


async def test_structured_log_extras(store_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="disquette.worker")

    def flaky(job: Job) -> None:
        if job.attempts == 1:
            raise RuntimeError("first attempt fails")

    async with fast_retries(store_url) as client:
        worker = Worker(client, {"flaky": flaky}, queues=["q"])
        await worker.start_async()
        try:
            job_id = await client.type("flaky").add("x", "q")
            await client.wait(job_id, timeout=20)
        finally:
            await worker.stop_async()
    records = [r for r in caplog.records if getattr(r, "job_id", None) == job_id]
    warning = vars(next(r for r in records if r.levelno == logging.WARNING))
    assert (warning["queue"], warning["job_type"], warning["attempt"]) == ("q", "flaky", 1)
    assert warning["duration"] >= 0
    done = vars(next(r for r in records if r.message.endswith("done")))
    assert done["attempt"] == 2


async def test_unstorable_result_fails_the_job(store_url: str) -> None:
    async with fast_retries(store_url) as client:
        worker = Worker(client, {"odd": lambda job: {1, 2}}, queues=["q"])
        await worker.start_async()
        try:
            job_id = await client.type("odd").max_attempts(1).add("x", "q")
            with pytest.raises(JobFailed) as failure:
                await client.wait(job_id, timeout=20)
        finally:
            await worker.stop_async()
    assert "cannot be stored" in str(failure.value.last_error)


async def test_many_jobs_leftmost_queue_first_and_a_pool(store_url: str) -> None:
    seen: list[str] = []

    async def record(job: Job) -> None:
        seen.append(job.queue)

    async with connect_async(store_url) as client:
        await client.type("r").add_many(range(50), "low")
        await client.type("r").add_many(range(50), "high")
        worker = Worker(client, {"r": record}, queues=["high", "low"], concurrency=1, prefetch=0)
        await worker.start_async()
        await until(lambda: len(seen) == 100, "every job")
        await worker.stop_async()
        assert seen == ["high"] * 50 + ["low"] * 50
        pool = WorkerPool(client, {"r": record}, size=3, queues=["high", "low"], concurrency=4)
        await pool.start_async()
        with pytest.raises(AlreadyRunning):
            await pool.start_async()
        ids = await client.type("r").add_many(range(300), "low")
        await until(lambda: _count(client, ids, JobState.DONE, 300), "the pool to finish")
        await pool.stop_async()
        with pytest.raises(NotRunning):
            await pool.stop_async()
    assert len(seen) == 400


def test_pool_in_a_thread_on_a_url(sqlite_url: str) -> None:
    with connect(sqlite_url) as client:
        ids = client.type("t").add_many(range(200), "default")
        pool = WorkerPool(sqlite_url, {"t": lambda job: job.body}, size=2)
        pool.start()
        try:
            assert [client.wait(job_id, timeout=20) for job_id in ids] == list(range(200))
        finally:
            pool.stop()
        assert not pool.running


def test_unknown_type_error_names_known_types() -> None:
    error = UnknownJobType("x", ["a", "b"])
    assert str(error) == "no handler for type 'x' (this worker knows: a, b)"
    assert isinstance(error, LookupError)


def test_registry_rejects_duplicates_and_bad_names() -> None:
    registry = Registry({"a": print})
    with pytest.raises(InvalidOption):
        registry.register("a", print)
    with pytest.raises(InvalidOption):
        registry.register("", print)
    with pytest.raises(InvalidOption):
        registry.register("b", print, exec_timeout=0)
    registry.register("c", print, queue="mail")
    assert registry.queues == ["mail"]
    assert registry.resolve("missing") is None
    assert Options(type="a").type == "a"


async def test_acks_ride_with_the_next_claim(store_url: str) -> None:
    sent: list[int] = []

    async def double(job: Job) -> int:
        return int(job.body) * 2

    async with fast_retries(store_url) as client:
        store = client.store
        original = store.ack_and_claim

        async def spy(*args: Any, **kwargs: Any) -> tuple[list[str], list[Job]]:
            sent.append(len(args[0]))
            return await original(*args, **kwargs)

        store.ack_and_claim = spy  # type: ignore[method-assign]
        ids = await client.type("double").add_many(range(30), "q")
        odd = await client.type("odd").max_attempts(1).add("x", "q")
        handlers = {"double": double, "odd": lambda job: {1, 2}}
        worker = Worker(client, handlers, queues=["q"], concurrency=1, prefetch=0)
        await worker.start_async()
        try:
            results = [await client.wait(job_id, timeout=20) for job_id in ids]
            # A result that cannot be stored still fails its own job only.
            with pytest.raises(JobFailed) as failure:
                await client.wait(odd, timeout=20)
        finally:
            await worker.stop_async()
    assert results == [n * 2 for n in range(30)]
    assert "cannot be stored" in str(failure.value.last_error)
    # One job at a time: the fetcher sends the finished job's ack with its next claim.
    assert sum(sent) >= 1
