"""The Redis store's operations views (issue 14): the worker registry, jobs selected by a
filter, and rollups.

Filtered jobs are a **bounded scan, and slow**: Redis keeps no index by enqueue order
across states, so each chunk of a page is a script (``scan_desc.lua``) that reads every job
of the queues walked (one queue with ``JobFilter.queue``) and returns the newest
:data:`CHUNK` below the cursor in the filter's states; the other terms are tested here.
A page reads at most :data:`MAX_EXAMINED` jobs: past that it comes back short, with a
cursor to go on from, and ``count`` says "at least" (``capped``). Fine for thousands of
jobs; for millions, filter by queue and state, or use SQLite or PostgreSQL.

Workers: one hash (``<prefix>workers``, field id -> "expires_at json"), as the node
registry. Rollups: per resolution one hash of counters (``<prefix>rollups:<resolution>``,
field "start, queue, type, counter" joined by NUL, summed with HINCRBY) and a sorted set of
its rows by start (``...:rows``), which the store-clock pruning reads.

This file is the asyncio source; ``observe.py`` beside it is generated from it.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any, Final

from ...clock import Clock
from ...job import Job, JobState
from ..types import (
    DURATION_BUCKETS,
    PAUSE_MODES,
    ROLLUP_PERIODS,
    JobCount,
    JobFilter,
    JobPage,
    QueueCounts,
    Resolution,
    RollupRow,
    WorkerInfo,
    queue_counts_of,
)
from .codec import ROW_WIDTH, STATE_LETTERS, row_to_job
from .runner_async import AsyncScriptRunner

#: Jobs one script call of a filtered walk returns at most.
CHUNK: Final = 1000
#: Jobs one page (or one count) reads at most before it stops short.
MAX_EXAMINED: Final = 100_000
_COUNTERS: Final = ("completed", "errors", *(f"h{i}" for i in range(len(DURATION_BUCKETS))))
_SEP: Final = "\x00"
#: How many members of a queue's expiry set ``queue_counts`` reads at most to tell its done
#: and cancelled jobs apart (one job hash each, inside one script: Redis waits meanwhile).
COUNT_WINDOW: Final = 1000
#: The values ``counts.lua`` answers per queue.
_COUNTS_WIDTH: Final = 12
#: The head of a job's "m" field: flags, encoding, created_at (``codec.pack_record``).
_M_HEAD: Final = struct.Struct(">BBd")


class AsyncObserve:
    """Workers, filtered scans and rollups of :class:`AsyncRedisStore`."""

    def __init__(self, runner: AsyncScriptRunner, prefix: str, clock: Clock) -> None:
        self.runner = runner
        self.clock = clock
        self._workers_key = prefix + "workers"
        self._rollups_key = prefix + "rollups:"

    async def register_worker(self, info: WorkerInfo, ttl: float) -> None:
        """Register or renew a worker; see :meth:`AsyncStore.register_worker`."""
        value = f"{self.clock.now() + ttl!r} {info.to_json()}"
        await self.runner.command("HSET", self._workers_key, info.id, value)

    async def unregister_worker(self, worker_id: str) -> None:
        """Forget a worker; see :meth:`AsyncStore.unregister_worker`."""
        await self.runner.command("HDEL", self._workers_key, worker_id)

    async def workers(self) -> list[WorkerInfo]:
        """Live workers (the lapsed ones are deleted); see :meth:`AsyncStore.workers`."""
        now = self.clock.now()
        live, lapsed = [], []
        for worker_id, value in (await self.runner.command("HGETALL", self._workers_key)).items():
            expires_at, _, info = value.decode().partition(" ")
            if float(expires_at) > now:
                live.append(WorkerInfo.from_json(info))
            else:
                lapsed.append(worker_id)
        if lapsed:
            await self.runner.command("HDEL", self._workers_key, *lapsed)
        return sorted(live, key=lambda worker: worker.id)

    async def _chunk(self, where: JobFilter, before: float) -> list[tuple[int, Job]]:
        """The newest :data:`CHUNK` jobs below seq ``before`` in the filter's queue and
        states, newest first (the other terms untested)."""
        queues = [where.queue] if where.queue is not None else await self.runner.all_queues()
        states = where.states
        letters = "" if states is None else "".join(STATE_LETTERS[state] for state in states)
        found: list[tuple[int, Job]] = []
        bound = "inf" if math.isinf(before) else str(int(before))
        for names in self.runner.per_call(queues) if queues else []:
            key = self.runner.queue_key(names[0], "r")
            rows = await self.runner.run("scan_desc", [key], [CHUNK, bound, letters, *names])
            for at in range(0, len(rows), ROW_WIDTH + 1):
                job = row_to_job(rows, at)
                if job is not None:
                    found.append((int(rows[at + ROW_WIDTH]), job))
        found.sort(key=lambda entry: -entry[0])
        return found[:CHUNK]

    async def _walk(
        self, where: JobFilter, cursor: str | None, wanted: int
    ) -> tuple[list[tuple[int, Job]], float | None]:
        """Up to ``wanted`` matching jobs below the cursor, newest first, and where the walk
        stopped short (None: it read everything, or found ``wanted``)."""
        before = math.inf if cursor is None else float(cursor)
        matched: list[tuple[int, Job]] = []
        examined = 0
        while True:
            chunk = await self._chunk(where, before)
            for seq, job in chunk:
                if where.matches(job):
                    matched.append((seq, job))
                    if len(matched) == wanted:
                        return matched, None
            examined += len(chunk)
            if len(chunk) < CHUNK:
                return matched, None
            before = chunk[-1][0]
            if examined >= MAX_EXAMINED:
                return matched, before

    async def queue_counts(self, queue: str | None, cap: int) -> list[QueueCounts]:
        """Every queue's jobs by state, capped; see :meth:`AsyncStore.queue_counts`.

        One script call per queue group (``counts.lua``): ready, scheduled, active and
        failed jobs are the sizes of their sets (exact); done and cancelled ones share the
        expiry set with the pending jobs that have a TTL, so they are told apart among its
        first ``min(cap, COUNT_WINDOW)`` + 1 members only (exact while it holds no more,
        else capped): a script reads at most that many job hashes per queue.
        """
        window = min(cap, COUNT_WINDOW)
        names = [queue] if queue is not None else await self.runner.all_queues()
        result = []
        for group in self.runner.per_call(names) if names else []:
            key = self.runner.queue_key(group[0], "r")
            reply = await self.runner.run("counts", [key], [window + 1, *group])
            for at in range(0, len(reply), _COUNTS_WIDTH):
                counted = _queue_counts(reply[at : at + _COUNTS_WIDTH], cap, window)
                if counted is not None:
                    result.append(counted)
        return sorted(result, key=lambda counts: counts.name)

    async def count_jobs(self, where: JobFilter, cap: int) -> JobCount:
        """Count matching jobs, capped; see :meth:`AsyncStore.count_jobs`. Reads at most
        :data:`MAX_EXAMINED` jobs: past that, the count is "at least" (``capped``)."""
        matched, stopped = await self._walk(where, None, cap + 1)
        return JobCount(min(len(matched), cap), len(matched) > cap or stopped is not None)

    async def scan_jobs(self, where: JobFilter, cursor: str | None, limit: int) -> JobPage:
        """A page of matching jobs, newest first; see :meth:`AsyncStore.scan_jobs`. The
        cursor is a sequence number; a page that read :data:`MAX_EXAMINED` jobs comes back
        short (even empty) with the cursor to go on from."""
        matched, stopped = await self._walk(where, cursor, limit + 1)
        jobs = [job for _, job in matched[:limit]]
        if len(matched) > limit:
            return JobPage(jobs, str(matched[limit - 1][0]))
        return JobPage(jobs, None if stopped is None else str(int(stopped)))

    async def record_rollups(self, rows: Sequence[RollupRow]) -> None:
        """Add rollups in, prune old ones; see :meth:`AsyncStore.record_rollups`."""
        command = self.runner.command
        for row in rows:
            key = self._rollups_key + row.resolution
            name = _SEP.join((repr(row.start), row.queue, row.type))
            await command("ZADD", key + ":rows", row.start, name)
            for counter, n in zip(
                _COUNTERS, (row.completed, row.errors, *row.histogram), strict=True
            ):
                if n:
                    await command("HINCRBY", key, name + _SEP + counter, n)
        now = self.clock.now()
        for resolution, (_, keep) in ROLLUP_PERIODS.items():
            key = self._rollups_key + resolution
            old = await command("ZRANGEBYSCORE", key + ":rows", "-inf", f"({now - keep!r}")
            if old:
                fields = [n.decode() + _SEP + c for n in old for c in _COUNTERS]
                await command("HDEL", key, *fields)
                await command("ZREM", key + ":rows", *old)

    async def rollups(
        self, resolution: Resolution, since: float, queue: str | None, type: str | None
    ) -> list[RollupRow]:
        """Stored rollups; see :meth:`AsyncStore.rollups`."""
        key = self._rollups_key + resolution
        names = await self.runner.command("ZRANGEBYSCORE", key + ":rows", repr(since), "+inf")
        rows: list[RollupRow] = []
        for raw in names:
            name = raw.decode()
            start, row_queue, row_type = name.split(_SEP)
            if (queue is not None and row_queue != queue) or (
                type is not None and row_type != type
            ):
                continue
            values = await self.runner.command("HMGET", key, *(name + _SEP + c for c in _COUNTERS))
            completed, errors, *histogram = (int(v or 0) for v in values)
            rows.append(
                RollupRow(
                    resolution,
                    float(start),
                    row_queue,
                    row_type,
                    completed,
                    errors,
                    tuple(histogram),
                )
            )
        return sorted(rows, key=lambda r: (r.start, r.queue, r.type))


def _queue_counts(row: Sequence[Any], cap: int, window: int) -> QueueCounts | None:
    """One queue of ``counts.lua``'s reply (None: it holds no job and no pause mode)."""
    name, bits, ready, scheduled, active, failed, done, cancelled, expiring, run_at, head = row[:11]
    exact = {
        JobState.WAITING: int(row[11]),
        JobState.SCHEDULED: int(scheduled),
        JobState.QUEUED: int(ready),
        JobState.ACTIVE: int(active),
        JobState.DONE: int(done),
        JobState.FAILED: int(failed),
        JobState.CANCELLED: int(cancelled),
    }
    if not int(bits) and not any(exact.values()) and not int(expiring):
        return None
    since = None
    if run_at:
        since = float(run_at)
        if head and len(head) == _M_HEAD.size:
            since = max(since, _M_HEAD.unpack(head)[2])
    past = int(expiring) > window
    lower = frozenset({JobState.DONE, JobState.CANCELLED}) if past else frozenset()
    return queue_counts_of(name.decode(), exact, cap, PAUSE_MODES[int(bits)], since, lower)
