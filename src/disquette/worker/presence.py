"""A worker's presence in the store (issue 14): its row in the worker registry, renewed
every few seconds and removed at a clean stop, and the rollups of its outcomes, summed
per (queue, type, minute and hour) in the process and flushed every 10 seconds.

Both are for dashboards, never on the job path: a store that lacks them
(``capabilities.workers``, ``rollups``) is left alone, and a failed write is logged and
tried again at the next beat (rollups are kept meanwhile, so none are lost to a blip).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import Counter
from typing import Final

from ..errors import StoreError
from ..job import Job
from ..stores.types import (
    DURATION_BUCKETS,
    ROLLUP_PERIODS,
    WORKER_TTL,
    RollupRow,
    WorkerInfo,
    duration_bucket,
)
from .state import EngineState

logger: Final = logging.getLogger("disquette.worker")

#: How often the registration is renewed (a third of its TTL: two beats may be missed).
BEAT_SECONDS: Final = 5.0
#: How often rollups are written.
FLUSH_SECONDS: Final = 10.0

_Key = tuple[str, float, str, str]


class Rollups:
    """Outcomes summed per (resolution, period start, queue, type) until :meth:`take`."""

    def __init__(self) -> None:
        self._completed: Counter[_Key] = Counter()
        self._errors: Counter[_Key] = Counter()
        self._histograms: dict[_Key, list[int]] = {}

    def record(self, job: Job, ok: bool, duration: float, now: float) -> None:
        """Count one run of ``job`` that ended at ``now`` (store clock)."""
        bucket = duration_bucket(duration)
        for resolution, (period, _) in ROLLUP_PERIODS.items():
            key = (resolution, now - now % period, job.queue, job.type or "")
            (self._completed if ok else self._errors)[key] += 1
            histogram = self._histograms.setdefault(key, [0] * len(DURATION_BUCKETS))
            histogram[bucket] += 1

    def take(self) -> list[RollupRow]:
        """The rows summed so far; the sums start again from zero."""
        rows = [
            RollupRow(
                key[0],  # type: ignore[arg-type]
                key[1],
                key[2],
                key[3],
                self._completed[key],
                self._errors[key],
                tuple(histogram),
            )
            for key, histogram in sorted(self._histograms.items())
        ]
        self.__init__()  # type: ignore[misc]
        return rows

    def put_back(self, rows: list[RollupRow]) -> None:
        """Rows a failed flush did not write: summed into the next one."""
        for row in rows:
            key = (row.resolution, row.start, row.queue, row.type)
            self._completed[key] += row.completed
            self._errors[key] += row.errors
            histogram = self._histograms.setdefault(key, [0] * len(DURATION_BUCKETS))
            for i, n in enumerate(row.histogram):
                histogram[i] += n


class Presence:
    """Registers the worker, renews it, flushes its rollups; one per engine run."""

    def __init__(self, state: EngineState) -> None:
        self.state = state
        store = state.client.store
        self._workers = store.capabilities.workers
        self._rollups_kept = store.capabilities.rollups
        self.rollups = Rollups()
        self.id = (
            state.client.holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        )
        self.started_at = store.clock.now()

    def record(self, job: Job, kind: str, duration: float) -> None:
        """Count a handler's run by its outcome's kind: ``ok`` completed, ``error`` and
        ``timeout`` errors; a cancelled run counts as neither."""
        if self._rollups_kept and kind in ("ok", "error", "timeout"):
            now = self.state.client.store.clock.now()
            self.rollups.record(job, kind == "ok", duration, now)

    def info(self) -> WorkerInfo:
        """This worker's registration now."""
        state = self.state
        return WorkerInfo(
            id=self.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=tuple(state.worker.queues),
            concurrency=state.concurrency,
            in_flight=len(state.running),
            started_at=self.started_at,
            heartbeat_at=state.client.store.clock.now(),
            version=_version(),
        )

    async def beat(self) -> None:
        """Renew the registration."""
        if self._workers:
            try:
                await self.state.client.store.register_worker(self.info(), WORKER_TTL)
            except StoreError as exc:
                logger.warning("cannot renew the worker registration: %s", exc)

    async def flush(self) -> None:
        """Write the rollups summed so far."""
        rows = self.rollups.take()
        if rows:
            try:
                await self.state.client.store.record_rollups(rows)
            except StoreError as exc:
                self.rollups.put_back(rows)
                logger.warning("cannot write rollups: %s", exc)

    async def run(self) -> None:
        """Until cancelled: beat every :data:`BEAT_SECONDS`, flush every :data:`FLUSH_SECONDS`."""
        beats = 0
        per_flush = round(FLUSH_SECONDS / BEAT_SECONDS)
        while True:
            await self.beat()
            beats += 1
            if beats % per_flush == 0:
                await self.flush()
            await asyncio.sleep(BEAT_SECONDS)

    async def stop(self) -> None:
        """A clean stop: the last rollups written, the registration removed."""
        await self.flush()
        if self._workers:
            try:
                await self.state.client.store.unregister_worker(self.id)
            except StoreError as exc:
                logger.warning("cannot remove the worker registration: %s", exc)


def _version() -> str:
    from .. import __version__

    return __version__
