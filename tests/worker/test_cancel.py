"""Cancelling running jobs on every store: an async handler gets ``CancelledError``, a sync
one sees ``job.cancel_requested`` (or is stopped at its exec timeout), and the job ends
``cancelled``; progress a handler reports is seen from another process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from disquette import Job, JobState, connect_async
from disquette.errors import JobCancelled
from disquette.worker import Worker
from tests.conformance.conftest import STORES

ROOT = Path(__file__).resolve().parents[2]
EVERY_STORE = ["memory", "sqlite", "postgres", "redis"]


async def until(predicate: Any, what: str, timeout: float = 30.0) -> None:
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


async def _cancel_while_running(url: str, handler: Any, started: threading.Event) -> str:
    """Run ``handler`` in a worker, cancel its job from another client once it started,
    and return the job's id once the job ended cancelled."""
    async with connect_async(url) as client, connect_async(url) as other:
        worker = Worker(client, {"slow": handler}, queues=["q"], exec_timeout=60)
        await worker.start_async()
        try:
            job_id = await client.type("slow").add("x", "q")
            await until(started.is_set, "the handler to start")
            assert await other.cancel(job_id) is JobState.ACTIVE
            with pytest.raises(JobCancelled):
                await other.wait(job_id, timeout=30)
        finally:
            await worker.stop_async()
        job = await other.show(job_id)
        assert (job.state, job.cancel_requested, job.attempts) == (JobState.CANCELLED, True, 1)
        assert worker.processed == 0
        return job_id


@pytest.mark.parametrize("store", EVERY_STORE)
async def test_a_running_async_handler_gets_cancelled_error(store: str, tmp_path: Path) -> None:
    started = threading.Event()
    seen: list[str] = []

    async def slow(job: Job) -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            seen.append("CancelledError")
            raise

    await _cancel_while_running(STORES[store](tmp_path), slow, started)
    assert seen == ["CancelledError"]


@pytest.mark.parametrize("store", EVERY_STORE)
async def test_a_running_sync_handler_stops_at_its_next_check(store: str, tmp_path: Path) -> None:
    started = threading.Event()
    checks: list[bool] = []

    def slow(job: Job) -> str:
        started.set()
        deadline = time.monotonic() + 60  # a hang guard
        while not job.cancel_requested and time.monotonic() < deadline:
            time.sleep(0.01)
        checks.append(job.cancel_requested)
        return "stopped early"  # the request wins: the job ends cancelled, not done

    await _cancel_while_running(STORES[store](tmp_path), slow, started)
    assert checks == [True]


async def test_a_sync_handler_that_never_checks_stops_at_its_exec_timeout(
    store_url: str,
) -> None:
    started = threading.Event()
    release = threading.Event()

    def stubborn(job: Job) -> None:
        started.set()
        release.wait(60)

    async with connect_async(store_url) as client:
        worker = Worker(client, {"stubborn": stubborn}, queues=["q"], exec_timeout=3)
        await worker.start_async()
        try:
            job_id = await client.type("stubborn").add("x", "q")
            await until(started.is_set, "the handler to start")
            await client.cancel(job_id)
            with pytest.raises(JobCancelled):
                await client.wait(job_id, timeout=30)
        finally:
            release.set()
            await worker.stop_async()
        job = await client.show(job_id)
        assert (job.state, job.error_count) == (JobState.CANCELLED, 0)


async def test_a_job_cancelled_while_queued_never_runs(store_url: str) -> None:
    ran: list[str] = []

    async with connect_async(store_url) as client:
        job_id = await client.type("t").add("x", "q")
        await client.cancel(job_id)
        later = await client.type("t").add("y", "q")
        worker = Worker(client, {"t": lambda job: ran.append(job.body)}, queues=["q"])
        await worker.start_async()
        try:
            await client.wait(later, timeout=30)
        finally:
            await worker.stop_async()
        assert ran == ["y"]
        assert (await client.show(job_id)).state is JobState.CANCELLED


READER = """
import json, sys
from disquette import connect
with connect(sys.argv[1]) as jobs:
    print(json.dumps(jobs.show(sys.argv[2]).progress))
"""


@pytest.mark.parametrize("store", ["sqlite", "postgres", "redis"])
async def test_progress_is_visible_from_another_process(store: str, tmp_path: Path) -> None:
    url = STORES[store](tmp_path)
    reported = threading.Event()
    release = threading.Event()

    async with connect_async(url) as client:

        async def crunch(job: Job) -> None:
            await client.progress(job, {"done": 3, "of": 10})
            reported.set()
            await asyncio.to_thread(release.wait, 60)

        worker = Worker(client, {"crunch": crunch}, queues=["q"])
        await worker.start_async()
        try:
            job_id = await client.type("crunch").add("x", "q")
            await until(reported.is_set, "the progress report")
            read = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-c", READER, url, job_id],
                capture_output=True,
                text=True,
                timeout=60,
                env={"PYTHONPATH": str(ROOT / "src")},
                check=True,
            )
            assert json.loads(read.stdout) == {"done": 3, "of": 10}
        finally:
            release.set()
            await worker.stop_async()
        assert (await client.show(job_id)).state is JobState.DONE
