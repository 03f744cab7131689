"""A loopback TCP proxy that loses one reply, so that a store replays a request the server
already carried out.

:class:`ReplyLosingProxy` forwards bytes both ways between a client and a server. Armed
with :meth:`~ReplyLosingProxy.lose_reply_to`, it watches for a request that carries a
marker (a job id, a body, an error text), lets the server carry it out, holds back the
server's reply until it is complete (for PostgreSQL: up to the ``ReadyForQuery`` that says
the transaction is over, that is after the commit), runs a callback, and then cuts the
client's connection without forwarding the reply: the client sees a connection lost
mid-call, exactly as when a network path or a server dies right after a commit, and its
own retry replays the request.

Only loopback addresses; the threads and sockets are the proxy's own.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Literal

from disquette import Client, JobState

Protocol = Literal["postgres", "redis"]


class _PostgresReplies:
    """Splits the server-to-client stream of the PostgreSQL protocol into messages (a type
    byte, then a length that counts itself), and says when a transaction ended."""

    def __init__(self) -> None:
        self._buffer = b""

    def committed(self, data: bytes) -> bool:
        """Feed bytes; whether they hold a ``ReadyForQuery`` with the idle status ``I``
        (the reply to a statement run in autocommit, or to a ``COMMIT``, is complete)."""
        self._buffer += data
        seen = False
        while len(self._buffer) >= 5:
            length = int.from_bytes(self._buffer[1:5], "big")
            if len(self._buffer) < 1 + length:
                break
            kind, payload = self._buffer[:1], self._buffer[5 : 1 + length]
            self._buffer = self._buffer[1 + length :]
            if kind == b"Z" and payload == b"I":
                seen = True
        return seen


class _Link:
    """One client connection and its connection to the server."""

    def __init__(self, proxy: ReplyLosingProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.server = socket.create_connection(proxy.upstream)
        self.watching = False
        self.held = b""
        self.replies = _PostgresReplies() if proxy.protocol == "postgres" else None
        self.closed = threading.Event()
        for target, name in ((self._requests, "requests"), (self._replies, "replies")):
            threading.Thread(target=target, name=f"proxy-{name}", daemon=True).start()

    def _requests(self) -> None:
        tail = b""
        try:
            while data := self.client.recv(65536):
                window = tail + data
                tail = window[-256:]
                # Watch before forwarding: the reply may come back at once.
                if not self.watching and self.proxy.take_marker(window):
                    self.watching = True
                self.server.sendall(data)
        except OSError:
            pass
        self.close()

    def _replies(self) -> None:
        try:
            while data := self.server.recv(65536):
                complete = self.replies.committed(data) if self.replies is not None else True
                if not self.watching:
                    self.client.sendall(data)
                    continue
                self.held += data
                if complete:
                    self.proxy.lost_reply()
                    break
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class ReplyLosingProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream``; loses the reply to a marked request."""

    def __init__(self, upstream_port: int, protocol: Protocol) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.protocol = protocol
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._marker: bytes | None = None
        self._then: Callable[[], None] | None = None
        #: How many replies were lost so far.
        self.lost = 0
        self._links: list[_Link] = []
        self._closed = False
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def lose_reply_to(self, marker: bytes, then: Callable[[], None] | None = None) -> None:
        """Arm: the reply to the next request carrying ``marker`` is lost (once). ``then``
        runs after the server answered and before the client's connection is cut."""
        with self._lock:
            self._marker, self._then = marker, then

    def take_marker(self, data: bytes) -> bool:
        """Whether ``data`` carries the armed marker (which is then disarmed)."""
        with self._lock:
            if self._marker is None or self._marker not in data:
                return False
            self._marker = None
            return True

    def lost_reply(self) -> None:
        """The server answered a marked request: run the callback (the caller cuts)."""
        with self._lock:
            then, self._then = self._then, None
            self.lost += 1
        if then is not None:
            then()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                link = _Link(self, client)
            except OSError:  # the server is down: so is the proxied path
                client.close()
                continue
            self._links = [other for other in self._links if not other.closed.is_set()]
            self._links.append(link)

    def close(self) -> None:
        """Stop accepting and cut every connection."""
        self._closed = True
        self._listener.close()
        for link in self._links:
            link.close()


def replay_ack_nack_and_fail(jobs: Client, proxy: ReplyLosingProxy) -> None:
    """Lose the replies to an ack, a nack and a fail through ``proxy``: the store's retry
    runs each a second time after it committed, which must change nothing more."""
    jobs.add_many(["acked", "nacked", "failed"], "q")
    acked, nacked, failed = jobs.timeout(0).get_many("q", count=3)
    proxy.lose_reply_to(acked.id.encode())
    jobs.ack(acked, "kept")
    proxy.lose_reply_to(nacked.id.encode())
    jobs.nack(nacked)
    proxy.lose_reply_to(b"an error told once")
    jobs.fail(failed, "an error told once")
    assert proxy.lost == 3
    assert jobs.wait(acked, timeout=0) == "kept"
    again = jobs.show(nacked.id)
    assert (again.state, again.nacks) == (JobState.QUEUED, 1)
    later = jobs.show(failed.id)
    assert (later.state, later.error_count) == (JobState.SCHEDULED, 1)  # retried later
    assert jobs.stats().by_queue()["q"].done == 1
