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
import math
import os
import socket
import uuid
from collections.abc import Sequence
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
#: The outcomes' kinds the rollups count (a cancelled run counts as neither).
_COUNTED: Final = frozenset(("ok", "error", "timeout"))

_Key = tuple[str, float, str, str]
#: The shortest rollup period: every job's run is counted in the current one of these, and
#: folded into every resolution's sums when time moves past it (or at :meth:`Rollups.take`).
_FINEST: Final = min(period for period, _ in ROLLUP_PERIODS.values())
# A finest period lies in one period of each resolution only if each is a multiple of it.
assert all(period % _FINEST == 0 for period, _ in ROLLUP_PERIODS.values())
#: Where a run is counted in a row of sums: completed, errors, then the duration buckets.
_COMPLETED, _ERRORS, _HISTOGRAM = 0, 1, 2


class Rollups:
    """Outcomes summed per (resolution, period start, queue, type) until :meth:`take`.

    A run costs one count in the current finest period (per queue and type); those counts
    go into every resolution's sums when a run ends in a later period, and at
    :meth:`take`: per job, no key per resolution is built.
    """

    def __init__(self) -> None:
        #: Per key: completed, errors, then runs per duration bucket.
        self._sums: dict[_Key, list[int]] = {}
        #: The current finest period (empty until the first run) and its counts, per
        #: (queue, type), laid out as in ``_sums``.
        self._start = 0.0
        self._end = -math.inf
        self._current: dict[tuple[str, str], list[int]] = {}

    def record(self, job: Job, ok: bool, duration: float, now: float) -> None:
        """Count one run of ``job`` that ended at ``now`` (store clock)."""
        if not self._start <= now < self._end:
            self._fold()
            self._start = now - now % _FINEST
            self._end = self._start + _FINEST
        key = (job.queue, job.type or "")
        counts = self._current.get(key)
        if counts is None:
            counts = self._current[key] = [0] * (_HISTOGRAM + len(DURATION_BUCKETS))
        counts[_COMPLETED if ok else _ERRORS] += 1
        counts[_HISTOGRAM + duration_bucket(duration)] += 1

    def _fold(self) -> None:
        """Add the current finest period's counts into every resolution's sums."""
        if not self._current:
            return
        start = self._start
        for resolution, (period, _) in ROLLUP_PERIODS.items():
            begins = start - start % period
            for (queue, type_), counts in self._current.items():
                self._add((resolution, begins, queue, type_), counts)
        self._current = {}

    def _add(self, key: _Key, counts: Sequence[int]) -> None:
        sums = self._sums.get(key)
        if sums is None:
            self._sums[key] = list(counts)
        else:
            for i, n in enumerate(counts):
                sums[i] += n

    def take(self) -> list[RollupRow]:
        """The rows summed so far; the sums start again from zero."""
        self._fold()
        rows = [
            RollupRow(
                key[0],  # type: ignore[arg-type]
                key[1],
                key[2],
                key[3],
                sums[_COMPLETED],
                sums[_ERRORS],
                tuple(sums[_HISTOGRAM:]),
            )
            for key, sums in sorted(self._sums.items())
        ]
        self._sums = {}
        return rows

    def put_back(self, rows: list[RollupRow]) -> None:
        """Rows a failed flush did not write: summed into the next one."""
        for row in rows:
            key = (row.resolution, row.start, row.queue, row.type)
            self._add(key, (row.completed, row.errors, *row.histogram))


class Presence:
    """Registers the worker, renews it, flushes its rollups; one per engine run."""

    def __init__(self, state: EngineState) -> None:
        self.state = state
        store = state.client.store
        self._workers = store.capabilities.workers
        self._rollups_kept = store.capabilities.rollups
        self._clock = store.clock
        self.rollups = Rollups()
        self.id = (
            state.client.holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        )
        self.started_at = store.clock.now()

    def record(self, job: Job, kind: str, duration: float) -> None:
        """Count a handler's run by its outcome's kind: ``ok`` completed, ``error`` and
        ``timeout`` errors; a cancelled run counts as neither."""
        if self._rollups_kept and kind in _COUNTED:
            self.rollups.record(job, kind == "ok", duration, self._clock.now())

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
