"""Our Disque-protocol server for the tests of the ``disque://`` store.

``conformance_url`` returns the URL of one ``disquette server`` process (over a
``memory://`` store) started once per test session on a free loopback port, flushed
(``DEBUG FLUSHALL``) before each test so that every test starts empty. Tests that kill a
node or need a password start :class:`DisqueServer` instances of their own.

Where Disque defines a semantic differently from disquette, the store states it
(``DisqueStore.capabilities``), and the conformance tests needing it run as
``xfail(strict=True)`` with the capability's reason, so a test that starts passing is noticed.
"""

from __future__ import annotations

import atexit
import functools
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def command(port: int, *args: str, password: str | None = None) -> Any:
    """Send one command to a server and return its reply as hiredis parses it (error
    replies are raised)."""
    import hiredis

    frames: list[tuple[str, ...]] = [] if password is None else [("AUTH", password)]
    frames.append(args)
    payload = b"".join(
        b"*%d\r\n" % len(frame) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a.encode()) for a in frame)
        for frame in frames
    )
    reader = hiredis.Reader()
    replies: list[object] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        while len(replies) < len(frames):
            reply = reader.gets()
            if reply is False:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("server closed the connection")
                reader.feed(data)
                continue
            replies.append(reply)
    last = replies[-1]
    if isinstance(last, Exception):
        raise last
    return last


class DisqueServer:
    """A ``disquette server`` subprocess on a free loopback port."""

    def __init__(self, store_url: str, *, password: str | None = None, port: int = 0) -> None:
        self.store_url = store_url
        self.password = password
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``disque://[:password@]127.0.0.1:<port>``."""
        auth = f":{self.password}@" if self.password else ""
        return f"disque://{auth}{self.address}"

    def start(self, timeout: float = 30.0) -> DisqueServer:
        """Start the process and wait until it answers PING."""
        args = [sys.executable, "-m", "disquette", "server", "--port", str(self.port)]
        args += ["--url", self.store_url]
        if self.password:
            args += ["--requirepass", self.password]
        env = {**os.environ, "DISQUETTE_REQUIREPASS": ""}
        self.process = subprocess.Popen(
            args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                command(self.port, "PING", password=self.password)
                return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"disquette server on {self.port} did not start") from None
                time.sleep(0.02)

    def kill(self) -> None:
        """kill -9 the server."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


@functools.cache
def session_server() -> DisqueServer:
    """One server over a memory store, for the whole test session."""
    server = DisqueServer("memory://").start()
    atexit.register(server.stop)
    return server


def conformance_url(_: Path) -> str:
    """The URL of an empty ``disque://`` store (the session server, flushed)."""
    server = session_server()
    command(server.port, "DEBUG", "FLUSHALL")
    return server.url
