"""Funnels on the sync client (fetcher on a thread): the same guarantees as the asyncio
flavor, plus several consumer threads on one funnel and closing from another thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from disquette import Client, Job, JobState, ManualClock, connect
from disquette.errors import ClientClosed, InvalidOption
from disquette.funnel import Funnel

#: Short fetches, so that closing (which waits for a fetch in flight) is quick.
FETCH = 0.05
#: Hang guard for waits and thread joins (pytest-timeout guards the iterations).
GUARD = 30.0


def take(funnel: Funnel, count: int) -> list[Job]:
    """The next ``count`` jobs the funnel hands over."""
    received: list[Job] = []
    for job in funnel:
        received.append(job)
        if len(received) == count:
            break
    return received


def until(predicate: Callable[[], bool], what: str) -> None:
    """Poll ``predicate`` (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + GUARD
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting until {what}")
        time.sleep(0.01)


def active(jobs: Client, queue: str) -> int:
    row = jobs.stats().by_queue().get(queue)
    return 0 if row is None else row.active


def test_jobs_come_leftmost_queue_first_in_order_and_acked(
    store_url: str, clock: ManualClock
) -> None:
    with connect(store_url, clock=clock) as jobs:
        for n in range(5):
            jobs.add(f"high-{n}", "high")
            jobs.add(f"urgent-{n}", "urgent")
        with Funnel(jobs, "urgent", "high", fetch_count=3, fetch_timeout=FETCH, buffer=4) as funnel:
            received = take(funnel, 10)
        assert [job.body for job in received] == [f"urgent-{n}" for n in range(5)] + [
            f"high-{n}" for n in range(5)
        ]
        assert all(jobs.show(job.id).state is JobState.DONE for job in received)
        assert jobs.qlen("urgent") == jobs.qlen("high") == 0


def test_close_mid_stream_loses_nothing_and_duplicates_nothing(
    store_url: str, clock: ManualClock
) -> None:
    total, taken, buffer = 120, 37, 25
    with connect(store_url, clock=clock) as jobs:
        ids = jobs.add_many(range(total), "q")
        with Funnel(jobs, "q", fetch_count=10, fetch_timeout=FETCH, buffer=buffer) as funnel:
            handed = [job.id for job in take(funnel, taken)]
            # Close while the buffer holds fetched, leased, undelivered jobs.
            until(lambda: active(jobs, "q") == buffer, "the fetcher fills the buffer")
        assert handed == ids[:taken]
        rest = ids[taken:]
        assert all(jobs.show(job_id).state is JobState.DONE for job_id in handed)
        left = [jobs.show(job_id) for job_id in rest]
        assert all(job.state is JobState.QUEUED for job in left)
        assert sum(job.nacks for job in left) == buffer
        assert sum(job.additional_deliveries for job in left) == 0
        assert jobs.qlen("q") == total - taken

        with Funnel(jobs, "q", fetch_count=10, fetch_timeout=FETCH) as funnel:
            assert [job.id for job in take(funnel, len(rest))] == rest
        assert jobs.qlen("q") == 0
        assert active(jobs, "q") == 0


def test_consumer_threads_share_a_funnel_closed_from_another_thread(
    store_url: str, clock: ManualClock
) -> None:
    total = 150
    with connect(store_url, clock=clock) as jobs:
        ids = jobs.add_many(range(total), "q")
        funnel = Funnel(jobs, "q", fetch_count=7, fetch_timeout=FETCH, buffer=20)
        handed: list[list[str]] = [[], [], []]
        errors: list[BaseException] = []

        def consume(mine: list[str]) -> None:
            try:
                for job in funnel:  # ends when the main thread closes the funnel
                    assert job.state is JobState.DONE
                    mine.append(job.id)
            except BaseException as exc:
                errors.append(exc)

        with funnel:
            threads = [threading.Thread(target=consume, args=(mine,)) for mine in handed]
            for thread in threads:
                thread.start()
            until(lambda: sum(map(len, handed)) >= total // 2, "half the jobs are handed over")
        for thread in threads:
            thread.join(GUARD)
            assert not thread.is_alive()
        assert errors == []
        received = [job_id for mine in handed for job_id in mine]
        assert len(received) == len(set(received))
        left = [job_id for job_id in ids if job_id not in set(received)]
        assert all(jobs.show(job_id).state is JobState.DONE for job_id in received)
        assert all(jobs.show(job_id).state is JobState.QUEUED for job_id in left)
        assert jobs.qlen("q") == len(left)


def test_put_sends_with_the_client_options_and_feeds_a_funnel(
    store_url: str, clock: ManualClock
) -> None:
    with connect(store_url, clock=clock) as jobs:
        with Funnel(jobs.priority(7).type("reply"), "in", fetch_timeout=FETCH) as funnel:
            out_id = funnel.put({"n": 1}, "out")
            in_id = funnel.put(b"\x00loop", "in")
            (looped,) = take(funnel, 1)
        out = jobs.show(out_id)
        assert (out.queue, out.body, out.priority, out.type) == ("out", {"n": 1}, 7, "reply")
        assert (looped.id, looped.body, looped.state) == (in_id, b"\x00loop", JobState.DONE)
        with pytest.raises(ClientClosed):
            funnel.put("late", "out")
        with pytest.raises(ClientClosed):
            funnel.requeue(looped)


def test_requeue_puts_a_handed_over_job_back_as_a_new_job(
    store_url: str, clock: ManualClock
) -> None:
    with connect(store_url, clock=clock) as jobs:
        client = jobs.type("t").priority(5).retry_after(30).max_attempts(3)
        bodies: list[object] = [b"\x00\xff", "texte", {"k": [1]}]
        for body in bodies:
            client.add(body, "q")
        with Funnel(jobs, "q", fetch_count=3, fetch_timeout=FETCH) as funnel:
            (first,) = take(funnel, 1)
            new_id = funnel.requeue(first)
            assert jobs.show(first.id).state is JobState.DONE
            copy = jobs.show(new_id)
            # Queued, or already leased by the fetcher, which had room for it.
            assert copy.state in (JobState.QUEUED, JobState.ACTIVE)
            assert (copy.raw_body, copy.encoding, copy.type, copy.priority) == (
                first.raw_body,
                first.encoding,
                "t",
                5,
            )
            received = take(funnel, 3)
        assert [job.body for job in received] == [*bodies[1:], bodies[0]]
        assert received[-1].id == new_id


def test_close_is_idempotent_and_ends_iteration(store_url: str, clock: ManualClock) -> None:
    with connect(store_url, clock=clock) as jobs:
        job_id = jobs.add("kept", "q")
        funnel = Funnel(jobs, "q", fetch_timeout=FETCH)
        with funnel:
            funnel.close()
            funnel.close()
            assert funnel.closed
            assert list(funnel) == []
        funnel.close()
        assert list(funnel) == []
        # Fetched or not before the close, the job is back in its queue.
        assert jobs.show(job_id).state is JobState.QUEUED
        assert jobs.qlen("q") == 1


def test_a_buffered_job_whose_lease_ran_out_is_fetched_again_not_handed_twice(
    store_url: str, clock: ManualClock
) -> None:
    with connect(store_url, clock=clock) as jobs:
        first, second = jobs.retry_after(10).add_many(["a", "b"], "q")
        with Funnel(jobs, "q", fetch_count=2, fetch_timeout=FETCH) as funnel:
            (got,) = take(funnel, 1)
            clock.advance(11)
            (again,) = take(funnel, 1)
        assert (got.id, again.id, again.attempts) == (first, second, 2)
        assert jobs.show(second).state is JobState.DONE


def test_a_fetcher_error_reaches_the_consumer(sqlite_url: str) -> None:
    jobs = connect(sqlite_url)
    with Funnel(jobs, "q", fetch_timeout=FETCH) as funnel:
        jobs.close()  # the store goes away under the fetcher thread
        with pytest.raises(ClientClosed):
            next(funnel)
        with pytest.raises(ClientClosed):
            next(funnel)


def test_bad_arguments_are_refused() -> None:
    with connect("memory://") as jobs:
        with pytest.raises(InvalidOption):
            Funnel(jobs, "q", fetch_count=0)
        with pytest.raises(InvalidOption):
            Funnel(jobs, "q", fetch_timeout=0)
