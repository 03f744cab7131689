"""The watchdog: a tick that abandons sync handlers past their exec timeout, stops the
worker when its supervisor is gone, and drives the fetcher's pace and the heartbeat."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Final

from .fetcher import Fetcher
from .handlers import HandlerThreads, InFlight, Outcome, log_extras
from .heartbeat import Heartbeat
from .state import IDLE_TICK, TICK, EngineState

logger: Final = logging.getLogger("disquette.worker")


class Watchdog:
    """Ticks every TICK while jobs are held, every IDLE_TICK while none are (an arrival
    wakes it: ``watch_flag``)."""

    def __init__(
        self,
        state: EngineState,
        *,
        fetcher: Fetcher,
        heartbeat: Heartbeat,
        threads: HandlerThreads,
        finish: Callable[[InFlight, Outcome], None],
        request_stop: Callable[[], None],
    ) -> None:
        self.state = state
        self.fetcher = fetcher
        self.heartbeat = heartbeat
        self.threads = threads
        self._finish = finish
        self._request_stop = request_stop

    async def run(self) -> None:
        """Tick until cancelled."""
        state = self.state
        while True:
            state.watch_idle = not (state.running or state.buffer)
            await state.watch_flag.wait(IDLE_TICK if state.watch_idle else TICK)
            state.watch_idle = False
            self.check_supervisor()
            self.fetcher.adapt()
            self.check_deadlines()
            await self.heartbeat.beat()

    def check_supervisor(self) -> None:
        """Stop gracefully once the supervisor that started this process is gone."""
        parent = self.state.worker.parent_pid
        if parent is not None and os.getppid() != parent and not self.state.stopping:
            logger.warning("the supervisor (pid %d) is gone: stopping", parent)
            self._request_stop()

    def check_deadlines(self) -> None:
        """Abandon the sync handlers past their exec timeout; their jobs fail."""
        state = self.state
        worker = state.worker
        now = time.monotonic()
        for item in list(state.running):
            if item.deadline is None or now < item.deadline or item.finished:
                continue
            assert item.spec is not None
            self.threads.abandon(item)
            logger.error(
                "job %s: sync handler %r passed its exec timeout; its thread is abandoned",
                item.job.id,
                item.spec.name,
                extra=log_extras(item.job, now - item.started),
            )
            self._finish(item, Outcome("timeout", item.deadline - item.started))
            worker.abandoned += 1
            if worker.replace_on_abandon and not state.stopping:
                logger.warning("stopping so that this process is replaced")
                worker.replace_requested = True
                self._request_stop()
