"""Flavour-specific primitives, in pairs: the asyncio one and its sync twin.

The asyncio sources (``x_async.py``) use the left-hand names; ``scripts/unasync.py`` maps
``AsyncName -> Name`` and ``async_name -> name``, so the generated sync twins (``x.py``)
use the right-hand ones. Every run-time difference between the generated flavours lives
here (the generator refuses asyncio left in generated code):

- ``AsyncSignal``/``Signal``: a wake-up flag set from any thread;
- ``AsyncLock``/``Lock``, ``AsyncSemaphore``/``Semaphore``, ``AsyncCondition``/``Condition``;
- ``AsyncBackground``/``Background``: work run as a task or on a daemon thread;
- ``AsyncTcpStream``/``TcpStream``: a TCP connection (the disque:// store's wire);
- ``async_settle``/``settle``: what a coroutine comes to (awaited, or run on a new loop);
- ``async_sleep``/``sleep``, and ``async_ensure_cluster_ready``/``ensure_cluster_ready``
  (redis-py's asyncio Cluster client discovers its slots on request, the sync one when made).

Code that blocks a thread in both flavours (the Redis store's wake-up listener and probe,
in ``stores/redis/listener.py``) is hand-written once, outside the generated pairs. Hand-written
modules that offer both flavours keep their own twins (``app.py``'s ``add``/``add_async``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

from .errors import EagerError

T = TypeVar("T")


class AsyncSignal:
    """A wake-up flag an asyncio task waits on: set from any thread with :meth:`set`, or
    at once from the loop's own thread with :meth:`set_in_loop`; :meth:`wait` clears it.

    Made inside the running loop (it keeps that loop, for :meth:`set`).
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def set(self) -> None:
        """Wake the waiter; safe from any thread, a no-op once the loop is closed.

        The flag is set by a callback on the loop: on the loop's own thread it takes one
        loop iteration, so code running there uses :meth:`set_in_loop`.
        """
        with contextlib.suppress(RuntimeError):  # loop closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._event.set)

    def set_in_loop(self) -> None:
        """Wake the waiter now; only from the loop's own thread."""
        self._event.set()

    async def wait(self, timeout: float | None) -> None:
        """Wait until set or ``timeout`` seconds pass (``None``: no limit), then clear
        the flag. Already set: returns at once, without yielding to the loop."""
        if not self._event.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._event.wait()
        self._event.clear()


class Signal:
    """A wake-up flag a thread waits on and any thread may set (the twin of
    :class:`AsyncSignal`; a thread needs no loop, so both setters are the same)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        """Wake the waiter."""
        self._event.set()

    def set_in_loop(self) -> None:
        """Wake the waiter (the same as :meth:`set`: a thread has no loop to stay on)."""
        self._event.set()

    def wait(self, timeout: float | None) -> None:
        """Wait until set or ``timeout`` seconds pass (``None``: no limit), then clear
        the flag."""
        self._event.wait(timeout)
        self._event.clear()


#: A lock held across awaits (``async with``); the sync flavor's is a thread lock.
AsyncLock = asyncio.Lock
Lock = threading.Lock

#: At most n holders at once: ``await acquire()``, ``release()``. The thread one also
#: refuses a release without an acquire.
AsyncSemaphore = asyncio.Semaphore
Semaphore = threading.BoundedSemaphore


async def async_sleep(seconds: float) -> None:
    """Sleep without blocking the event loop."""
    await asyncio.sleep(seconds)


def sleep(seconds: float) -> None:
    """Sleep the calling thread."""
    time.sleep(seconds)


async def async_settle(awaitable: Awaitable[T]) -> T:
    """What an awaitable (a coroutine handler's call) comes to: awaited in the running loop."""
    return await awaitable


def settle(awaitable: Awaitable[T]) -> T:
    """What an awaitable comes to, from sync code: run to completion on a new event loop.

    Raises ``EagerError`` when this thread already runs a loop (a sync call cannot wait for
    a coroutine there without blocking that loop).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_as_coroutine(awaitable))
    if inspect.iscoroutine(awaitable):
        awaitable.close()  # never awaited on purpose: no "was never awaited" warning
    raise EagerError(
        "a coroutine handler cannot run from sync code inside a running event loop: "
        "enqueue it with add_async()"
    )


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable


class AsyncCondition(asyncio.Condition):
    """A lock with wake-ups, held across awaits; adds :meth:`wait_until` (a deadline)."""

    async def wait_until(self, ready: Callable[[], bool], timeout: float) -> bool:
        """Wait (holding the lock) until ``ready()`` or ``timeout`` seconds; return
        ``ready()``."""
        # Cancelled by the timeout, Condition.wait takes the lock back.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, timeout)):
                return await self.wait_for(ready)
        return ready()


class Condition(threading.Condition):
    """A thread lock with wake-ups (the twin of :class:`AsyncCondition`)."""

    def wait_until(self, ready: Callable[[], bool], timeout: float) -> bool:
        """Wait (holding the lock) until ``ready()`` or ``timeout`` seconds; return
        ``ready()``."""
        return self.wait_for(ready, max(0.0, timeout))


class AsyncBackground:
    """Runs ``work()`` as a task of the running event loop, named ``name``."""

    def __init__(self, work: Callable[[], Coroutine[Any, Any, None]], *, name: str) -> None:
        self._task = asyncio.get_running_loop().create_task(work(), name=name)

    async def join(self) -> None:
        """Wait for ``work()`` to return."""
        # Shielded: cancelling the waiter must not cancel the work (a funnel's fetch in
        # flight would lose the jobs it leased).
        await asyncio.shield(self._task)

    async def stop(self, *, timeout: float) -> None:
        """Cancel ``work()`` and wait for it to end. (``timeout`` is for the thread twin,
        which cannot be cancelled: a task ends at its next await.)"""
        self._task.cancel()
        # RuntimeError: stopped from inside the task itself, which cannot await itself.
        with contextlib.suppress(asyncio.CancelledError, RuntimeError):
            await self._task


class Background:
    """Runs ``work()`` on a daemon thread named ``name`` (the twin of
    :class:`AsyncBackground`)."""

    def __init__(self, work: Callable[[], None], *, name: str) -> None:
        self._thread = threading.Thread(target=work, name=name, daemon=True)
        self._thread.start()

    def join(self) -> None:
        """Wait for ``work()`` to return."""
        self._thread.join()

    def stop(self, *, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for ``work()`` to end: a thread cannot be
        cancelled, so ``work`` must notice on its own that it should stop. From ``work``'s
        own thread: returns at once."""
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)


class _Discovers(Protocol):
    """redis-py's asyncio Cluster client, as :func:`async_ensure_cluster_ready` uses it."""

    async def initialize(self) -> Any:
        """Discover the cluster's nodes and slots."""


async def async_ensure_cluster_ready(conn: _Discovers) -> None:
    """Make redis-py's asyncio Cluster client discover its slots (call it under a lock:
    the client breaks when tasks race to discover them on first use)."""
    await conn.initialize()


def ensure_cluster_ready(conn: object) -> None:
    """Nothing to do: redis-py's sync Cluster client discovers its slots when made."""


class AsyncTcpStream:
    """A TCP connection over asyncio streams, Nagle's delay off (requests are pipelined)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int, timeout: float) -> AsyncTcpStream:
        """Connect within ``timeout`` seconds, or raise ``OSError``."""
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except TimeoutError as exc:
            raise OSError(f"connecting to {host}:{port} timed out") from exc
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    def send(self, data: bytes) -> None:
        """Send ``data``: buffered by the transport, which writes it as the socket allows."""
        self._writer.write(data)

    async def read(self, limit: int) -> bytes:
        """Up to ``limit`` bytes as they arrive; ``b""`` once the peer closed."""
        return await self._reader.read(limit)

    def close(self) -> None:
        """Close the connection (never raises)."""
        self._writer.close()


class TcpStream:
    """A blocking TCP socket, Nagle's delay off (the twin of :class:`AsyncTcpStream`)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    @classmethod
    def open(cls, host: str, port: int, timeout: float) -> TcpStream:
        """Connect within ``timeout`` seconds, or raise ``OSError``."""
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock)

    def send(self, data: bytes) -> None:
        """Send all of ``data``, blocking until the socket took it."""
        self._sock.sendall(data)

    def read(self, limit: int) -> bytes:
        """Up to ``limit`` bytes as they arrive; ``b""`` once the peer closed."""
        return self._sock.recv(limit)

    def close(self) -> None:
        """Close the socket (never raises)."""
        self._sock.close()
