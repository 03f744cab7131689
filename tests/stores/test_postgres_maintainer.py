"""The PostgreSQL store's maintainer (issue 12, ``011_maintainer.sql``): what time made due
applied by one process at a time in the background, never by a claim it covers; claims
outside its span (no maintainer, one that stopped) still apply a batch themselves."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import psycopg
import pytest

from disquette import ManualClock, connect, connect_async
from tests.servers.postgres import fresh_url, split_url

#: Rows one batch changes per step (maintain_batch's, as maintain_due's before it).
BATCH = 1000


@pytest.fixture
def url() -> str:
    return fresh_url()


def _until(what: Callable[[], bool]) -> None:
    """Wait for ``what()`` (a background task's doing), for a minute at most."""
    deadline = time.monotonic() + 60
    while not what():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.02)


def _scalar(url: str, statement: str) -> object:
    base, schema = split_url(url)
    with psycopg.connect(base, autocommit=True) as conn:
        row = conn.execute(statement.replace("{schema}", f'"{schema}"')).fetchone()
    return None if row is None else row[0]


def _span(url: str) -> tuple[float, float] | None:
    base, schema = split_url(url)
    with psycopg.connect(base, autocommit=True) as conn:
        row = conn.execute(
            f'SELECT covered_from, covered_until FROM "{schema}".maintainer'
        ).fetchone()
    return None if row is None else (float(row[0]), float(row[1]))


def _maintainer_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "disquette-maintain"]


def test_a_claim_the_maintainer_covers_applies_nothing(url: str) -> None:
    """With a live maintainer's span over the claim's clock reading, the claim leaves the
    due jobs to it; past the span (the maintainer stopped renewing) it applies a batch."""
    base, schema = split_url(url)
    clock = ManualClock(1e9)  # on a manual clock the store runs no maintainer of its own
    with connect(url, clock=clock) as jobs:
        jobs.delay(10).add_many(["x"] * (BATCH + 5), "q")
        clock.advance(11)
        with psycopg.connect(base, autocommit=True) as conn:  # a maintainer's span, by hand
            conn.execute(
                f'INSERT INTO "{schema}".maintainer (covered_from, covered_until) VALUES (%s, %s)',
                [clock.now() - 1, clock.now() + 1],
            )
            assert jobs.timeout(0).get_many("q") == []
            assert jobs.qlen("q") == 0
            clock.advance(2)
            assert len(jobs.timeout(0).get_many("q", count=2 * BATCH)) == BATCH
            conn.execute(f'DELETE FROM "{schema}".maintainer')
            assert len(jobs.timeout(0).get_many("q", count=2 * BATCH)) == 5


def test_the_maintainer_promotes_due_jobs_without_a_claim(url: str) -> None:
    with connect(url) as jobs:
        assert jobs.timeout(0).get_many("q") == []  # the first claim starts it
        jobs.delay(0.2).add_many(["x"] * (2 * BATCH + 10), "q")
        _until(
            lambda: (
                _scalar(url, "SELECT count(*) FROM {schema}.jobs WHERE state = 1") == 2 * BATCH + 10
            )
        )
        assert _span(url) is not None
        assert len(jobs.timeout(0).get_many("q", count=3 * BATCH)) == 2 * BATCH + 10


def test_one_store_leads_and_another_takes_over_when_it_closes(url: str) -> None:
    first = connect(url)
    second = connect(url)
    try:
        first.timeout(0).get_many("q")
        _until(lambda: _span(url) is not None)
        second.timeout(0).get_many("q")
        assert len(_maintainer_threads()) == 2
        first.close()
        # The leader gave the lead back (its span is gone); the standby takes it within
        # its next try of the lock.
        _until(lambda: _span(url) is not None)
        second.delay(0.1).add("later", "q")
        _until(lambda: _scalar(url, "SELECT count(*) FROM {schema}.jobs WHERE state = 1") == 1)
    finally:
        first.close()
        second.close()
    assert _maintainer_threads() == []
    assert _span(url) is None


def test_a_short_lived_store_sees_due_jobs_in_its_first_claim(url: str) -> None:
    with connect(url) as adder:
        job_id = adder.delay(0.05).add("soon", "q")
    time.sleep(0.1)  # due now; nobody maintains
    with connect(url) as getter:
        assert getter.timeout(0).get("q").id == job_id
    assert _maintainer_threads() == []


async def test_the_async_maintainer_stops_with_its_store(url: str) -> None:
    async with connect_async(url) as jobs:
        assert await jobs.timeout(0).get_many("q") == []
        await asyncio.to_thread(_until, lambda: _span(url) is not None)
        tasks = {task.get_name() for task in asyncio.all_tasks()}
        assert "disquette-maintain" in tasks
    assert "disquette-maintain" not in {task.get_name() for task in asyncio.all_tasks()}
    assert _span(url) is None
