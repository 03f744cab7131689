"""The fetcher: claims jobs in batches into a buffer, on the store's wake-ups or by
polling, and sizes the buffer to the pace jobs finish at."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

from ..errors import StoreUnavailable
from ..job import Job
from .acks import AckBatcher
from .fairness import FairOrder
from .handlers import InFlight
from .state import TICK, EngineState

logger: Final = logging.getLogger("disquette.worker")

#: Without an explicit ``prefetch``, buffer about this much work, and at most this many.
#: The cap binds only while jobs finish faster than cap / BUFFER_SECONDS a second (2,500);
#: claims then take about half of it: 125 jobs a store call rather than 50 at 100
#: (in-process on SQLite, 8-17% less CPU per no-op job; and between worker processes,
#: fewer turns at its write lock).
BUFFER_SECONDS: Final = 0.1
DEFAULT_MAX_PREFETCH: Final = 250
#: Before a claim, the pace is sampled early once this many jobs finished since the last
#: sample, if it calls for a bigger buffer (see :meth:`Fetcher.adapt`).
RAMP_JOBS: Final = 16


class Fetcher:
    """Keeps ``concurrency`` jobs running plus a buffer: claims when the buffer is half
    empty (``fetch_flag`` wakes it), starts what it claims while there is room."""

    def __init__(
        self, state: EngineState, acks: AckBatcher, start: Callable[[InFlight], None]
    ) -> None:
        self.state = state
        self.acks = acks
        self._start = start
        worker = state.worker
        self.queues = worker.queues
        self.fair = FairOrder(worker.weights, worker.order)
        self.claimer = state.client.timeout(0)
        self.poll_interval = worker.poll_interval or state.client.store.poll_interval
        # How many jobs to keep buffered: fixed, or adapted to the pace (see adapt).
        self.adaptive = worker.prefetch is None
        self.max_buffer = DEFAULT_MAX_PREFETCH if worker.prefetch is None else worker.prefetch
        state.buffer_target = min(self.max_buffer, state.concurrency)
        if not self.adaptive:
            state.buffer_target = self.max_buffer
        self.pace = 0.0  # jobs finished per second, smoothed
        self._paced_at = (time.monotonic(), 0)

    async def run(self) -> None:
        """Claim until the run stops."""
        state = self.state
        # Subscribe before the first claim, so an add between a claim and the wait wakes us.
        unsubscribe = state.client.store.wakeups.subscribe(self.queues, state.fetch_flag.set)
        failures = 0
        try:
            while not state.stopping:
                self.adapt(early=True)
                # Claim once the buffer is half empty: claims come in batches.
                room = state.claim_room()
                if room <= 0:
                    await state.fetch_flag.wait(None)
                    continue
                try:
                    jobs = await self.claim(room)
                except StoreUnavailable as exc:
                    failures += 1
                    pause = min(0.1 * 2**failures, 5.0)
                    logger.warning("cannot claim jobs (%s); retrying in %.1fs", exc, pause)
                    await state.fetch_flag.wait(pause)
                    continue
                failures = 0
                # Short: nothing more for now. Until the next wake-up (an add, sent
                # outcomes, the poll), finished jobs do not call for claims (see drained).
                state.drained = len(jobs) < room
                if jobs:
                    self.accept(jobs)
                if state.drained:
                    await state.fetch_flag.wait(self.poll_interval)
        finally:
            unsubscribe()

    async def claim(self, room: int) -> list[Job]:
        """Claim up to ``room`` jobs, sending the acks waiting in the batcher with the
        claim (one store call; one transaction on SQLite) when there are some."""
        queues = self.fair.next()
        done = self.acks.take_acks()
        if done:
            jobs = await self.acks.send_with_claim(done, queues, room)
            if jobs is not None:
                return jobs
        return await self.claimer.get_many(*queues, count=room)

    def accept(self, jobs: list[Job]) -> None:
        """Start claimed jobs while there is room, buffer the rest."""
        state = self.state
        if state.watch_idle:  # from a long idle tick to short busy ones
            self._paced_at = (time.monotonic(), state.finished)
            state.watch_flag.set_in_loop()
        resolve = state.registry.resolve
        for job in jobs:
            item = InFlight(job, resolve(job.type, job.queue))
            if len(state.running) < state.concurrency and not state.stopping:
                self._start(item)
            else:
                state.buffer.append(item)
        if state.stopping:
            self.give_back_buffer()

    def give_back_buffer(self) -> None:
        """NACK the buffered jobs (the run stops)."""
        buffer = self.state.buffer
        if buffer:
            logger.info("giving back %d prefetched job(s)", len(buffer))
            self.acks.nack(item.job for item in buffer)
            buffer.clear()

    def adapt(self, *, early: bool = False) -> None:
        """Follow the pace jobs finish at; buffer about BUFFER_SECONDS of it.

        The watchdog samples the pace every TICK. ``early`` (the fetcher, before a claim):
        sooner, once RAMP_JOBS finished, but only to grow an adaptive buffer. At a burst's
        start the buffer is empty and each claim takes ``concurrency + 1`` jobs: fast jobs
        would otherwise go a TICK in claims of two (2,000 of them at 40,000 jobs a second),
        each a store call.
        """
        now = time.monotonic()
        since, finished_then = self._paced_at
        finished = self.state.finished
        span = now - since
        ramp = span < TICK
        # span > 0: a coarse monotonic clock (Windows: ~15 ms) may not have moved at all.
        if ramp and not (
            early and self.adaptive and finished - finished_then >= RAMP_JOBS and span > 0
        ):
            return
        pace = 0.5 * self.pace + 0.5 * (finished - finished_then) / span
        target = min(self.max_buffer, int(pace * BUFFER_SECONDS))
        if ramp and target <= self.state.buffer_target:
            return  # an early sample only grows the buffer; the next tick does the rest
        self._paced_at = (now, finished)
        self.pace = pace
        if self.adaptive:
            self.state.buffer_target = target
