"""Wake-ups between processes that share one SQLite file.

A process with a blocked ``get`` or ``wait`` binds a Unix datagram socket in a directory
derived from the database path; a process that commits a change sends the changed queue
names to every socket there. Waiters then wake within a millisecond instead of at their
next poll, and an idle waiter costs nothing. Best effort by design: a lost datagram (full
buffer, process gone) only means the waiter finds the job at its next poll.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

_SUFFIX = ".sock"


def wake_directory(database_path: str) -> Path:
    """A short directory for this database's sockets (Unix socket paths are ~107 bytes
    at most, database paths can be longer)."""
    digest = hashlib.sha1(os.path.realpath(database_path).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"disquette-wake-{os.getuid()}-{digest}"


class PeerWakeups:
    """Send and receive "these queues changed" datagrams among processes."""

    def __init__(self, database_path: str, deliver: Callable[[list[str]], None]) -> None:
        self._directory = wake_directory(database_path)
        self._deliver = deliver
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._own_path: str | None = None
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sender.setblocking(False)
        self._peers: tuple[str, ...] = ()
        self._listed_at = -1  # the directory's mtime when self._peers was read
        self._closed = False

    def listen(self) -> None:
        """Start receiving (once): a daemon thread hands each datagram to ``deliver``."""
        if self._listener is not None or self._closed:
            return
        with self._lock:
            if self._listener is not None or self._closed:
                return
            try:
                self._directory.mkdir(mode=0o700, exist_ok=True)
                path = str(self._directory / f"{os.getpid()}-{os.urandom(4).hex()}{_SUFFIX}")
                listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                listener.bind(path)
            except OSError:
                return  # no wake-ups from others: the poll interval still applies
            self._listener, self._own_path = listener, path
        threading.Thread(target=self._receive, args=(listener,), daemon=True).start()

    def _receive(self, listener: socket.socket) -> None:
        while True:
            try:
                message = listener.recv(65536)
            except OSError:
                return  # closed
            if not message:
                return
            self._deliver(message.decode(errors="replace").split("\n"))

    def announce(self, channels: Iterable[str]) -> None:
        """Tell every other listening process that these channels changed."""
        try:
            listed_at = os.stat(self._directory).st_mtime_ns
        except OSError:
            return  # nobody ever listened
        if listed_at != self._listed_at:
            self._refresh(listed_at)
        if not self._peers:
            return
        payload = "\n".join(channels).encode()
        for peer in self._peers:
            try:
                self._sender.sendto(payload, peer)
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(OSError):
                    os.unlink(peer)  # its process is gone
            except OSError:
                pass  # a full buffer: that peer is awake and busy anyway

    def _refresh(self, listed_at: int) -> None:
        try:
            names = os.listdir(self._directory)
        except OSError:
            names = []
        own = self._own_path
        self._peers = tuple(
            path
            for name in names
            if name.endswith(_SUFFIX) and (path := str(self._directory / name)) != own
        )
        self._listed_at = listed_at

    def close(self) -> None:
        """Stop listening and remove our socket."""
        with self._lock:
            self._closed = True
            listener, self._listener = self._listener, None
            if listener is not None:
                with contextlib.suppress(OSError):
                    listener.shutdown(socket.SHUT_RDWR)
                listener.close()
            if self._own_path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self._own_path)
                with contextlib.suppress(OSError):
                    self._directory.rmdir()  # only if no other process listens
            self._sender.close()
