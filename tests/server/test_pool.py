"""Several servers over one store form a pool; killing one with -9 loses nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .conftest import ServerProcess, Wire


def _hello_ports(wire: Wire) -> set[int]:
    parts = wire.call("HELLO").split(b"\r\n")
    # Each node entry is *4, $id, $ip, $port, $priority: the port follows the ip.
    return {
        int(parts[i + 3])
        for i, part in enumerate(parts)
        if part == b"$9" and parts[i + 1] == b"127.0.0.1"
    }


def test_pool_over_one_store_survives_kill_9(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'pool.db'}"
    first, second = start_server(url), start_server(url)
    a, b = Wire(first.port), Wire(second.port)
    for _ in range(200):  # both heartbeats land within a second or two
        if _hello_ports(a) == {first.port, second.port}:
            break
        a.call("DEBUG", "SLEEP", "0.05")
    assert _hello_ports(a) == {first.port, second.port}
    assert f"127.0.0.1:{second.port}".encode() in a.call("CLUSTER", "NODES")

    added = [a.call("ADDJOB", "work", f"job-{i}", "0", "RETRY", "1")[1:-2] for i in range(100)]
    # A consumer on the first node takes ten jobs, and the node dies before any ack.
    taken = a.call("GETJOB", "COUNT", "10", "FROM", "work")
    assert taken.startswith(b"*10\r\n")
    first.kill()

    # The client fails over to the second node: every job is still there, the ten taken
    # ones come back once their RETRY (1 s) runs out.
    done: set[bytes] = set()
    while len(done) < len(added):
        reply = b.call("GETJOB", "TIMEOUT", "5000", "COUNT", "50", "FROM", "work")
        assert reply != b"*-1\r\n", f"lost jobs: {set(added) - done}"
        ids = [line for line in reply.split(b"\r\n") if line.startswith(b"D-")]
        assert b.call("ACKJOB", *ids) == b":%d\r\n" % len(ids)
        done.update(ids)
    assert done == set(added)
    assert b.call("QLEN", "work") == b":0\r\n"
    for _ in range(200):  # the dead node stops renewing and drops out of HELLO
        if _hello_ports(b) == {second.port}:
            break
        b.call("DEBUG", "SLEEP", "0.1")
    assert _hello_ports(b) == {second.port}
