"""The server on the wire: the reference transcript, framing, limits, auth, INFO, where it
listens."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
        assert _steady(mine) == _steady(reference)


def _steady(line: str) -> str:
    """A transcript line without QSTAT's seconds (``age``, ``idle``: 0 unless the machine
    is slow), which depend on the clock, not on the server."""
    return re.sub(r"(\$3\\r\\nage\\r\\n|\$4\\r\\nidle\\r\\n):\d+", r"\1:N", line)


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


def _connect_when_free(port: int, count: int) -> list[Wire]:
    """``count`` clients that got in, once the server has seen earlier ones leave."""
    clients: list[Wire] = []
    for _ in range(200):  # the server sees closes soon; no timing is asserted
        client = Wire(port)
        try:
            if client.call("PING") == b"+PONG\r\n":
                clients.append(client)
                if len(clients) == count:
                    return clients
        except (EOFError, ConnectionResetError):
            pass
    pytest.fail(f"only {len(clients)} of {count} clients got in")


def test_argument_size_and_client_count_limits(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server(None, "--max-argument-bytes", "1024", "--max-clients", "3")
    wire = Wire(server.port)
    wire.send(b"*3\r\n$6\r\nADDJOB\r\n$1\r\nq\r\n$999999\r\n" + b"x" * 100_000)
    assert wire.read() == b"-ERR Protocol error: invalid bulk length\r\n"
    assert wire.closed()
    # Until it closes, a refused client keeps its slot: bad frames cannot open more
    # connections than --max-clients.
    held = [Wire(server.port) for _ in range(2)]
    assert all(c.call("PING") == b"+PONG\r\n" for c in held)
    assert Wire(server.port).read() == b"-ERR max number of clients reached\r\n"
    wire.close()
    for c in held:
        c.close()
    clients = _connect_when_free(server.port, 3)
    assert all(c.call("PING") == b"+PONG\r\n" for c in clients)
    extra = Wire(server.port)
    assert extra.read() == b"-ERR max number of clients reached\r\n"
    clients[0].close()
    _connect_when_free(server.port, 1)  # a freed slot is given back


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
    assert wire.call("COMMAND", "COUNT") == b":33\r\n"  # Disque's 32 and our CANCEL
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


def test_a_port_in_use_is_one_line_and_exit_status_1(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = start_server()
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "disquette",
            "server",
            "--port",
            str(server.port),
            "--url",
            f"sqlite:///{tmp_path / 'other.db'}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1  # the operation failed (README's exit statuses)
    assert refused.stderr.splitlines() == [
        f"Error: cannot listen on 127.0.0.1:{server.port}: address already in use"
    ]
    assert Wire(server.port).call("PING") == b"+PONG\r\n"


#: Disque 1.0-rc1's INFO fields (src/server.c, genDisqueInfoString) clients look for.
DISQUE_INFO_FIELDS = [
    *("used_memory", "used_memory_human", "used_memory_rss", "used_memory_peak"),
    *("used_memory_peak_human", "mem_fragmentation_ratio", "mem_allocator"),
    *("loading", "aof_enabled", "aof_state", "aof_rewrite_in_progress"),
    *("aof_rewrite_scheduled", "aof_last_rewrite_time_sec", "aof_current_rewrite_time_sec"),
    *("aof_last_bgrewrite_status", "aof_last_write_status"),
    *("total_connections_received", "total_commands_processed", "instantaneous_ops_per_sec"),
    *("total_net_input_bytes", "total_net_output_bytes", "instantaneous_input_kbps"),
    *("instantaneous_output_kbps", "rejected_connections", "latest_fork_usec"),
    *("used_cpu_sys", "used_cpu_user", "used_cpu_sys_children", "used_cpu_user_children"),
]


def _info(wire: Wire, section: str = "all") -> tuple[int, dict[str, str]]:
    """INFO's reply size and its fields."""
    raw = wire.call("INFO", section)
    text = raw.split(b"\r\n", 1)[1].decode()
    return len(raw), dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def test_info_has_the_fields_disque_sends(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server()
    wire = Wire(server.port)
    _, info = _info(wire)
    assert [field for field in DISQUE_INFO_FIELDS if field not in info] == []
    assert (info["aof_enabled"], info["aof_state"], info["aof_last_write_status"]) == (
        "0",
        "off",
        "ok",
    )
    assert int(info["used_memory_peak"]) >= int(info["used_memory_rss"]) > 1024 * 1024
    assert info["used_memory_peak_human"].endswith("M")
    assert float(info["used_cpu_user_children"]) >= 0.0
    # Bytes are counted for real: exactly what this connection sent and was sent.
    fresh = Wire(server.port)
    info_size, before = _info(fresh, "stats")
    pong = fresh.call("PING")
    job = fresh.call("ADDJOB", "q", "x" * 1000, "0")
    _, after = _info(fresh, "stats")
    sent = encode("PING") + encode("ADDJOB", "q", "x" * 1000, "0") + encode("INFO", "stats")
    input_bytes = int(after["total_net_input_bytes"]) - int(before["total_net_input_bytes"])
    output_bytes = int(after["total_net_output_bytes"]) - int(before["total_net_output_bytes"])
    assert (input_bytes, output_bytes) == (len(sent), info_size + len(pong) + len(job))
    # Rates are sampled ten times a second, as Redis does: a burst shows.
    fresh.send(encode("PING") * 2000)
    for _ in range(2000):
        fresh.read()
    time.sleep(0.3)
    _, rates = _info(fresh, "stats")
    assert int(rates["instantaneous_ops_per_sec"]) > 0
    assert float(rates["instantaneous_input_kbps"]) > 0


def test_a_unix_socket_beside_tcp(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    import redis

    path = tmp_path / "disque.sock"
    path_text = str(path)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path_text)  # a socket file left by a server killed with -9: replaced
    stale.close()
    server = start_server(None, "--unixsocket", path_text, "--unixsocketperm", "770")
    assert path.stat().st_mode & 0o777 == 0o770
    client = redis.Redis(unix_socket_path=path_text, protocol=2)  # a real client library
    command: Callable[..., Any] = client.execute_command
    job = command("ADDJOB", "unix", "over a socket file", "0")
    assert command("GETJOB", "FROM", "unix") == [[b"unix", job, b"over a socket file"]]
    assert command("ACKJOB", job) == 1
    assert Wire(server.port).call("QLEN", "unix") == b":0\r\n"  # TCP serves the same
    assert command("CONFIG", "GET", "unixsocketperm") == [b"unixsocketperm", b"770"]
    client.close()
    # A live socket is not taken over by a second server.
    taken = subprocess.run(
        [
            sys.executable,
            "-m",
            "disquette",
            "server",
            "--port",
            str(free_port()),
            "--unixsocket",
            path_text,
            "--url",
            f"sqlite:///{tmp_path / 'other.db'}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert taken.returncode == 1
    assert taken.stderr.strip() == f"Error: cannot listen on {path_text}: address already in use"
    server.stop()
    assert not path.exists()  # removed on shutdown
