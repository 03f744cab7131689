"""Real ``disquette server`` processes on free loopback ports, stopped after each test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """One ``python -m disquette server`` subprocess."""

    def __init__(self, url: str, *extra: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = url
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "disquette",
                "server",
                "--port",
                str(self.port),
                "--url",
                url,
                *extra,
            ],
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.process.stderr.read().decode()}")  # type: ignore[union-attr]
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @property
    def rss(self) -> int:
        """The server process' resident set size, in bytes (Linux)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(status.split("VmRSS:")[1].split()[0]) * 1024

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"127.0.0.1:{self.port}"

    def kill(self) -> None:
        """kill -9."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM, then kill if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process.stderr is not None:
            self.process.stderr.close()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start servers (default store: a SQLite file of the test); all stopped at the end."""
    started: list[ServerProcess] = []

    def start(url: str | None = None, *extra: str, port: int | None = None) -> ServerProcess:
        server = ServerProcess(url or f"sqlite:///{tmp_path / 'jobs.db'}", *extra, port=port)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


class Wire:
    """A raw RESP connection that returns each reply's exact bytes."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        """Send raw bytes."""
        self.sock.sendall(data)

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def _exact(self, size: int) -> bytes:
        while len(self.buffer) < size + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size + 2 :]
        return data

    def read(self) -> bytes:
        """One complete reply, raw."""
        line = self._line()
        raw = line + b"\r\n"
        if line[:1] == b"$" and int(line[1:]) >= 0:
            raw += self._exact(int(line[1:])) + b"\r\n"
        elif line[:1] == b"*":
            for _ in range(max(int(line[1:]), 0)):
                raw += self.read()
        return raw

    def call(self, *args: bytes | str | int) -> bytes:
        """Send one command as an array; return its raw reply."""
        self.send(encode(*args))
        return self.read()

    def closed(self) -> bool:
        """Whether the server closed the connection (after what it sent was read)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


def encode(*args: bytes | str | int) -> bytes:
    """A RESP request array."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)
