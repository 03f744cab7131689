"""Fair queue order: weighted and round-robin claims, so a busy first queue does not
starve the others; strict (Disque's leftmost-first) stays the default without weights."""

from __future__ import annotations

import asyncio
import collections
import time

import pytest
from click.testing import CliRunner

from disquette import Job, connect_async
from disquette.cli import main
from disquette.errors import InvalidOption, InvalidQueueName
from disquette.worker import FairOrder, Worker
from disquette.worker.fairness import parse_queue_spec


async def until(predicate: object, what: str, timeout: float = 30.0) -> None:
    """Poll a predicate without blocking the loop (a hang guard, not a timing check)."""
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.01)


def test_weighted_order_leads_each_queue_by_its_weight_evenly_spread() -> None:
    fair = FairOrder({"mail": 3, "images": 1}, "weighted")
    leads = [fair.next()[0] for _ in range(8)]
    assert collections.Counter(leads) == {"mail": 6, "images": 2}
    # Smooth: images leads once in every four claims, not twice in a row.
    assert leads[:4].count("images") == 1
    assert leads[4:].count("images") == 1
    # The other queues follow in their given order, so a claim finds any job.
    assert sorted(fair.next()) == ["images", "mail"]


def test_round_robin_and_strict_orders() -> None:
    fair = FairOrder({"a": 5, "b": 1, "c": 1}, "round_robin")
    assert [fair.next()[0] for _ in range(6)] == ["a", "b", "c", "a", "b", "c"]
    assert [fair.next(), fair.next()] == [["a", "b", "c"], ["b", "a", "c"]]
    strict = FairOrder({"a": 5, "b": 1}, "strict")
    assert [strict.next() for _ in range(3)] == [["a", "b"]] * 3


def test_queue_specs_and_their_errors() -> None:
    assert parse_queue_spec("mail:3, images:1,low") == {"mail": 3, "images": 1, "low": 1}
    assert parse_queue_spec("a:b") == {"a:b": 1}  # only digits make a weight
    with pytest.raises(InvalidOption):
        parse_queue_spec("mail:0")
    with pytest.raises(InvalidQueueName):
        parse_queue_spec(" , ")
    worker = Worker("memory://fair-spec", {"t": print}, queues={"mail": 3, "images": 1})
    assert (worker.queues, worker.order) == (["mail", "images"], "weighted")
    assert Worker("memory://fair-spec", {"t": print}, queues=["a", "b"]).order == "strict"
    with pytest.raises(InvalidOption):
        Worker("memory://fair-spec", {"t": print}, queues=["a"], order="random")  # type: ignore[arg-type]
    with pytest.raises(InvalidOption):
        Worker("memory://fair-spec", {"t": print}, queues={"a": True})


def test_environment_takes_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISQUETTE_QUEUES", "mail:3,images")
    worker = Worker("memory://fair-env", {"t": print})
    assert (worker.weights, worker.order) == ({"mail": 3, "images": 1}, "weighted")


def test_cli_rejects_a_bad_weight_and_order() -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["worker", "tests.worker.apps:app", "-q", "mail:0"])
    assert result.exit_code != 0
    assert "weight" in result.output
    result = runner.invoke(main, ["worker", "tests.worker.apps:app", "--order", "random"])
    assert result.exit_code == 2


async def _images_position(store_url: str, order: str | None, queues: object) -> int:
    """How many mail jobs started before the one images job, with 100 slow mail jobs
    queued ahead of it."""
    started: list[str] = []

    async def mail(job: Job) -> None:
        started.append("mail")
        await asyncio.sleep(0.005)

    async def images(job: Job) -> None:
        started.append("images")

    async with connect_async(store_url) as client:
        await client.type("mail").add_many(range(100), "mail")
        await client.type("images").add(0, "images")
        worker = Worker(
            client,
            {"mail": mail, "images": images},
            queues=queues,  # type: ignore[arg-type]
            order=order,  # type: ignore[arg-type]
            concurrency=2,
            prefetch=0,
        )
        await worker.start_async()
        try:
            await until(lambda: len(started) == 101, "every job")
        finally:
            await worker.stop_async()
    return started.index("images")


@pytest.mark.parametrize(
    ("order", "queues"),
    [
        (None, {"mail": 3, "images": 1}),
        ("round_robin", ["mail", "images"]),
    ],
)
async def test_with_slow_mail_jobs_the_images_queue_still_moves(
    store_url: str, order: str | None, queues: object
) -> None:
    # Claims of at most two jobs: images leads within the first few claims.
    assert await _images_position(store_url, order, queues) < 20


async def test_strict_order_serves_images_only_after_mail(store_url: str) -> None:
    # The control: Disque's order starves the second queue while the first has jobs.
    assert await _images_position(store_url, None, ["mail", "images"]) == 100
