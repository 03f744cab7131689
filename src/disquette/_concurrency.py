"""Flavor-specific primitives. The generated sync code uses the right-hand names.

``scripts/unasync.py`` maps ``AsyncSignal -> Signal``, ``AsyncLock -> Lock`` and
``async_sleep -> sleep``; these are the only places where the two flavors differ at run time.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time


class AsyncSignal:
    """A wake-up flag an asyncio task waits on and any thread may set."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def set(self) -> None:
        """Wake the waiter; safe from any thread, a no-op once the loop is closed."""
        with contextlib.suppress(RuntimeError):  # loop closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self, timeout: float) -> None:
        """Wait until set or ``timeout`` seconds pass, then reset the flag."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()


class Signal:
    """A wake-up flag a thread waits on and any thread may set."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        """Wake the waiter."""
        self._event.set()

    def wait(self, timeout: float) -> None:
        """Wait until set or ``timeout`` seconds pass, then reset the flag."""
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
