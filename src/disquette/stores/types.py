"""What every store shares that does not depend on the sync/async flavor."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable
from typing import Final, Literal

from ..errors import InvalidOption, NotReplicated
from ..job import Encoding

#: The wake-up channel for "some job finished", used by ``wait``.
DONE_CHANNEL: Final = "\x00done"
#: The ``last_error`` of an at-most-once job failed by ``release_leases``: its holder died
#: while it ran, and running it again could run it twice.
HOLDER_GONE: Final = "its worker process died holding it (at-most-once: not delivered again)"


class WouldBlock(Exception):
    """Internal: the call would have to wait for a lock; nothing was changed."""


class Wakeups:
    """In-process fan-out of "something changed in this queue" signals.

    A blocked ``get`` subscribes its queues before it claims, so an ``add`` that lands
    between the claim and the wait still wakes it. Stores that learn of changes made by
    other processes (LISTEN/NOTIFY, Redis) call :meth:`notify` too; the others rely on
    their ``poll_interval``.
    """

    def __init__(self, on_subscribe: Callable[[list[str]], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str, set[Callable[[], None]]] = {}
        #: Called with the channels at each subscribe: stores start listening to other
        #: processes lazily, the first time someone waits.
        self._on_subscribe = on_subscribe

    def subscribe(
        self, channels: Iterable[str], callback: Callable[[], None]
    ) -> Callable[[], None]:
        """Call ``callback`` on each notify of one of ``channels``; return the unsubscriber."""
        names = list(channels)
        if self._on_subscribe is not None:
            self._on_subscribe(names)
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

    def notify_all(self) -> None:
        """Wake every subscriber (after a listener reconnects: changes may have been missed)."""
        with self._lock:
            names = list(self._subscribers)
        self.notify(names)

    def notify(self, channels: Iterable[str]) -> None:
        """Wake every subscriber of any of ``channels``."""
        if not self._subscribers:  # the common case when nobody blocks: no lock taken
            return
        with self._lock:
            callbacks = {cb for name in channels for cb in self._subscribers.get(name, ())}
        for callback in callbacks:
            callback()


def refuse_store_powers(store: str, connection: object, replicate: int) -> None:
    """For stores without transactions to join or replicas to wait for: refuse the request
    with a typed error instead of silently ignoring it."""
    if connection is not None:
        raise InvalidOption("connection", connection, f"the {store} store has no transactions")
    if replicate > 0:
        raise NotReplicated(replicate, 0, store)


#: A queue's pause state, as Disque's PAUSE names it: ``in`` refuses adds
#: (:class:`~disquette.errors.QueuePaused`), ``out`` stops delivery, ``all`` both.
PauseMode = Literal["none", "in", "out", "all"]
#: A job's result as a store keeps it: its encoded bytes (None: no result) and encoding.
EncodedResult = tuple["bytes | None", Encoding]
#: What a job acked without a result keeps.
NO_RESULT: Final[EncodedResult] = (None, Encoding.BYTES)
PAUSE_MODES: Final[tuple[PauseMode, ...]] = ("none", "in", "out", "all")
#: Bit 1 refuses adds, bit 2 stops delivery: ``PAUSE_MODES[bits]`` is the mode's name.
PAUSE_IN: Final = 1
PAUSE_OUT: Final = 2


def pause_bits(mode: PauseMode) -> int:
    """The bits of a pause mode (``in`` 1, ``out`` 2, ``all`` 3)."""
    return PAUSE_MODES.index(mode)


@dataclasses.dataclass(frozen=True, slots=True)
class QueueInfo:
    """One queue a store knows: it holds jobs (in any state) or has a pause mode."""

    name: str
    #: Jobs ready to be delivered (what ``qlen`` counts).
    queued: int
    pause: PauseMode = "none"


@dataclasses.dataclass(frozen=True, slots=True)
class NodeInfo:
    """A server registered in a store's node registry (a pool of servers on one store)."""

    id: str
    #: ``host:port`` clients can reach the node at.
    address: str
    #: When the registration lapses unless the node renews it (store clock seconds).
    expires_at: float
