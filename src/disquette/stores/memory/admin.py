"""The in-memory store's inspecting and managing operations: counts, peeks, scans, stats,
pause modes, flush and the node registry. None moves a job between states but flush."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Collection, Sequence

from ...job import Job, JobState, Stats, StatsRow
from ..limits import QueueLimits
from ..types import (
    DONE_CHANNEL,
    PAUSE_MODES,
    PAUSE_OUT,
    NodeInfo,
    PauseMode,
    QueueInfo,
    ScheduleInfo,
    pause_bits,
)
from .state import _PENDING, MemoryState


class MemoryAdmin(MemoryState):
    """Inspection, pause modes, flush and the node registry of
    :class:`~disquette.stores.memory.MemoryStore`."""

    def qlen(self, queue: str) -> int:
        """Count ready jobs; see :meth:`Store.qlen`."""
        with self._lock:
            self._tick(self.clock.now())
            return self._queued_count[queue]

    def peek(self, queue: str, count: int) -> list[Job]:
        """The next ready jobs; see :meth:`Store.peek`."""
        with self._lock:
            self._tick(self.clock.now())
            ready = [
                job
                for job in self._jobs.values()
                if job.queue == queue and job.state is JobState.QUEUED
            ]
            ready.sort(key=lambda job: (job.priority, job.run_at, self._seq[job.id]))
            return [job.copy() for job in ready[:count]]

    def failed(self, queue: str | None, limit: int) -> list[Job]:
        """Failed jobs; see :meth:`Store.failed`."""
        with self._lock:
            self._tick(self.clock.now())
            found = [
                job
                for job in self._jobs.values()
                if job.state is JobState.FAILED and (queue is None or job.queue == queue)
            ]
            found.sort(key=lambda job: (job.finished_at or 0.0, self._seq[job.id]))
            return [job.copy() for job in found[:limit]]

    def pause(self, queue: str, paused: bool) -> None:
        """Pause or resume delivery; see :meth:`Store.pause`."""
        with self._lock:
            bits = self._pause.get(queue, 0)
            self._set_bits(queue, bits | PAUSE_OUT if paused else bits & ~PAUSE_OUT)
        if not paused:
            self.wakeups.notify([queue])

    def _set_bits(self, queue: str, bits: int) -> None:
        if bits:
            self._pause[queue] = bits
        else:
            self._pause.pop(queue, None)

    def set_pause(self, queue: str, mode: PauseMode) -> None:
        """Set a queue's pause mode; see :meth:`Store.set_pause`."""
        with self._lock:
            self._set_bits(queue, pause_bits(mode))
        if not pause_bits(mode) & PAUSE_OUT:
            self.wakeups.notify([queue])

    def pause_mode(self, queue: str) -> PauseMode:
        """A queue's pause mode; see :meth:`Store.pause_mode`."""
        with self._lock:
            return PAUSE_MODES[self._pause.get(queue, 0)]

    def set_limits(self, queue: str, limits: QueueLimits | None) -> None:
        """Set or clear a queue's limits; see :meth:`Store.set_limits`."""
        with self._lock:
            self._buckets.pop(queue, None)
            if limits is None or limits.empty:
                self._limits.pop(queue, None)
            else:
                self._limits[queue] = limits
                if limits.rate is not None:
                    self._buckets[queue] = (float(limits.rate[0]), self.clock.now())
        self.wakeups.notify([queue])

    def limits(self) -> dict[str, QueueLimits]:
        """Every queue's limits; see :meth:`Store.limits`."""
        with self._lock:
            return dict(self._limits)

    def scan(
        self,
        cursor: int,
        count: int,
        *,
        queue: str | None = None,
        states: Collection[JobState] | None = None,
    ) -> tuple[int, list[Job]]:
        """Walk jobs in enqueue order; see :meth:`Store.scan`."""
        with self._lock:
            self._tick(self.clock.now())
            # Cursors are enqueue sequence numbers plus one, so that 0 means "from the
            # start" and "the walk is over".
            matching = sorted(
                (seq + 1, job_id)
                for job_id, seq in self._seq.items()
                if seq + 1 > cursor
                and (queue is None or self._jobs[job_id].queue == queue)
                and (states is None or self._jobs[job_id].state in states)
            )[:count]
            page = [self._jobs[job_id].copy() for _, job_id in matching]
            return (matching[-1][0] if len(matching) >= count else 0), page

    def queues(self) -> list[QueueInfo]:
        """Queues with jobs or a pause mode; see :meth:`Store.queues`."""
        with self._lock:
            self._tick(self.clock.now())
            names = {job.queue for job in self._jobs.values()} | set(self._pause)
            return [
                QueueInfo(name, self._queued_count[name], PAUSE_MODES[self._pause.get(name, 0)])
                for name in sorted(names)
            ]

    def flush(self) -> None:
        """Delete every job and pause mode; see :meth:`Store.flush`."""
        with self._lock:
            for job in list(self._jobs.values()):
                self._remove(job)
            self._ready.clear()
            self._fifo.clear()
            self._scheduled.clear()
            self._leases.clear()
            self._expiries.clear()
            self._queued_count.clear()
            self._pause.clear()
            self._unique.clear()
            self._children.clear()
        self.wakeups.notify([DONE_CHANNEL])

    def register_node(self, node_id: str, address: str, ttl: float) -> None:
        """Register or renew a node; see :meth:`Store.register_node`."""
        with self._lock:
            self._nodes[node_id] = NodeInfo(node_id, address, self.clock.now() + ttl)

    def unregister_node(self, node_id: str) -> None:
        """Remove a node; see :meth:`Store.unregister_node`."""
        with self._lock:
            self._nodes.pop(node_id, None)

    def nodes(self) -> list[NodeInfo]:
        """Live nodes; see :meth:`Store.nodes`."""
        with self._lock:
            now = self.clock.now()
            return sorted(
                (node for node in self._nodes.values() if node.expires_at > now),
                key=lambda node: node.id,
            )

    def register_schedules(self, schedules: Sequence[ScheduleInfo]) -> None:
        """Record definitions, keeping paused flags; see :meth:`Store.register_schedules`."""
        with self._lock:
            for info in schedules:
                known = self._schedules.get(info.name)
                paused = known is not None and known.paused
                self._schedules[info.name] = dataclasses.replace(info, paused=paused)

    def schedules(self) -> list[ScheduleInfo]:
        """Registered schedules; see :meth:`Store.schedules`."""
        with self._lock:
            return [self._schedules[name] for name in sorted(self._schedules)]

    def pause_schedule(self, name: str, paused: bool) -> bool:
        """Pause or resume a schedule; see :meth:`Store.pause_schedule`."""
        with self._lock:
            known = self._schedules.get(name)
            if known is None:
                return False
            self._schedules[name] = dataclasses.replace(known, paused=paused)
            return True

    def stats(self) -> Stats:
        """Counts per queue and type; see :meth:`Store.stats`."""
        with self._lock:
            self._tick(self.clock.now())
            counts: Counter[tuple[str, str | None, JobState]] = Counter()
            max_errors: dict[tuple[str, str | None], int] = {}
            oldest: dict[tuple[str, str | None], float] = {}
            for job in self._jobs.values():
                key = (job.queue, job.type)
                counts[(job.queue, job.type, job.state)] += 1
                errors = job.error_count if job.state is not JobState.DONE else 0
                max_errors[key] = max(max_errors.get(key, 0), errors)
                if job.state in _PENDING:
                    oldest[key] = min(oldest.get(key, job.run_at), job.run_at)
            rows = tuple(
                StatsRow(
                    queue=queue,
                    type=type_,
                    **{state.value: counts[(queue, type_, state)] for state in JobState},
                    max_error_count=max_errors[(queue, type_)],
                    oldest_run_at=oldest.get((queue, type_)),
                )
                for queue, type_ in sorted(max_errors, key=lambda key: (key[0], key[1] or ""))
            )
            paused = frozenset(q for q, bits in self._pause.items() if bits & PAUSE_OUT)
            return Stats(rows=rows, paused=paused)
