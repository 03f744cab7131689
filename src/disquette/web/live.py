"""The dashboard's live stream: one :meth:`AsyncClient.watch` per app, whatever the
number of browser tabs, fanned out to every server-sent-events subscriber.

The watch starts with the first subscriber and stops with the last. Each subscriber keeps
its own set of changed queues and its own debounce: a tab that is slow to read gets one
event per queue for everything that changed meanwhile, never a backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from ..client_async import AsyncClient
from ..errors import DisquetteError

#: The shared watch's own debounce (seconds): short, each subscriber adds its own.
WATCH_DEBOUNCE = 0.1
#: Seconds before the shared watch starts again after the store failed it.
RETRY_AFTER = 1.0


class Subscriber:
    """One stream's view of the shared watch: the queues changed since it last read."""

    def __init__(self, debounce: float) -> None:
        self.debounce = debounce
        self._changed: set[str] = set()
        self._signal = asyncio.Event()

    def push(self, queue: str) -> None:
        """The shared watch saw ``queue`` change (called on the app's event loop)."""
        self._changed.add(queue)
        self._signal.set()

    async def changes(self) -> AsyncIterator[list[str]]:
        """The changed queues, by name, at most once per ``debounce`` seconds, forever."""
        while True:
            await self._signal.wait()
            await asyncio.sleep(self.debounce)  # what changes meanwhile comes with it
            self._signal.clear()
            changed, self._changed = sorted(self._changed), set()
            if changed:
                yield changed


class Broadcast:
    """One watch over ``client`` for every subscriber of an app."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self._subscribers: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        #: How many watches this broadcast started (one while anyone subscribes).
        self.watches_started = 0

    @contextlib.asynccontextmanager
    async def subscribe(self, debounce: float) -> AsyncIterator[Subscriber]:
        """A subscriber for the time of the ``async with`` (the watch runs while any does)."""
        subscriber = Subscriber(debounce)
        self._subscribers.add(subscriber)
        if self._task is None or self._task.done():
            self.watches_started += 1
            self._task = asyncio.get_running_loop().create_task(self._watch())
        try:
            yield subscriber
        finally:
            self._subscribers.discard(subscriber)
            if not self._subscribers and self._task is not None:
                task, self._task = self._task, None
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _watch(self) -> None:
        while True:  # until cancelled by the last subscriber's leaving
            try:
                async for event in self.client.watch(debounce=WATCH_DEBOUNCE):
                    for subscriber in list(self._subscribers):
                        subscriber.push(event.queue)
            except DisquetteError:  # the store went away: pages poll meanwhile
                await asyncio.sleep(RETRY_AFTER)

    @property
    def subscribers(self) -> int:
        """Streams subscribed now."""
        return len(self._subscribers)
