"""``disquette server --metrics-port``: the server's connections and commands, scraped over
HTTP from a real server process and parsed with prometheus-client's parser."""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import ServerProcess, free_port


def _scrape(port: int) -> dict[str, float]:
    """Every sample of the scrape by name (samples without labels only)."""
    deadline = time.monotonic() + 30  # a wait for the endpoint, not a timing
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
                text = reply.read().decode()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


def _command(sock: socket.socket, *args: str) -> bytes:
    frame = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    sock.sendall(frame.encode())
    return sock.recv(65536)


def test_connections_and_commands_are_scraped(tmp_path: Path) -> None:
    metrics_port = free_port()
    server = ServerProcess(f"sqlite:///{tmp_path / 'jobs.db'}", "--metrics-port", str(metrics_port))
    try:
        before = _scrape(metrics_port)
        assert before["disquette_server_connections"] == 0
        accepted = before["disquette_server_connections_accepted_total"]  # the start probe
        address = ("127.0.0.1", server.port)
        with socket.create_connection(address) as one, socket.create_connection(address) as two:
            assert _command(one, "PING") == b"+PONG\r\n"
            assert _command(two, "PING") == b"+PONG\r\n"
            assert _command(one, "ADDJOB", "q", "body", "0").startswith(b"+D-")
            during = _scrape(metrics_port)
        assert during["disquette_server_connections"] == 2
        assert during["disquette_server_connections_accepted_total"] == accepted + 2
        assert (
            during["disquette_server_commands_total"]
            == before["disquette_server_commands_total"] + 3
        )
        assert during["disquette_server_net_input_bytes_total"] > 0
        assert during["disquette_server_blocked_clients"] == 0
    finally:
        server.stop()


def test_a_taken_metrics_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match="in use"):
            ServerProcess(f"sqlite:///{tmp_path / 'jobs.db'}", "--metrics-port", str(port))
