"""Job dependencies on the Redis store, beyond the conformance suite: what they leave in
Redis (nothing once resolved), and the Cluster's rule (a parent in its child's hash slot),
checked on the three-master cluster of ``test_redis.py``.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from redis.crc import key_slot

from disquette import Job, JobState, ManualClock, connect
from disquette.client import Client
from disquette.errors import InvalidOption, JobNotFound
from disquette.flows import step
from disquette.job import new_job_id
from disquette.stores.redis.codec import queue_base
from disquette.stores.redis.store import RedisStore
from tests.servers.redis import conformance_url, driver, fresh_prefix, with_prefix


def _raw(url: str) -> Any:
    return driver().Redis.from_url(url.split("?")[0])


def _keys(url: str, store: RedisStore) -> list[str]:
    """Every key of the store's prefix, sorted."""
    return sorted(key.decode() for key in _raw(url).scan_iter(match=store.prefix + "*"))


def _take(jobs: Client, *queues: str) -> list[Any]:
    return jobs.timeout(0).get_many(*queues, count=100)


def test_resolved_dependencies_leave_no_lists_or_flags(tmp_path: Path) -> None:
    url = conformance_url(tmp_path)
    with connect(url, clock=ManualClock()) as jobs:
        store = jobs.store
        assert isinstance(store, RedisStore)
        top = jobs.add("top", "a")
        left = jobs.add("left", "b", depends_on=[top])
        right = jobs.add("right", "a", depends_on=[top], on_dependency_failure="run")
        bottom = jobs.add("bottom", "b", depends_on=[left, right])
        assert store.prefix + "j:" + top + ":c" in _keys(url, store)
        (first,) = _take(jobs, "a")
        jobs.ack(first)
        assert [job.id for job in _take(jobs, "a", "b")] == [right, left]
        jobs.cancel(left)  # active: a cancel request, ended by its holder
        jobs.store.cancel(left, attempt=1)
        assert jobs.show(bottom).state is JobState.CANCELLED
        jobs.ack(jobs.show(right))
        keys = _keys(url, store)
        assert [key for key in keys if key.endswith(":c")] == []
        raw = _raw(url)
        assert [raw.hget(store.prefix + "j:" + job_id, "ch") for job_id in (top, left)] == [
            None,
            None,
        ]
        assert raw.zcard(store.runner.queue_key("b", "b")) == 0  # the waiting set
        # A flush takes waiting jobs and their parents' lists too.
        parent = jobs.add("parent", "a")
        jobs.add_many(["x", "y"], "b", depends_on=[parent])
        jobs.flush()
        assert [key for key in _keys(url, store) if ":j:" in key or key.endswith(":c")] == []


def test_a_released_child_marks_its_queue_for_blocked_gets(tmp_path: Path) -> None:
    url = conformance_url(tmp_path)
    with connect(url) as jobs:
        store = jobs.store
        assert isinstance(store, RedisStore)
        parent = jobs.add("parent", "par")
        child = jobs.add("child", "kid", depends_on=[parent])
        marker = store.runner.queue_key("kid", "w")
        raw = _raw(url)
        assert raw.exists(marker) == 0  # a waiting job wakes nobody
        jobs.ack(jobs.timeout(0).get("par"))
        assert raw.exists(marker) == 1  # as an add of a ready job does
        assert jobs.timeout(0).get("kid").id == child


def _job(body: str, queue: str, now: float, parents: tuple[str, ...] = ()) -> Job:
    return Job(
        new_job_id(None, 300.0), queue, body.encode(), created_at=now, run_at=now,
        depends_on=parents,
    )  # fmt: skip


def test_a_batch_parent_counts_when_earlier_whatever_its_queue(tmp_path: Path) -> None:
    clock = ManualClock()
    with connect(conformance_url(tmp_path), clock=clock) as jobs:
        now = clock.now()
        # Queue a's jobs are not sent together: the child comes after its parent of queue b.
        first, parent = _job("first", "a", now), _job("parent", "b", now)
        child = _job("child", "a", now, (parent.id,))
        assert jobs.store.add([first, parent, child], None) == {}
        assert jobs.show(child.id).state is JobState.WAITING
        # A later job of the batch is no parent: the whole batch is refused.
        later = _job("later", "b", now)
        batch = [_job("other", "a", now), _job("early", "a", now, (later.id,)), later]
        with pytest.raises(JobNotFound) as refused:
            jobs.store.add(batch, None)
        assert refused.value.job_id == later.id
        assert [jobs.store.show(job.id) for job in batch] == [None] * 3


def same_slot_queues(prefix: str) -> tuple[str, str]:
    """Two queue names whose keys share a Cluster hash slot (found by trying names)."""
    seen: dict[int, str] = {}
    for n in itertools.count():
        queue = f"q{n}"
        slot = key_slot((queue_base(prefix, queue) + "r").encode())
        if slot in seen:
            return seen[slot], queue
        seen[slot] = queue
    raise AssertionError("unreachable")


def check_cluster_dependencies(url: str) -> None:
    """On a Redis Cluster (``url``): dependencies within a hash slot work, a parent in
    another slot is refused with ``InvalidOption`` before anything is added."""
    prefix = fresh_prefix()
    with connect(with_prefix(url, prefix), clock=ManualClock()) as jobs:
        store = jobs.store
        assert isinstance(store, RedisStore)
        assert store.cluster
        one, two = same_slot_queues(prefix + ":")
        other = next(
            name
            for name in ("x", "y", "z")
            if key_slot((queue_base(prefix + ":", name) + "r").encode())
            != key_slot((queue_base(prefix + ":", one) + "r").encode())
        )
        top = jobs.add("top", one)
        with pytest.raises(InvalidOption):
            jobs.add_many(["fine", "refused"], other, depends_on=[top])
        assert jobs.qlen(other) == 0
        # One add: a parent in another queue of the slot, and earlier jobs of the batch.
        chain = jobs.add_chain(step("a", two), step("b", one), step("c", two), after=[top])
        assert [jobs.show(job_id).state for job_id in chain] == [JobState.WAITING] * 3
        expected = [top, *chain]
        for job_id in expected:
            (job,) = _take(jobs, one, two)
            assert job.id == job_id
            jobs.ack(job)
        assert jobs.show(chain[-1]).state is JobState.DONE
