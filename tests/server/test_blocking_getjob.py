"""Blocking GETJOBs gathered with the other connections' claims: those that find jobs are
served in the batch, those that find none block, one at a time per connection."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from .conftest import ServerProcess, Wire, encode


def _ids(reply: bytes) -> list[bytes]:
    return [line for line in reply.split(b"\r\n") if line.startswith(b"D-")]


def _bodies(reply: bytes) -> list[bytes]:
    lines = reply.split(b"\r\n")
    return [lines[i + 2] for i, line in enumerate(lines) if line.startswith(b"D-")]


def _blocked(wire: Wire, queue: str) -> int:
    """QSTAT's ``blocked``: GETJOBs blocked on the queue now."""
    lines = wire.call("QSTAT", queue).split(b"\r\n")
    return int(lines[lines.index(b"blocked") + 1][1:]) if b"blocked" in lines else 0


def _until_blocked(wire: Wire, queue: str, count: int) -> None:
    for _ in range(500):
        if _blocked(wire, queue) == count:
            return
        wire.call("DEBUG", "SLEEP", "0.01")
    raise AssertionError(f"never {count} GETJOB(s) blocked on {queue}")


@pytest.mark.parametrize("store", ["sqlite", "memory"])
def test_pipelined_blocking_getjobs_take_turns_once_the_queue_is_empty(
    start_server: Callable[..., ServerProcess], store: str
) -> None:
    server = start_server("memory://" if store == "memory" else None)
    getting, adding = Wire(server.port), Wire(server.port)
    for body in ("j1", "j2"):
        adding.call("ADDJOB", "turns", body, "0")
    getting.send(encode("GETJOB", "TIMEOUT", "10000", "FROM", "turns") * 4)
    # The two jobs waiting are served at once, in request order...
    assert [_bodies(getting.read()) for _ in range(2)] == [[b"j1"], [b"j2"]]
    # ...then only the third blocks: as in Disque, the fourth waits for its turn.
    _until_blocked(adding, "turns", 1)
    adding.call("ADDJOB", "turns", "j3", "0")
    assert _bodies(getting.read()) == [b"j3"]
    _until_blocked(adding, "turns", 1)
    adding.call("ADDJOB", "turns", "j4", "0")
    assert _bodies(getting.read()) == [b"j4"]
    assert _blocked(adding, "turns") == 0
    assert adding.call("QLEN", "turns") == b":0\r\n"


def test_a_blocking_getjob_that_times_out_lets_the_next_one_try(
    start_server: Callable[..., ServerProcess],
) -> None:
    wire = Wire(start_server().port)
    wire.send(
        encode("GETJOB", "TIMEOUT", "50", "FROM", "slow")
        + encode("ADDJOB", "slow", "late", "0")
        + encode("GETJOB", "TIMEOUT", "10000", "FROM", "slow")
    )
    assert wire.read() == b"*-1\r\n"  # timed out: the ADDJOB after it had not run
    assert wire.read().startswith(b"+D-")
    assert _bodies(wire.read()) == [b"late"]


def test_blocked_getjobs_of_a_client_that_left_take_no_job(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server("memory://")
    leaving, staying = Wire(server.port), Wire(server.port)
    leaving.send(encode("GETJOB", "TIMEOUT", "0", "FROM", "gone") * 3)
    _until_blocked(staying, "gone", 1)
    leaving.sock.close()
    _until_blocked(staying, "gone", 0)
    # Had a GETJOB queued behind the blocked one survived its client, it would take this.
    added = staying.call("ADDJOB", "gone", "kept", "0")[1:-2]
    assert _ids(staying.call("GETJOB", "NOHANG", "FROM", "gone")) == [added]


@pytest.mark.parametrize("store", ["sqlite", "memory"])
def test_blocking_getjobs_of_many_connections_deliver_each_job_once(
    start_server: Callable[..., ServerProcess], store: str
) -> None:
    server = start_server("memory://" if store == "memory" else None)
    loader = Wire(server.port)
    total = 1000
    loader.send(b"".join(encode("ADDJOB", "many", f"j{i}", "0") for i in range(total)))
    added = {loader.read()[1:-2] for _ in range(total)}
    got: list[bytes] = []
    acked: list[int] = []
    lock = threading.Lock()

    def consume() -> None:
        wire = Wire(server.port)
        while True:
            wire.send(encode("GETJOB", "TIMEOUT", "20", "COUNT", "3", "FROM", "many") * 4)
            ids = [job_id for _ in range(4) for job_id in _ids(wire.read())]
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
    assert _blocked(loader, "many") == 0
