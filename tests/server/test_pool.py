"""Several servers over one store form a pool; killing one with -9 loses nothing.

The pool runs over each store that several processes can share: one SQLite file, one
PostgreSQL schema (a fresh one in the session's database) and one Redis key prefix (a fresh
one on the session's server), so the variants never see each other's nodes or jobs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.servers import postgres, redis

from .conftest import ServerProcess, Wire


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'pool.db'}"


#: store kind -> a URL of a fresh, empty store of that kind that other processes can open.
SHARED_STORES: dict[str, Callable[[Path], str]] = {
    "sqlite": _sqlite,
    "postgres": postgres.conformance_url,
    "redis": redis.conformance_url,
}


@pytest.fixture(params=sorted(SHARED_STORES))
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store of each shared kind (skipped loudly, or failed under CI, if absent)."""
    return SHARED_STORES[request.param](tmp_path)


def _hello_ports(wire: Wire) -> set[int]:
    parts = wire.call("HELLO").split(b"\r\n")
    # Each node entry is *4, $id, $ip, $port, $priority: the port follows the ip.
    return {
        int(parts[i + 3])
        for i, part in enumerate(parts)
        if part == b"$9" and parts[i + 1] == b"127.0.0.1"
    }


def _wait_for_pool(wire: Wire, ports: set[int]) -> None:
    """Poll HELLO until it lists exactly ``ports`` (heartbeats land within a second; a
    node killed with -9 lapses after its registration's 2.5 s)."""
    for _ in range(300):
        if _hello_ports(wire) == ports:
            return
        wire.call("DEBUG", "SLEEP", "0.05")
    assert _hello_ports(wire) == ports


def test_pool_over_one_store_survives_kill_9(
    start_server: Callable[..., ServerProcess], shared_url: str
) -> None:
    first, second = start_server(shared_url), start_server(shared_url)
    a, b = Wire(first.port), Wire(second.port)
    both = {first.port, second.port}
    _wait_for_pool(a, both)
    _wait_for_pool(b, both)  # each node sees the other, not only the first
    assert f"127.0.0.1:{second.port}".encode() in a.call("CLUSTER", "NODES")
    assert f"127.0.0.1:{first.port}".encode() in b.call("CLUSTER", "NODES")

    # A job added through one node is got and acked through the other, and both see it.
    crossing = a.call("ADDJOB", "cross", "over-the-pool", "0")[1:-2]
    reply = b.call("GETJOB", "NOHANG", "FROM", "cross")
    assert reply == b"*1\r\n*3\r\n$5\r\ncross\r\n$40\r\n%s\r\n$13\r\nover-the-pool\r\n" % crossing
    assert b.call("ACKJOB", crossing) == b":1\r\n"
    assert a.call("QLEN", "cross") == b":0\r\n"
    assert a.call("SHOW", crossing) == b"$-1\r\n"  # done, through the node that added it

    added = [a.call("ADDJOB", "work", f"job-{i}", "0", "RETRY", "1")[1:-2] for i in range(100)]
    assert b.call("QLEN", "work") == b":100\r\n"
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
    _wait_for_pool(b, {second.port})  # the dead node stops renewing and drops out of HELLO
    assert f"127.0.0.1:{first.port}".encode() not in b.call("CLUSTER", "NODES")


def test_flushall_drops_dead_nodes_and_keeps_live_ones(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    url = _sqlite(tmp_path)
    first, second, third = start_server(url), start_server(url), start_server(url)
    wire = Wire(second.port)
    everyone = {first.port, second.port, third.port}
    _wait_for_pool(wire, everyone)
    assert wire.call("DEBUG", "FLUSHALL") == b"+OK\r\n"
    assert _hello_ports(wire) == everyone  # live nodes stay
    # A client's test suite kills a server and flushes: the dead node goes at once (it
    # stayed in HELLO until its registration lapsed).
    first.kill()
    assert wire.call("DEBUG", "FLUSHALL") == b"+OK\r\n"
    assert _hello_ports(wire) == {second.port, third.port}
    # A server killed and started again on the same port: the old node id goes.
    port = third.port
    third.kill()
    restarted = start_server(url, port=port)
    _wait_for_pool(Wire(restarted.port), {second.port, port})
    assert wire.call("DEBUG", "FLUSHALL") == b"+OK\r\n"
    assert wire.call("HELLO").count(b"$40\r\n") == 1 + 2  # this node's id, two entries


def test_replicate_counts_copies_the_store_holds_unless_told_to_count_pool_nodes(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    url = _sqlite(tmp_path)
    plain = [start_server(url), start_server(url)]
    wire = Wire(plain[0].port)
    _wait_for_pool(wire, {server.port for server in plain})
    # Two nodes, one SQLite file: one copy, whatever HELLO lists.
    assert wire.call("ADDJOB", "q", "x", "0", "REPLICATE", "2").startswith(b"-NOREPL")
    counting = [start_server(url, "--pool-nodes-as-replicas") for _ in range(2)]
    ports = {server.port for server in plain + counting}
    told = Wire(counting[0].port)
    _wait_for_pool(told, ports)
    # "As many copies as nodes": met by the four nodes serving the store's one copy.
    job = told.call("ADDJOB", "q", "x", "0", "REPLICATE", "4")
    assert job.startswith(b"+D-")
    assert told.call("GETJOB", "NOHANG", "FROM", "q").count(job[1:-2]) == 1
    assert told.call("ADDJOB", "q", "x", "0", "REPLICATE", "5").startswith(b"-NOREPL")
    assert wire.call("ADDJOB", "q", "x", "0", "REPLICATE", "2").startswith(b"-NOREPL")
