"""Stop signals on an event loop: SIGTERM and SIGINT handed to a callback while a worker,
a pool or a scheduler runs."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def stop_signals(
    loop: asyncio.AbstractEventLoop, on_signal: Callable[[int], None], enabled: bool = True
) -> Iterator[None]:
    """While inside, SIGTERM and SIGINT call ``on_signal(signum)`` on ``loop``; the previous
    handlers come back on the way out. Nothing is installed when not ``enabled``, nor where
    the loop cannot take handlers (not the main thread, Windows)."""
    installed = []
    if enabled:
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, on_signal, signum)
                installed.append(signum)
    try:
        yield
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
