"""A client's inspecting and managing operations: show, delete, peek, stats, failed jobs,
pause modes, moving jobs in and out of their queue, scan, flush, recovery, and the
schedules the store keeps (list, pause, resume, fire now). Each checks its
arguments and makes one store call.

This file is the asyncio source; ``client_admin.py`` beside it is generated from it by
``scripts/unasync.py``. The client class beside it takes it as a base.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Final

from .errors import InvalidOption, JobNotFound, ScheduleNotFound
from .job import Job, JobState, Options, Stats, check_job_id, check_queue_name
from .periodic import fire_now_job
from .stores.limits import QueueLimits
from .stores.store_async import AsyncStore
from .stores.types import PAUSE_MODES, PauseMode, QueueInfo, ScheduleInfo

#: How many jobs ``get_many`` may claim in one call.
MAX_BATCH: Final = 10_000

JobRef = Job | str


def _job_id(job: JobRef) -> str:
    return check_job_id(job.id if isinstance(job, Job) else job)


class AsyncClientAdmin:
    """Inspecting and managing jobs and queues, on the client's ``store``."""

    store: AsyncStore

    async def show(self, job: JobRef) -> Job:
        """Return the job with all its fields; unknown ids raise ``JobNotFound``."""
        return await self._require(_job_id(job))

    async def delete(self, job: JobRef) -> None:
        """Delete a job in any state; unknown ids raise ``JobNotFound``."""
        job_id = _job_id(job)
        if not await self.store.delete([job_id]):
            raise JobNotFound(job_id)

    async def qlen(self, queue: str) -> int:
        """Number of jobs ready to be delivered from ``queue``."""
        return await self.store.qlen(check_queue_name(queue))

    async def peek(self, queue: str, count: int = 1) -> list[Job]:
        """The next ``count`` jobs ``get`` would deliver from ``queue``, without leasing."""
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_BATCH:
            raise InvalidOption("count", count, f"must be an int between 1 and {MAX_BATCH}")
        return await self.store.peek(check_queue_name(queue), count)

    async def stats(self) -> Stats:
        """Counts per queue and type: scheduled, queued, active, done, failed, cancelled,
        highest error count, oldest ``run_at``."""
        return await self.store.stats()

    async def failed(self, queue: str | None = None, limit: int = 100) -> list[Job]:
        """Jobs kept as failed (in ``queue``, or all), oldest failure first."""
        if queue is not None:
            check_queue_name(queue)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_BATCH:
            raise InvalidOption("limit", limit, f"must be an int between 1 and {MAX_BATCH}")
        return await self.store.failed(queue, limit)

    async def retry(self, job: JobRef) -> None:
        """Make a failed job ready again now."""
        await self.store.retry(_job_id(job))

    async def pause(self, queue: str) -> None:
        """Stop delivering jobs from ``queue`` (adds are still accepted)."""
        await self.store.pause(check_queue_name(queue), True)

    async def resume(self, queue: str) -> None:
        """Deliver jobs from ``queue`` again."""
        await self.store.pause(check_queue_name(queue), False)

    async def set_pause(self, queue: str, mode: PauseMode) -> None:
        """Set ``queue``'s pause mode: ``in`` refuses adds (``QueuePaused``), ``out`` stops
        delivery (as :meth:`pause`), ``all`` both, ``none`` neither (Disque PAUSE)."""
        if mode not in PAUSE_MODES:
            raise InvalidOption("mode", mode, f"one of {', '.join(PAUSE_MODES)}")
        await self.store.set_pause(check_queue_name(queue), mode)

    async def pause_mode(self, queue: str) -> PauseMode:
        """``queue``'s pause mode: ``none``, ``in``, ``out`` or ``all``."""
        return await self.store.pause_mode(check_queue_name(queue))

    async def set_limits(
        self,
        queue: str,
        *,
        concurrency: int | None = None,
        rate: tuple[int, float] | None = None,
    ) -> None:
        """Limit ``queue``: at most ``concurrency`` jobs active at once, at most ``rate``
        = ``(count, per_seconds)`` claims (a token bucket); with neither, clear its
        limits. Stored in the store: every consumer obeys them, in any process."""
        limits = QueueLimits(concurrency, rate)
        await self.store.set_limits(check_queue_name(queue), None if limits.empty else limits)

    async def limits(self) -> dict[str, QueueLimits]:
        """Every limited queue's limits, by queue name."""
        return await self.store.limits()

    async def enqueue(self, jobs: Sequence[JobRef]) -> int:
        """Make scheduled or leased jobs ready now (Disque ENQUEUE); return how many.

        A job that was delivered counts an additional delivery; a delivered at-most-once
        job is left alone.
        """
        ids = [_job_id(job) for job in jobs]
        return len(await self.store.enqueue(ids)) if ids else 0

    async def dequeue(self, jobs: Sequence[JobRef]) -> int:
        """Take ready jobs out of their queue without delivering them (Disque DEQUEUE):
        they are delivered again after their ``retry_after``. Returns how many."""
        ids = [_job_id(job) for job in jobs]
        return await self.store.dequeue(ids) if ids else 0

    async def scan(
        self,
        cursor: int = 0,
        count: int = 100,
        *,
        queue: str | None = None,
        states: Collection[JobState] | None = None,
    ) -> tuple[int, list[Job]]:
        """One page of a walk over every job, in enqueue order (Disque JSCAN).

        Start with ``cursor`` 0 and call again with the cursor returned until it is 0.
        """
        if isinstance(cursor, bool) or not isinstance(cursor, int) or cursor < 0:
            raise InvalidOption("cursor", cursor, "a cursor is an int >= 0")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_BATCH:
            raise InvalidOption("count", count, f"must be an int between 1 and {MAX_BATCH}")
        if queue is not None:
            check_queue_name(queue)
        wanted = None if states is None else frozenset(JobState(state) for state in states)
        return await self.store.scan(cursor, count, queue=queue, states=wanted)

    async def queues(self) -> list[QueueInfo]:
        """Every queue holding a job or paused, with its ready count and pause mode."""
        return await self.store.queues()

    async def flush(self) -> None:
        """Delete every job and pause mode of the store (Disque DEBUG FLUSHALL)."""
        await self.store.flush()

    async def recover_stale(self, max_age: float | None = None) -> int:
        """Requeue jobs whose lease ran out, and with ``max_age`` also those leased more than
        ``max_age`` seconds ago (even at-most-once ones). Returns how many."""
        if max_age is not None:
            Options(delay=max_age)  # same range as any duration
        return await self.store.recover_stale(max_age)

    async def schedules(self) -> list[ScheduleInfo]:
        """The periodic jobs' definitions the store keeps (registered by schedulers), by
        name, with their paused flag."""
        return await self.store.schedules()

    async def pause_schedule(self, name: str) -> None:
        """Pause a stored schedule: schedulers fire none of its slots until it is resumed
        (the slots due meanwhile are skipped). Unknown names raise ``ScheduleNotFound``."""
        if not await self.store.pause_schedule(name, True):
            raise ScheduleNotFound(name)

    async def resume_schedule(self, name: str) -> None:
        """Resume a paused schedule (its next slot fires); ``ScheduleNotFound`` if unknown."""
        if not await self.store.pause_schedule(name, False):
            raise ScheduleNotFound(name)

    async def fire_schedule(self, name: str) -> str:
        """Add one job of a stored schedule now, from its stored definition (no app code
        needed; paused or not), with a fresh id; return that id. ``ScheduleNotFound`` if
        no schedule has this name."""
        for info in await self.store.schedules():
            if info.name == name:
                job = fire_now_job(info, self.store.clock.now())
                await self.store.add([job], None)
                return job.id
        raise ScheduleNotFound(name)

    async def _require(self, job_id: str) -> Job:
        job = await self.store.show(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job
