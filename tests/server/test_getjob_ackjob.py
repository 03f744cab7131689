"""GETJOB and ACKJOB as Disque orders them, and gathered across connections."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from disquette.clock import SystemClock
from disquette.job import Encoding, JobState, new_job
from disquette.stores import open_store

from .conftest import ServerProcess, Wire, encode


def _ids(reply: bytes) -> list[bytes]:
    return [line for line in reply.split(b"\r\n") if line.startswith(b"D-")]


def _bodies(reply: bytes) -> list[bytes]:
    # Each job is *3 $queue $id $body: the body is the line after the id's.
    lines = reply.split(b"\r\n")
    return [lines[i + 2] for i, line in enumerate(lines) if line.startswith(b"D-")]


def _qstat(wire: Wire, queue: str) -> dict[bytes, bytes]:
    lines = wire.call("QSTAT", queue).split(b"\r\n")[1:]
    fields: dict[bytes, bytes] = {}
    i = 0
    while i + 3 < len(lines):  # $len name, then :int or $len value or *0
        name = lines[i + 1]
        if lines[i + 2].startswith(b"$"):
            fields[name], i = lines[i + 3], i + 4
        else:
            fields[name], i = lines[i + 2], i + 3
    return fields


@pytest.mark.parametrize("store", ["sqlite", "memory"])
def test_getjob_takes_one_job_per_queue_per_pass(
    start_server: Callable[..., ServerProcess], store: str
) -> None:
    server = start_server("memory://" if store == "memory" else None)
    wire = Wire(server.port)
    for body in ("b", "c", "d"):
        wire.call("ADDJOB", "L1", body, "0")
    wire.call("ADDJOB", "L2", "a", "0")
    # Pass one takes b from L1 and a from L2; pass two, c from L1.
    assert _bodies(wire.call("GETJOB", "COUNT", "3", "FROM", "L1", "L2")) == [b"b", b"a", b"c"]
    for body in ("e", "f", "g"):
        wire.call("ADDJOB", "L2", body, "0")
    # A queue listed twice serves twice per pass: e, d, f; then g (L1 has no more).
    reply = wire.call("GETJOB", "NOHANG", "COUNT", "10", "FROM", "L2", "L1", "L2")
    assert _bodies(reply) == [b"e", b"d", b"f", b"g"]


@pytest.mark.parametrize("store", ["sqlite", "memory"])
def test_gathered_getjobs_get_what_they_would_get_one_after_the_other(
    start_server: Callable[..., ServerProcess], store: str
) -> None:
    wire = Wire(start_server("memory://" if store == "memory" else None).port)
    for queue, body in (("hi", "h1"), ("hi", "h2"), ("lo", "l1"), ("a", "a1"), ("a", "a2")):
        wire.call("ADDJOB", queue, body, "0")
    # Sent at once, these share one store call per queue; each still takes the leftmost
    # queue first, and a request on other queues in between keeps its place.
    wire.send(
        encode("GETJOB", "NOHANG", "FROM", "hi", "lo")
        + encode("GETJOB", "NOHANG", "FROM", "hi", "lo")
        + encode("GETJOB", "NOHANG", "FROM", "a")
        + encode("GETJOB", "NOHANG", "FROM", "a", "b")
        + encode("GETJOB", "NOHANG", "FROM", "a")
    )
    assert [_bodies(wire.read()) for _ in range(5)] == [[b"h1"], [b"h2"], [b"a1"], [b"a2"], []]


def test_a_queue_paused_for_delivery_does_not_cost_a_getjob_its_count(
    start_server: Callable[..., ServerProcess],
) -> None:
    wire = Wire(start_server().port)
    wire.call("ADDJOB", "held", "x", "0")
    wire.call("PAUSE", "held", "out")  # QLEN still counts its job; GETJOB must skip it
    for body in ("r1", "r2", "r3"):
        wire.call("ADDJOB", "ready", body, "0")
    reply = wire.call("GETJOB", "NOHANG", "COUNT", "3", "FROM", "held", "ready")
    assert _bodies(reply) == [b"r1", b"r2", b"r3"]


def test_a_blocked_getjob_gets_the_one_job_that_woke_it(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server()
    waiting, adding = Wire(server.port), Wire(server.port)
    waiting.send(encode("GETJOB", "TIMEOUT", "10000", "COUNT", "5", "FROM", "wake"))
    for _ in range(200):  # until the GETJOB is blocked
        if b":1\r\n" in adding.call("QSTAT", "wake"):
            break
        adding.call("DEBUG", "SLEEP", "0.02")
    adding.send(b"".join(encode("ADDJOB", "wake", f"job-{i}", "0") for i in range(3)))
    for _ in range(3):
        assert adding.read().startswith(b"+D-")
    assert waiting.read().startswith(b"*1\r\n")
    assert adding.call("QLEN", "wake") == b":2\r\n"


def test_pipelined_acks_count_each_request_on_its_own(
    start_server: Callable[..., ServerProcess],
) -> None:
    wire = Wire(start_server().port)
    first, second, third = (wire.call("ADDJOB", "q", b, "0")[1:-2] for b in ("1", "2", "3"))
    assert len(_ids(wire.call("GETJOB", "COUNT", "3", "FROM", "q"))) == 3
    unknown = b"D-00000000-AAAAAAAAAAAAAAAAAAAAAAAA-0001"
    # Sent at once, the three ACKJOBs share one store call; each still gets its own count,
    # and an id acked twice counts for the first request only.
    wire.send(
        encode("ACKJOB", first, second)
        + encode("ACKJOB", second, third, unknown)
        + encode("ACKJOB", first)
        + encode("ACKJOB", "bad-id")
    )
    replies = [wire.read() for _ in range(4)]
    assert replies == [b":2\r\n", b":1\r\n", b":0\r\n", b"-BADID Invalid Job ID format.\r\n"]


def test_acked_jobs_kept_for_no_time_go_at_once_the_others_stay_done(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    # SQLite deletes a batch's acked jobs whose result is kept for no time (the server's
    # --result-ttl 0) in the ack itself; a job another client added with a result TTL in
    # the same batch stays done, in batches of either kind first.
    url = f"sqlite:///{tmp_path / 'mixed.db'}"
    wire = Wire(start_server(url, "--result-ttl", "0").port)
    store = open_store(url, SystemClock())
    try:
        for kept_first in (False, True, True, False):
            kept = new_job(
                f"D-0000000{int(kept_first)}-{'K' * 24}-0001",
                "mix",
                b"k",
                Encoding.BYTES,
                SystemClock().now(),
                result_ttl=3600.0,
            )
            if kept_first:  # a batch of kept jobs only: the store tries the other kind first
                store.add([kept], None)
                (only,) = _ids(wire.call("GETJOB", "NOHANG", "FROM", "mix"))
                assert wire.call("ACKJOB", only) == b":1\r\n"
                assert store.show(kept.id).state is JobState.DONE  # type: ignore[union-attr]
                store.delete([kept.id])
                continue
            dropped = [wire.call("ADDJOB", "mix", body, "0")[1:-2] for body in ("a", "b")]
            store.add([kept], None)
            got = _ids(wire.call("GETJOB", "NOHANG", "COUNT", "3", "FROM", "mix"))
            assert sorted(got) == sorted([*dropped, kept.id.encode()])
            unknown = b"D-00000000-AAAAAAAAAAAAAAAAAAAAAAAA-0001"
            assert wire.call("ACKJOB", *got, unknown) == b":3\r\n"
            # Gone from the file with the ack, not left for the expiry to delete.
            raw = sqlite3.connect(tmp_path / "mixed.db")
            ids = [job_id.decode() for job_id in dropped]
            left = raw.execute("SELECT count(*) FROM jobs WHERE id IN (?, ?)", ids).fetchone()
            raw.close()
            assert left == (0,)
            assert wire.call("ACKJOB", *got) == b":0\r\n"
            assert [store.show(job_id.decode()) for job_id in dropped] == [None, None]
            assert store.show(kept.id).state is JobState.DONE  # type: ignore[union-attr]
            store.delete([kept.id])
    finally:
        store.close()


@pytest.mark.parametrize("store", ["sqlite", "memory"])
def test_acks_and_getjobs_of_one_loop_iteration_settle_together(
    start_server: Callable[..., ServerProcess], tmp_path: Path, store: str
) -> None:
    url = f"sqlite:///{tmp_path / 'cycle.db'}" if store == "sqlite" else "memory://"
    server = start_server(url, "--result-ttl", "0")
    acking, getting, sleeping = (Wire(server.port) for _ in range(3))
    added = [acking.call("ADDJOB", "cycle", body, "0")[1:-2] for body in "abcd"]
    assert _ids(acking.call("GETJOB", "NOHANG", "COUNT", "2", "FROM", "cycle")) == added[:2]
    # The loop sleeps while an ACKJOB and a GETJOB arrive: both run in its next iteration,
    # one store call (one transaction on SQLite) for the two.
    sleeping.send(encode("DEBUG", "SLEEP", "0.3"))
    acking.send(encode("ACKJOB", *added[:2]))
    getting.send(encode("GETJOB", "TIMEOUT", "1000", "COUNT", "5", "FROM", "cycle"))
    assert sleeping.read() == b"+OK\r\n"
    assert acking.read() == b":2\r\n"
    assert _ids(getting.read()) == added[2:]
    # The first two were acked (gone): only the two just got are acked now.
    assert acking.call("ACKJOB", *added) == b":2\r\n"
    assert acking.call("QLEN", "cycle") == b":0\r\n"


def test_a_pipeline_mixing_kinds_runs_in_request_order(
    start_server: Callable[..., ServerProcess],
) -> None:
    wire = Wire(start_server().port)
    wire.send(
        encode("GETJOB", "NOHANG", "FROM", "mixed")
        + encode("ADDJOB", "mixed", "x", "0")
        + encode("GETJOB", "NOHANG", "FROM", "mixed")
        + encode("QLEN", "mixed")
    )
    assert wire.read() == b"*-1\r\n"  # the ADDJOB after it had not run yet
    added = wire.read()[1:-2]
    assert _ids(wire.read()) == [added]
    assert wire.read() == b":0\r\n"


def test_jobs_got_and_acked_by_many_connections_at_once_go_out_once(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server()
    loader = Wire(server.port)
    total = 2000
    loader.send(b"".join(encode("ADDJOB", "many", f"j{i}", "0") for i in range(total)))
    added = {loader.read()[1:-2] for _ in range(total)}
    got: list[bytes] = []
    acked: list[int] = []
    lock = threading.Lock()

    def consume() -> None:
        wire = Wire(server.port)
        while True:
            wire.send(encode("GETJOB", "NOHANG", "COUNT", "7", "FROM", "many") * 5)
            ids = [job_id for _ in range(5) for job_id in _ids(wire.read())]
            if not ids:
                return
            wire.send(b"".join(encode("ACKJOB", job_id) for job_id in ids))
            counts = [int(wire.read()[1:-2]) for _ in ids]
            with lock:
                got.extend(ids)
                acked.extend(counts)

    threads = [threading.Thread(target=consume) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(got) == total
    assert set(got) == added
    assert acked == [1] * total
    assert loader.call("QLEN", "many") == b":0\r\n"


def test_qstat_age_idle_and_queues_a_blocking_getjob_creates(
    start_server: Callable[..., ServerProcess],
) -> None:
    wire = Wire(start_server().port)
    assert wire.call("QSTAT", "made") == b"*-1\r\n"
    assert wire.call("GETJOB", "NOHANG", "FROM", "made") == b"*-1\r\n"
    assert wire.call("QSTAT", "made") == b"*-1\r\n"  # NOHANG creates nothing
    assert wire.call("GETJOB", "TIMEOUT", "10", "FROM", "made") == b"*-1\r\n"
    empty = _qstat(wire, "made")  # the queue object outlives the GETJOB, as in Disque
    assert (empty[b"name"], empty[b"len"], empty[b"blocked"]) == (b"made", b":0", b":0")
    assert b"registered_queues:1" in wire.call("INFO", "queues")

    wire.call("ADDJOB", "aging", "x", "0")
    wire.call("DEBUG", "SLEEP", "1.2")
    before = _qstat(wire, "aging")
    assert int(before[b"age"][1:]) >= 1
    assert int(before[b"idle"][1:]) >= 1
    assert len(_ids(wire.call("GETJOB", "FROM", "aging"))) == 1
    after = _qstat(wire, "aging")
    # Used 1.2 s after it was made: idle restarted, age did not.
    assert int(after[b"age"][1:]) - int(after[b"idle"][1:]) >= 1
    assert (after[b"jobs-in"], after[b"jobs-out"]) == (b":1", b":1")


def test_jobs_in_counts_every_queueing_as_disque_does(
    start_server: Callable[..., ServerProcess],
) -> None:
    # Disque's enqueueJob (src/queue.c) counts jobs-in for ADDJOB, NACK and ENQUEUE alike.
    wire = Wire(start_server().port)
    ids = [wire.call("ADDJOB", "counted", f"j{i}", "0")[1:-2] for i in range(3)]
    other = wire.call("ADDJOB", "elsewhere", "x", "0")[1:-2]
    assert len(_ids(wire.call("GETJOB", "COUNT", "3", "FROM", "counted"))) == 3
    assert wire.call("NACK", ids[0]) == b":1\r\n"
    assert wire.call("ENQUEUE", ids[1]) == b":1\r\n"
    assert wire.call("ENQUEUE", ids[1]) == b":0\r\n"  # queued already: no queueing
    # Several ids, some requeued: the ones requeued count, in their own queues.
    assert wire.call("NACK", other, ids[0], ids[2]) == b":1\r\n"
    counted = _qstat(wire, "counted")
    assert (counted[b"jobs-in"], counted[b"jobs-out"]) == (b":6", b":3")
    assert _qstat(wire, "elsewhere")[b"jobs-in"] == b":1"


def test_jobs_in_counts_the_queues_of_the_jobs_actually_requeued(
    start_server: Callable[..., ServerProcess],
) -> None:
    wire = Wire(start_server().port)
    once = wire.call("ADDJOB", "first", "once", "0", "RETRY", "0")[1:-2]
    job = wire.call("ADDJOB", "second", "x", "0")[1:-2]
    assert len(_ids(wire.call("GETJOB", "COUNT", "2", "FROM", "first", "second"))) == 2
    # A delivered at-most-once job is left alone: only the job of "second" is queued again.
    assert wire.call("ENQUEUE", once, job) == b":1\r\n"
    assert _qstat(wire, "first")[b"jobs-in"] == b":1"  # its ADDJOB only
    assert _qstat(wire, "second")[b"jobs-in"] == b":2"
