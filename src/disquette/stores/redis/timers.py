"""Wake-ups nothing publishes: when a delay or a lease runs out, a blocked ``get`` should
look again without waiting for its poll (both flavours share it; it imports no driver).

A claim that finds nothing learns when the next job of its queues is due, and arms one
timer per set of queues; the earliest due time wins. Timers are threads in both flavours:
a wake-up is only ``wakeups.notify``, which either flavour's waiters can receive.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Final

from ...clock import Clock

#: Longest wait (s) for which a blocked ``get`` is woken when a delay or lease runs out;
#: later ones are found by the poll.
MAX_TIMER: Final = 3600.0


class DueTimers:
    """One timer per set of queues, calling ``notify(queues)`` when their next job is due."""

    def __init__(self, clock: Clock, notify: Callable[[tuple[str, ...]], None]) -> None:
        self.clock = clock
        self._notify = notify
        self._timers: dict[tuple[str, ...], tuple[float, threading.Timer]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def armed(self) -> list[tuple[str, ...]]:
        """The sets of queues a timer waits for."""
        with self._lock:
            return list(self._timers)

    def wake_when_due(self, queues: Sequence[str], due: float) -> None:
        """Notify ``queues`` at ``due`` (store clock), unless an earlier timer already will."""
        delay = due - self.clock.now()
        key = tuple(queues)
        with self._lock:
            if not 0 < delay <= MAX_TIMER or self._closed:
                return
            pending = self._timers.get(key)
            if pending is not None and pending[0] <= due:
                return
            # Plus a little: the claim must see the clock at or after the due time.
            timer = threading.Timer(delay + 0.001, self._fired, (key, due))
            timer.daemon = True
            self._timers[key] = (due, timer)
        timer.start()

    def _fired(self, key: tuple[str, ...], due: float) -> None:
        with self._lock:
            pending = self._timers.get(key)
            if pending is not None and pending[0] == due:
                del self._timers[key]
        self._notify(key)

    def close(self) -> None:
        """Cancel every timer; later ones are not armed."""
        with self._lock:
            self._closed = True
            timers, self._timers = self._timers, {}
        for _, timer in timers.values():
            timer.cancel()
