"""Headers: what ``add(..., headers=...)`` gives a job comes back unchanged from every read
(get, show, peek, scan), on every store; bad headers are refused before anything is added."""

from __future__ import annotations

import pytest

from disquette import JobState, ManualClock, connect_async
from disquette.errors import InvalidOption
from disquette.funnel_async import AsyncFunnel
from disquette.job import MAX_HEADERS_BYTES

from ._fixtures import clock_fixture, store_url_fixture  # noqa: F401  # this module's fixtures

#: Tracing context as it will travel, plus text no store may change: non-ASCII, quotes,
#: backslashes, JSON-looking values, an empty value, control characters but NUL.
HEADERS = {
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "tracestate": "vendor=t61rcWkgMzE",
    "clé": "valeur é 日本語 🚀",
    'quote"back\\slash': '{"not": "json"}',
    "empty": "",
    "controls": "tab\there\nnewline\x01",
}


async def test_headers_round_trip_through_every_read(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        given = dict(HEADERS)
        job_id = await jobs.add({"n": 1}, "q", headers=given)
        given["traceparent"] = "changed after add"  # the job keeps what add was given
        plain_id = await jobs.add("plain", "q")
        assert (await jobs.show(job_id)).headers == HEADERS
        assert (await jobs.show(plain_id)).headers == {}
        peeked = await jobs.peek("q", 2)
        assert [job.headers for job in peeked] == [HEADERS, {}]
        _, scanned = await jobs.scan(0, 10, queue="q")
        assert {job.id: job.headers for job in scanned} == {job_id: HEADERS, plain_id: {}}
        first = await jobs.timeout(0).get("q")
        assert (first.id, first.body, first.headers) == (job_id, {"n": 1}, HEADERS)
        assert list(first.headers) == list(HEADERS)  # in the order they were given
        first.headers["traceparent"] = "changed by a handler"  # a copy, not the store's
        assert (await jobs.show(job_id)).headers == HEADERS
        second = await jobs.timeout(0).get("q")
        assert (second.id, second.headers) == (plain_id, {})


async def test_add_many_gives_every_job_the_headers(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        ids = await jobs.add_many([b"\x00a", "b", {"c": 3}], "q", headers={"batch": "7"})
        claimed = await jobs.timeout(0).get_many("q", count=3)
        assert [(job.id, job.headers) for job in claimed] == [(i, {"batch": "7"}) for i in ids]
        assert [job.body for job in claimed] == [b"\x00a", "b", {"c": 3}]
        # A batch with no headers next to one with some, and an empty dict: none.
        others = await jobs.add_many(["d", "e"], "q", headers={})
        assert [(await jobs.show(i)).headers for i in others] == [{}, {}]


async def test_headers_stay_through_nack_and_a_retry_after_failure(
    store_url: str, clock: ManualClock
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        job_id = await jobs.add("x", "q", headers={"k": "v"})
        await jobs.nack(await jobs.timeout(0).get("q"))
        again = await jobs.timeout(0).get("q")
        assert (again.id, again.nacks, again.headers) == (job_id, 1, {"k": "v"})


@pytest.mark.requires("results")
async def test_a_done_job_keeps_its_headers(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        job_id = await jobs.add("x", "q", headers={"k": "v"})
        await jobs.ack(await jobs.timeout(0).get("q"), "ok")
        done = await jobs.show(job_id)
        assert (done.state, done.headers) == (JobState.DONE, {"k": "v"})
        _, scanned = await jobs.scan(0, 10, states=[JobState.DONE])
        assert [job.headers for job in scanned] == [{"k": "v"}]


async def test_headers_at_the_size_limit_are_kept(store_url: str, clock: ManualClock) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        # 2 + (MAX - 2) bytes: exactly the limit, multi-byte characters counted as bytes.
        value = "é" * ((MAX_HEADERS_BYTES - 2) // 2)
        headers = {"é": value}
        job_id = await jobs.add("x", "q", headers=headers)
        assert (await jobs.timeout(0).get("q")).headers == headers
        assert (await jobs.show(job_id)).headers == headers


@pytest.mark.parametrize(
    "headers",
    [
        [("k", "v")],
        "k=v",
        {1: "v"},
        {"k": 1},
        {"k": None},
        {"k": b"v"},
        {"": "v"},
        {"k": "nul\x00"},
        {"nul\x00": "v"},
        {"k": "lone \udc80 surrogate"},
        {"k": "x" * MAX_HEADERS_BYTES},
        {f"k{n}": "é" * 100 for n in range(50)},
    ],
    ids=lambda headers: repr(headers)[:30],
)
async def test_bad_headers_are_refused_and_nothing_is_added(
    store_url: str, clock: ManualClock, headers: object
) -> None:
    async with connect_async(store_url, clock=clock) as jobs:
        with pytest.raises(InvalidOption) as refused:
            await jobs.add("x", "q", headers=headers)  # type: ignore[arg-type]
        assert refused.value.option == "headers"
        with pytest.raises(InvalidOption):
            await jobs.add_many(["x", "y"], "q", headers=headers)  # type: ignore[arg-type]
        assert await jobs.qlen("q") == 0


async def test_a_funnel_puts_and_requeues_with_headers(store_url: str, clock: ManualClock) -> None:
    async with (
        connect_async(store_url, clock=clock) as jobs,
        AsyncFunnel(jobs, "q", fetch_count=1, fetch_timeout=0.05) as funnel,
    ):
        await funnel.put("x", "q", headers={"k": "v"})
        async for handed in funnel:
            assert handed.headers == {"k": "v"}
            break
        new_id = await funnel.requeue(handed)
        assert (await jobs.show(new_id)).headers == {"k": "v"}
