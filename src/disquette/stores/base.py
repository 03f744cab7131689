"""What every store shares that does not depend on the sync/async flavor."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Final

#: The wake-up channel for "some job finished", used by ``wait``.
DONE_CHANNEL: Final = "\x00done"


class WouldBlock(Exception):
    """Internal: the call would have to wait for a lock; nothing was changed."""


class Wakeups:
    """In-process fan-out of "something changed in this queue" signals.

    A blocked ``get`` subscribes its queues before it claims, so an ``add`` that lands
    between the claim and the wait still wakes it. Stores that learn of changes made by
    other processes (LISTEN/NOTIFY, Redis) call :meth:`notify` too; the others rely on
    their ``poll_interval``.
    """

    def __init__(self, on_subscribe: Callable[[], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str, set[Callable[[], None]]] = {}
        #: Called at each subscribe: a store starts listening to other processes lazily.
        self._on_subscribe = on_subscribe

    def subscribe(
        self, channels: Iterable[str], callback: Callable[[], None]
    ) -> Callable[[], None]:
        """Call ``callback`` on each notify of one of ``channels``; return the unsubscriber."""
        names = list(channels)
        if self._on_subscribe is not None:
            self._on_subscribe()
        with self._lock:
            for name in names:
                self._subscribers.setdefault(name, set()).add(callback)

        def unsubscribe() -> None:
            with self._lock:
                for name in names:
                    callbacks = self._subscribers.get(name)
                    if callbacks is not None:
                        callbacks.discard(callback)
                        if not callbacks:
                            del self._subscribers[name]

        return unsubscribe

    def notify(self, channels: Iterable[str]) -> None:
        """Wake every subscriber of any of ``channels``."""
        if not self._subscribers:  # the common case when nobody blocks: no lock taken
            return
        with self._lock:
            callbacks = {cb for name in channels for cb in self._subscribers.get(name, ())}
        for callback in callbacks:
            callback()
