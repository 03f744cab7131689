"""The server on the wire: the reference transcript, framing, limits, auth."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import ServerProcess, Wire, encode, free_port

REFERENCE = Path(__file__).parent / "reference"
#: Transcript lines that differ on purpose (see disquette.server's doc):
KNOWN_DIFFERENCES = {
    "HELLO": "we give the node's real address; a lone Disque node sends an empty ip",
    "JSCAN COUNT 1000 QUEUE probe-QQQQQQQQQQQQQ REPLY id": "enqueue order, not hash order",
}


def test_transcript_matches_real_disque_except_documented_differences(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server()
    probe = subprocess.run(
        [sys.executable, str(REFERENCE / "probe.py.txt"), str(server.port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    ours = probe.stdout.splitlines()
    theirs = (REFERENCE / "disque-1.0-rc1-transcript.txt").read_text().splitlines()
    assert len(ours) == len(theirs)
    for mine, reference in zip(ours, theirs, strict=True):
        label = reference.split(" -> ")[0].strip()
        if label in KNOWN_DIFFERENCES:
            assert mine.split(" -> ")[1][:2] == reference.split(" -> ")[1][:2]  # same type
            continue
        assert mine == reference


def test_inline_commands_pipelining_and_protocol_errors(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server()
    wire = Wire(server.port)
    wire.send(b'PING\r\nADDJOB q "a b" 0\r\nQLEN q\r\n' + encode("QLEN", "q") * 3)
    assert wire.read() == b"+PONG\r\n"
    assert wire.read().startswith(b"+D-")
    assert [wire.read() for _ in range(4)] == [b":1\r\n"] * 4
    job = wire.call("GETJOB", "FROM", "q")
    assert job.endswith(b"$3\r\na b\r\n")
    wire.send(b"*1\r\n$4\r\nPING\r\n*1\r\n$x\r\n")
    assert wire.read() == b"+PONG\r\n"
    assert wire.read().startswith(b"-ERR Protocol error")
    assert wire.closed()
    big = Wire(server.port)
    big.send(b"A" * (70 * 1024))
    assert big.read() == b"-ERR Protocol error: too big inline request\r\n"
    assert big.closed()
    nested = Wire(server.port)
    nested.send(b"*2\r\n*1\r\n$1\r\na\r\n$1\r\nb\r\n")
    assert nested.read().startswith(b"-ERR Protocol error")
    assert nested.closed()
    assert Wire(server.port).call("PING") == b"+PONG\r\n"  # the server lives on


def test_argument_size_and_client_count_limits(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(None, "--max-argument-bytes", "1024", "--max-clients", "3")
    wire = Wire(server.port)
    wire.send(b"*3\r\n$6\r\nADDJOB\r\n$1\r\nq\r\n$999999\r\n" + b"x" * 100_000)
    assert wire.read() == b"-ERR Protocol error: invalid bulk length\r\n"
    assert wire.closed()
    clients = [Wire(server.port) for _ in range(3)]
    assert all(c.call("PING") == b"+PONG\r\n" for c in clients)
    extra = Wire(server.port)
    assert extra.read() == b"-ERR max number of clients reached\r\n"
    clients[0].close()
    extra = None
    for _ in range(100):  # the server sees the close soon; no timing is asserted
        retry = Wire(server.port)
        try:
            if retry.call("PING") == b"+PONG\r\n":
                break
        except (EOFError, ConnectionResetError):
            pass
    else:
        pytest.fail("a freed client slot was never given back")


def test_auth_and_config_set_requirepass(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(None, "--requirepass", "s3cret")
    wire = Wire(server.port)
    assert wire.call("QLEN") == b"-ERR wrong number of arguments for 'qlen' command\r\n"
    assert wire.call("QLEN", "q") == b"-NOAUTH Authentication required.\r\n"
    assert wire.call("AUTH", "nope") == b"-ERR invalid password\r\n"
    assert wire.call("AUTH", "s3cret") == b"+OK\r\n"
    assert wire.call("QLEN", "q") == b":0\r\n"
    assert wire.call("CONFIG", "SET", "requirepass", "other") == b"+OK\r\n"
    fresh = Wire(server.port)
    assert fresh.call("AUTH", "s3cret") == b"-ERR invalid password\r\n"
    assert fresh.call("AUTH", "other") == b"+OK\r\n"
    assert fresh.call("QUIT") == b"+OK\r\n"
    assert fresh.closed()


def test_a_public_bind_needs_a_password(tmp_path: Path) -> None:
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "disquette",
            "server",
            "--bind",
            "0.0.0.0",
            "--port",
            str(free_port()),
            "--url",
            f"sqlite:///{tmp_path / 'x.db'}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "--requirepass" in refused.stderr


def test_admin_commands_clients_use(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server()
    wire = Wire(server.port)
    job = wire.call("ADDJOB", "q", "x", "0")[1:-2].decode()
    info = wire.call("INFO").decode()
    assert f"tcp_port:{server.port}" in info
    assert "connected_clients:1" in info
    assert "registered_jobs:1" in info
    nodes = wire.call("CLUSTER", "NODES").decode()
    assert f"127.0.0.1:{server.port} myself" in nodes
    assert wire.call("COMMAND", "COUNT") == b":32\r\n"
    assert wire.call("TIME").startswith(b"*2\r\n$")
    assert wire.call("CLIENT", "SETINFO", "LIB-NAME", "x").startswith(b"-ERR")
    assert wire.call("DEBUG", "FLUSHALL") == b"+OK\r\n"
    assert wire.call("SHOW", job) == b"$-1\r\n"
    assert wire.call("HELLO", "3") == b"-ERR wrong number of arguments for 'hello' command\r\n"
    ids = [wire.call("ADDJOB", "q", f"j{i}", "0")[1:-2] for i in range(250)]
    cursor, seen = b"0", []
    while True:
        reply = wire.call("JSCAN", cursor, "COUNT", "100")
        parts = reply.split(b"\r\n")
        cursor = parts[2]
        seen += [p[1:] for p in parts if p.startswith(b"+")]
        if cursor == b"0":
            break
    assert seen == ids
    assert len(ids[0]) == 40
    assert ids[0][2:10] == server_node_prefix(wire)


def server_node_prefix(wire: Wire) -> bytes:
    """The first 8 hex digits of the node id HELLO gives."""
    return wire.call("HELLO").split(b"\r\n")[3][:8]


def test_a_slow_reader_does_not_grow_the_server_without_bound(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server()
    wire = Wire(server.port)
    wire.call("ADDJOB", "q", "x" * 100_000, "0")
    wire.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    # Ask for far more replies than we read: the server stops reading our requests.
    request = encode("QPEEK", "q", "1") * 200
    wire.sock.setblocking(False)
    sent = 0
    for _ in range(2000):
        try:
            sent += wire.sock.send(request)
        except BlockingIOError:
            break
    assert sent < 2000 * len(request)  # back-pressure reached us
    assert Wire(server.port).call("PING") == b"+PONG\r\n"
