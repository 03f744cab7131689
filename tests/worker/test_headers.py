"""Handlers read a job's headers as ``job.headers``, sync and async alike."""

from __future__ import annotations

from disquette import Job, connect_async
from disquette.worker import Worker


async def test_handlers_get_the_headers_the_job_was_added_with(store_url: str) -> None:
    def sync_handler(job: Job) -> dict[str, str]:
        return job.headers

    async def async_handler(job: Job) -> dict[str, str]:
        return job.headers

    async with connect_async(store_url) as client:
        worker = Worker(client, {"sync": sync_handler, "async": async_handler}, queues=["q"])
        await worker.start_async()
        try:
            headers = {"traceparent": "00-abc-01", "clé": "é"}
            a = await client.type("sync").add("x", "q", headers=headers)
            b = await client.type("async").add("y", "q", headers=headers)
            c = await client.type("sync").add("z", "q")
            assert await client.wait(a, timeout=20) == headers
            assert await client.wait(b, timeout=20) == headers
            assert await client.wait(c, timeout=20) == {}
        finally:
            await worker.stop_async()
