"""Blocking calls on the real clock: a waiting ``get`` or ``wait`` is woken by another
thread or task of the same process, on every store."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from disquette import Client, connect, connect_async
from disquette.errors import Timeout

from ._fixtures import store_url_fixture  # noqa: F401  # this module's fixture


def test_sync_get_wakes_when_another_thread_adds(store_url: str) -> None:
    with connect(store_url) as jobs:
        got: list[object] = []
        waiter = threading.Thread(target=lambda: got.append(jobs.timeout(10).get("q").body))
        waiter.start()
        time.sleep(0.05)
        jobs.add("wake", "q")
        waiter.join(10)
        assert got == ["wake"]


@pytest.mark.requires("results")
def test_sync_wait_returns_when_another_thread_acks(store_url: str) -> None:
    with connect(store_url) as jobs:
        job_id = jobs.add("x", "q")

        def work(client: Client) -> None:
            job = client.timeout(10).get("q")
            time.sleep(0.05)
            client.ack(job, "done by worker")

        worker = threading.Thread(target=work, args=(jobs,))
        worker.start()
        assert jobs.wait(job_id, timeout=10) == "done by worker"
        worker.join(10)


def test_sync_get_times_out_empty() -> None:
    with connect("memory://") as jobs, pytest.raises(Timeout):
        jobs.timeout(0.05).get("q")
    with connect("memory://") as jobs:
        assert jobs.timeout(0.05).get_many("q") == []


async def test_async_get_wakes_when_another_task_adds(store_url: str) -> None:
    async with connect_async(store_url) as jobs:
        waiter = asyncio.create_task(jobs.timeout(10).get("a", "b"))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        await jobs.add("wake", "b")
        job = await asyncio.wait_for(waiter, 10)
        assert (job.queue, job.body) == ("b", "wake")


async def test_async_get_wakes_when_a_thread_adds(store_url: str) -> None:
    async with connect_async(store_url) as jobs:
        waiter = asyncio.create_task(jobs.timeout(10).get("q"))
        await asyncio.sleep(0.05)
        with connect(store_url) as other:
            other.add("from a thread's client", "q")
        job = await asyncio.wait_for(waiter, 10)
        assert job.body == "from a thread's client"


async def test_many_async_getters_each_get_one_job(store_url: str) -> None:
    async with connect_async(store_url) as jobs:
        getters = [asyncio.create_task(jobs.timeout(10).get("q")) for _ in range(20)]
        await asyncio.sleep(0.05)
        await jobs.add_many(range(20), "q")
        got = await asyncio.wait_for(asyncio.gather(*getters), 10)
        assert sorted(job.body for job in got) == list(range(20))
