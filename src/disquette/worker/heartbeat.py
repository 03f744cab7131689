"""The heartbeat: extends the leases of the jobs a worker holds, so long jobs are not
delivered again while they run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from ..errors import InvalidState, JobCancelled, JobNotFound, LeaseLost, StoreUnavailable
from ..stores.types import CANCEL_CHANNEL
from .acks import AckBatcher
from .handlers import InFlight, log_extras
from .state import EngineState

logger: Final = logging.getLogger("disquette.worker")


class Heartbeat:
    """Extends the lease of each held job (running or buffered) past half its lease, and
    learns of cancel requests: the store refuses to extend a job someone asked to cancel."""

    def __init__(
        self, state: EngineState, acks: AckBatcher, cancel: Callable[[InFlight], None]
    ) -> None:
        self.state = state
        self.acks = acks
        #: Stops a held job whose cancel was requested (the engine's).
        self._cancel = cancel

    async def watch_cancels(self) -> None:
        """Until cancelled: on each cancel request the store announces (in this process
        or another), ask about every held job at once instead of at its next beat."""
        state = self.state
        unsubscribe = state.client.store.wakeups.subscribe([CANCEL_CHANNEL], state.cancel_flag.set)
        try:
            while True:
                await state.cancel_flag.wait(None)
                if state.running or state.buffer:
                    await self.beat(everyone=True)
        finally:
            unsubscribe()

    async def beat(self, *, everyone: bool = False) -> None:
        """Extend the leases that are due (the watchdog calls this every tick); with
        ``everyone``, of every held job, at-most-once ones included (a cancel request
        was announced: the store's refusal tells which job it is for)."""
        state = self.state
        client = state.client
        now = client.store.clock.now()
        for item in [*state.running, *state.buffer]:
            job = item.job
            if item.finished or job.cancel_requested:
                continue
            if not everyone and (
                job.lease_until is None
                or job.retry_after <= 0
                or now < job.lease_until - job.retry_after / 2
            ):
                continue
            try:
                job.lease_until = await client.working(job)
            except JobCancelled:
                self._cancel(item)
            except LeaseLost as exc:
                job.lease_until = None
                self.acks.lease_lost(exc)
            except (InvalidState, JobNotFound) as exc:
                job.lease_until = None
                logger.warning("job %s lost its lease: %s", job.id, exc, extra=log_extras(job))
            except StoreUnavailable as exc:
                logger.warning("cannot extend the lease of job %s: %s", job.id, exc)
                return
            else:
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("job %s lease extended", job.id, extra=log_extras(job))
