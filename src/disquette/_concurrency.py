"""Flavor-specific primitives. The generated sync code uses the right-hand names.

``scripts/unasync.py`` maps ``AsyncSignal -> Signal``, ``AsyncLock -> Lock`` and
``async_sleep -> sleep``; these are the only places where the two flavors differ at run time.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol


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


async def async_sleep(seconds: float) -> None:
    """Sleep without blocking the event loop."""
    await asyncio.sleep(seconds)


def sleep(seconds: float) -> None:
    """Sleep the calling thread."""
    time.sleep(seconds)


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
