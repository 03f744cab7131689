"""Wake-ups between processes that share one SQLite file.

A process with a blocked ``get`` or ``wait`` binds a Unix datagram socket in a directory
derived from the database path; a process that commits a change sends the changed queue
names to every socket there. Waiters then wake within a millisecond instead of at their
next poll, and an idle waiter costs nothing. Best effort by design: a lost datagram (full
buffer, process gone) only means the waiter finds the job at its next poll.

Cheap for the sender at thousands of commits a second: the socket directory is listed again
only when its mtime changed, and its mtime is looked at most every :data:`RELIST_SECONDS`;
each channel is sent at most once per :data:`THROTTLE_SECONDS`: a change announced within
that window after the last message on its channel goes out at the window's end, in one
datagram with the other channels held back meanwhile (so a waiter that went back to sleep
after the first message still hears of it, a window later at most).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

_SUFFIX = ".sock"
#: How often the sender looks whether processes started or stopped listening.
RELIST_SECONDS: Final = 0.002
#: At most one datagram per channel in this window; later changes go at its end.
THROTTLE_SECONDS: Final = 0.001


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
        self._looked_at = float("-inf")  # monotonic time of the last look at that mtime
        # Throttling: when each channel was last sent, and the channels held back (sent
        # by the flusher thread at their window's end).
        self._sent: dict[str, float] = {}
        self._held: set[str] = set()
        self._flush = threading.Condition(threading.Lock())
        self._flusher: threading.Thread | None = None
        self._closed = False

    def listen(self, channels: Iterable[str] = ()) -> None:
        """Start receiving (once): a daemon thread hands each datagram to ``deliver``.

        ``channels``: what the caller waits for (every channel is received).
        """
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
        """Tell every other listening process that these channels changed (a channel
        announced again within :data:`THROTTLE_SECONDS` goes at the window's end)."""
        now = time.monotonic()
        if now - self._looked_at >= RELIST_SECONDS:
            self._look(now)
        if not self._peers:
            return
        sent = self._sent
        due: list[str] = []
        held: list[str] = []
        for channel in channels:
            last = sent.get(channel)
            if last is None or now - last >= THROTTLE_SECONDS:
                sent[channel] = now
                due.append(channel)
            else:
                held.append(channel)
        if due:
            self._send(due)
        if held:
            self._hold(held)

    def _look(self, now: float) -> None:
        """Read the peer list again if the directory changed since it was read."""
        self._looked_at = now
        try:
            listed_at = os.stat(self._directory).st_mtime_ns
        except OSError:
            self._peers = ()
            self._listed_at = -1
            return  # nobody listens
        if listed_at != self._listed_at:
            self._refresh(listed_at)

    def _send(self, channels: list[str]) -> None:
        payload = "\n".join(channels).encode()
        for peer in self._peers:
            try:
                self._sender.sendto(payload, peer)
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(OSError):
                    os.unlink(peer)  # its process is gone
            except OSError:
                pass  # a full buffer: that peer is awake and busy anyway

    def _hold(self, channels: list[str]) -> None:
        """Hold channels back for the flusher thread (started on first use)."""
        with self._flush:
            idle = not self._held  # else the flusher waits for its window's end already
            self._held.update(channels)
            if self._closed:
                return
            if self._flusher is None or not self._flusher.is_alive():  # none yet, or forked
                self._flusher = threading.Thread(
                    target=self._flush_held, name="disquette-peers", daemon=True
                )
                self._flusher.start()
            elif idle:
                self._flush.notify()

    def _flush_held(self) -> None:
        """Send the held-back channels at the end of their window, until closed."""
        while True:
            with self._flush:
                while not self._held and not self._closed:
                    self._flush.wait()
                if not self._closed:
                    self._flush.wait(THROTTLE_SECONDS)  # the window's end (or close)
                if self._closed:
                    return
                channels, self._held = list(self._held), set()
            now = time.monotonic()
            for channel in channels:
                self._sent[channel] = now
            with contextlib.suppress(OSError):  # the sender closed meanwhile
                self._send(channels)

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
        with self._flush:
            self._closed = True
            self._flush.notify()
        with self._lock:
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
