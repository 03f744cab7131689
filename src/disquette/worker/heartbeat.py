"""The heartbeat: extends the leases of the jobs a worker holds, so long jobs are not
delivered again while they run."""

from __future__ import annotations

import logging
from typing import Final

from ..errors import InvalidState, JobNotFound, LeaseLost, StoreUnavailable
from .acks import AckBatcher
from .handlers import log_extras
from .state import EngineState

logger: Final = logging.getLogger("disquette.worker")


class Heartbeat:
    """Extends the lease of each held job (running or buffered) past half its lease."""

    def __init__(self, state: EngineState, acks: AckBatcher) -> None:
        self.state = state
        self.acks = acks

    async def beat(self) -> None:
        """Extend the leases that are due (the watchdog calls this every tick)."""
        state = self.state
        client = state.client
        now = client.store.clock.now()
        for item in [*state.running, *state.buffer]:
            job = item.job
            if item.finished or job.lease_until is None or job.retry_after <= 0:
                continue
            if now < job.lease_until - job.retry_after / 2:
                continue
            try:
                job.lease_until = await client.working(job)
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
