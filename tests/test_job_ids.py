"""Job ids: Disque's shape, unique, time-ordered, and never shared with a forked child."""

from __future__ import annotations

import binascii
import itertools
import multiprocessing
import os
import time

import pytest

from disquette.job_ids import _IdSource, check_job_id, job_id_factory


def _fields(job_id: str) -> tuple[int, int, bytes]:
    """An id's milliseconds, counter and random bytes."""
    raw = binascii.a2b_base64(job_id[11:35])
    assert len(raw) == 18
    return int.from_bytes(raw[:6], "big"), int.from_bytes(raw[6:8], "big"), raw[8:]


def test_ids_have_disques_shape() -> None:
    new_id = job_id_factory(3600, 30, "abcdef01")
    for job_id in (new_id() for _ in range(600)):
        assert check_job_id(job_id) == job_id
        assert job_id.startswith("D-abcdef01-")
        assert job_id.endswith("-003d")  # 60 minutes, odd: redelivered
    assert job_id_factory(3600, 0, "abcdef01")().endswith("-003c")


def test_ids_carry_the_time_and_a_counter_across_batches() -> None:
    before = time.time_ns() // 1_000_000
    new_id = job_id_factory(None, 300.0)
    ids = [new_id() for _ in range(3 * _IdSource.BATCH + 7)]
    after = time.time_ns() // 1_000_000
    fields = [_fields(job_id) for job_id in ids]
    assert all(before <= millis <= after for millis, _, _ in fields)
    # One counter for every id, batch after batch (wrapping at 16 bits).
    counters = [counter for _, counter, _ in fields]
    assert all((b - a) % 0x10000 == 1 for a, b in itertools.pairwise(counters))
    assert len({randoms for _, _, randoms in fields}) == len(ids)
    assert len(set(ids)) == len(ids)


def test_the_counter_wraps_between_batches() -> None:
    source = _IdSource()
    source._counter = 0xFFFF - 3  # four ids to the wrap: a short batch
    tails = [source.tail() for _ in range(6)]
    counters = [int.from_bytes(binascii.a2b_base64(tail)[:2], "big") for tail in tails]
    assert counters == [0xFFFD, 0xFFFE, 0xFFFF, 0, 1, 2]


def _child_ids(queue: multiprocessing.Queue[list[str]]) -> None:
    new_id = job_id_factory(None, 300.0)
    queue.put([new_id() for _ in range(50)])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_a_forked_child_never_hands_out_its_parents_ids() -> None:
    new_id = job_id_factory(None, 300.0)
    new_id()  # the parent has a batch made, not used yet
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[list[str]] = context.Queue()
    child = context.Process(target=_child_ids, args=(queue,))
    child.start()
    from_child = queue.get(timeout=60)
    child.join(timeout=60)
    from_parent = [new_id() for _ in range(50)]
    assert not {job_id[11:35] for job_id in from_child} & {job_id[11:35] for job_id in from_parent}
