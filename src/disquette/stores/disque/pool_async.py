"""Connections to Disque-protocol nodes: :class:`AsyncWire` (one RESP connection) and
:class:`AsyncPool` (idle connections kept per node, a bound on those in use, failover).

Failover: commands go to the current node; when it cannot be reached (refused, reset,
timed out), the pool moves on to the next node of the list and retries there. A command
that was sent but got no reply may have run (an ADDJOB may then be added twice): Disque's
delivery is at-least-once anyway. Only rounds in which no node could even be connected to
(nothing was sent) are tried again for ``retry_for``.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Final

import hiredis

from ..._concurrency import AsyncSemaphore, AsyncTcpStream, async_sleep
from ...errors import StoreRefused, StoreUnavailable

#: A reply as hiredis parses it (error replies are ``hiredis.ReplyError`` values).
Reply = Any
#: Between two rounds of connection attempts while every node is down.
_RETRY_PAUSE: Final = 0.25


class AsyncWire:
    """One RESP connection: pipelined requests out, hiredis-parsed replies in."""

    def __init__(self, stream: AsyncTcpStream) -> None:
        self.stream = stream
        self.parser = hiredis.Reader()
        self.last_used = time.monotonic()

    @classmethod
    async def open(cls, host: str, port: int, timeout: float) -> AsyncWire:
        """Connect, or raise ``OSError``."""
        return cls(await AsyncTcpStream.open(host, port, timeout))

    async def call(self, frames: bytes, replies: int) -> list[Reply]:
        """Send pipelined requests and read their ``replies``."""
        self.stream.send(frames)
        out: list[Reply] = []
        while len(out) < replies:
            reply = self.parser.gets()
            if reply is False:
                data = await self.stream.read(65536)
                if not data:
                    raise ConnectionResetError("the server closed the connection")
                self.parser.feed(data)
                continue
            out.append(reply)
        self.last_used = time.monotonic()
        return out

    def close(self) -> None:
        """Close the connection (never raises)."""
        self.stream.close()


def _frame(*args: str | bytes | int) -> bytes:
    """One RESP request."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class AsyncPool:
    """Connections to the nodes: idle ones kept per node, a bound on those in use, and
    failover from the current node to the next when one cannot be reached."""

    def __init__(
        self,
        nodes: list[tuple[str, int]],
        *,
        password: str | None,
        max_idle: int,
        max_active: int,
        idle_timeout: float,
        connect_timeout: float,
        retry_for: float = 0.0,
    ) -> None:
        self.nodes = list(nodes)
        self.retry_for = retry_for
        self.current = 0
        self.password = password
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self._idle: dict[tuple[str, int], collections.deque[AsyncWire]] = {
            node: collections.deque() for node in self.nodes
        }
        self._lock = threading.Lock()
        self._gate = AsyncSemaphore(max_active)
        self.closed = False

    def move_to(self, node: tuple[str, int]) -> None:
        """Make ``node`` the current node (added to the list if new)."""
        with self._lock:
            if node not in self.nodes:
                self.nodes.append(node)
                self._idle[node] = collections.deque()
            self.current = self.nodes.index(node)

    async def call(self, *requests: tuple[str | bytes | int, ...]) -> list[Reply]:
        """Run pipelined requests on one connection of the current node (failing over);
        error replies are returned as ``hiredis.ReplyError`` values. While no node accepts
        a connection, try again for ``retry_for`` seconds."""
        if self.closed:
            raise StoreUnavailable("the disque store is closed")
        frames = b"".join(_frame(*request) for request in requests)
        deadline = time.monotonic() + self.retry_for
        await self._gate.acquire()
        try:
            while True:
                errors: list[str] = []
                replies, sent = await self._call_once(frames, len(requests), errors)
                if replies is not None:
                    return replies
                remaining = deadline - time.monotonic()
                if sent or remaining <= 0 or self.closed:
                    break
                await async_sleep(min(_RETRY_PAUSE, remaining))
        finally:
            self._gate.release()
        retried = f" (retried for {self.retry_for:g} s)" if self.retry_for and not sent else ""
        raise StoreUnavailable("no Disque node could be reached: " + "; ".join(errors) + retried)

    async def _call_once(
        self, frames: bytes, replies: int, errors: list[str]
    ) -> tuple[list[Reply] | None, bool]:
        """One round over the nodes: the replies, or None and whether a request was sent
        (its reply lost: it may have run, so the round is not repeated)."""
        sent = False
        for _ in range(len(self.nodes)):
            with self._lock:
                node = self.nodes[self.current]
            try:
                wire = await self._checkout(node)
            except StoreRefused:
                raise  # a wrong password: no wait or other node makes it right
            except OSError as exc:
                errors.append(f"{node[0]}:{node[1]}: {exc}")
                self._fail_over(node)
                continue
            try:
                answers = await wire.call(frames, replies)
            except OSError as exc:
                wire.close()
                self._drop_idle(node)
                errors.append(f"{node[0]}:{node[1]}: {exc}")
                self._fail_over(node)
                sent = True
                continue
            except BaseException:
                wire.close()  # a half-read reply: the connection is unusable
                raise
            self._checkin(node, wire)
            return answers, sent
        return None, sent

    def _fail_over(self, node: tuple[str, int]) -> None:
        with self._lock:
            if self.nodes[self.current] == node:
                self.current = (self.current + 1) % len(self.nodes)

    async def _checkout(self, node: tuple[str, int]) -> AsyncWire:
        now = time.monotonic()
        stale: list[AsyncWire] = []
        wire: AsyncWire | None = None
        with self._lock:
            idle = self._idle[node]
            while idle:
                candidate = idle.pop()
                if now - candidate.last_used > self.idle_timeout:
                    stale.append(candidate)
                else:
                    wire = candidate
                    break
        for old in stale:
            old.close()
        if wire is not None:
            return wire
        wire = await AsyncWire.open(node[0], node[1], self.connect_timeout)
        if self.password is not None:
            (reply,) = await wire.call(_frame("AUTH", self.password), 1)
            if isinstance(reply, hiredis.ReplyError):
                wire.close()
                raise StoreRefused(f"AUTH refused by {node[0]}:{node[1]}: {reply}")
        return wire

    def _checkin(self, node: tuple[str, int], wire: AsyncWire) -> None:
        with self._lock:
            idle = self._idle.get(node)
            if idle is not None and not self.closed and len(idle) < self.max_idle:
                idle.append(wire)
                return
        # Past max_idle (or closed): let it go. Closing a socket does not block.
        wire.close()

    def _drop_idle(self, node: tuple[str, int]) -> None:
        with self._lock:
            wires = list(self._idle[node])
            self._idle[node].clear()
        for wire in wires:
            wire.close()

    async def close(self) -> None:
        """Close every idle connection; later calls raise ``StoreUnavailable``."""
        self.closed = True
        for node in list(self._idle):
            self._drop_idle(node)
