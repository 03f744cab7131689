"""A client's inspecting and managing operations: show, delete, peek, stats, failed jobs,
pause modes, moving jobs in and out of their queue, scan, flush, recovery, and the
schedules the store keeps (list, pause, resume, fire now). Each checks its
arguments and makes one store call.

This file is the asyncio source; ``client_admin.py`` beside it is generated from it by
``scripts/unasync.py``. The client class beside it takes it as a base.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from typing import Final, Literal

from ._concurrency import AsyncSignal, async_sleep
from .errors import InvalidOption, InvalidState, JobNotFound, ScheduleNotFound
from .job import Job, JobState, Options, Stats, check_job_id, check_queue_name, check_queue_names
from .periodic import fire_now_job
from .stores.limits import QueueLimits
from .stores.store_async import AsyncStore
from .stores.types import (
    COUNT_CAP,
    MAX_PAGE,
    PAUSE_MODES,
    JobCount,
    JobFilter,
    JobPage,
    PauseMode,
    QueueCounts,
    QueueEvent,
    QueueInfo,
    Resolution,
    RollupRow,
    ScheduleInfo,
    WorkerInfo,
    check_rollup_query,
)

#: How many jobs ``get_many`` may claim in one call.
MAX_BATCH: Final = 10_000

JobRef = Job | str
#: What ``bulk`` can do to jobs: ``enqueue`` is "run now".
BulkAction = Literal["retry", "delete", "cancel", "enqueue"]
BULK_ACTIONS: Final[tuple[BulkAction, ...]] = ("retry", "delete", "cancel", "enqueue")
#: How many jobs one store call of ``bulk`` takes.
BULK_BATCH: Final = 500


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

    # -- operations (issue 14): workers, filters, bulk actions, watch, rollups ------------

    async def workers(self) -> list[WorkerInfo]:
        """The worker processes registered in the store whose heartbeats go on, by id."""
        return await self.store.workers()

    async def count(self, filter: JobFilter | None = None, cap: int = COUNT_CAP) -> JobCount:
        """How many jobs match ``filter`` (None: every job): exact up to ``cap``, beyond
        that ``JobCount(cap, capped=True)`` (shown "10,000+"); never an unbounded count."""
        _check_int("cap", cap, 1, 1_000_000)
        return await self.store.count_jobs(filter or JobFilter(), cap)

    async def queue_counts(
        self, queue: str | None = None, cap: int = COUNT_CAP
    ) -> list[QueueCounts]:
        """Every queue's jobs by state (or only ``queue``'s), its pause mode and when its
        next ready job became ready, in one bounded read whatever the store holds: each
        count is exact up to ``cap``, else capped ("10,000+"; see
        :class:`~disquette.stores.types.QueueCounts`). Stores lacking
        ``capabilities.queue_counts`` (``disque://``) raise ``NotSupported``: use
        :meth:`stats` there."""
        _check_int("cap", cap, 1, 1_000_000)
        if queue is not None:
            check_queue_name(queue)
        return await self.store.queue_counts(queue, cap)

    async def scan_jobs(
        self,
        filter: JobFilter | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> JobPage:
        """One page of the jobs matching ``filter``, newest first; pass the page's
        ``cursor`` to get the next one (None when there is none). Keyset paging: a page
        costs the same however deep it is, and a walk neither repeats nor skips a job."""
        _check_int("limit", limit, 1, MAX_PAGE)
        if cursor is not None and (not isinstance(cursor, str) or not cursor.isdigit()):
            raise InvalidOption("cursor", cursor, "a cursor returned by scan_jobs")
        return await self.store.scan_jobs(filter or JobFilter(), cursor, limit)

    async def bulk(
        self,
        action: BulkAction,
        *,
        ids: Sequence[JobRef] | None = None,
        filter: JobFilter | None = None,
        limit: int = 1000,
    ) -> int:
        """Apply ``action`` to the jobs given by ``ids`` or matched by ``filter`` (one of
        the two), at most ``limit`` of them, in batches; return how many it changed.

        ``retry`` makes failed jobs ready, ``delete`` deletes, ``cancel`` cancels pending
        jobs (and asks active ones' holders to stop), ``enqueue`` makes scheduled or active
        jobs ready now ("run now"). Jobs the action does not apply to (a retry of a queued
        job) are passed over, not counted.
        """
        if action not in BULK_ACTIONS:
            raise InvalidOption("action", action, f"one of {', '.join(BULK_ACTIONS)}")
        _check_int("limit", limit, 1, 1_000_000)
        if (ids is None) == (filter is None):
            raise InvalidOption("ids", ids, "give either ids or filter")
        if ids is not None:
            chosen = [_job_id(job) for job in ids][:limit]
            return sum(
                [
                    await self._bulk_batch(action, chosen[i : i + BULK_BATCH])
                    for i in range(0, len(chosen), BULK_BATCH)
                ]
            )
        assert filter is not None
        done = 0
        cursor: str | None = None
        while done < limit:
            page = await self.store.scan_jobs(filter, cursor, min(BULK_BATCH, limit - done))
            done += await self._bulk_batch(action, [job.id for job in page.jobs])
            cursor = page.cursor
            if cursor is None:
                break
        return done

    async def _bulk_batch(self, action: BulkAction, ids: list[str]) -> int:
        if not ids:
            return 0
        if action == "delete":
            return await self.store.delete(ids)
        if action == "enqueue":
            return len(await self.store.enqueue(ids))
        changed = 0
        for job_id in ids:  # the seam retries and cancels one job at a time
            try:
                if action == "retry":
                    await self.store.retry(job_id)
                else:
                    await self.store.cancel(job_id)
                changed += 1
            except (JobNotFound, InvalidState):
                continue
        return changed

    async def watch(
        self, queues: Sequence[str] | None = None, *, debounce: float = 0.2, refresh: float = 2.0
    ) -> AsyncIterator[QueueEvent]:
        """Events saying a queue changed, forever (break out of the loop to stop).

        Built on the store's wake-ups (a job became ready, from this process or, on stores
        that hear them, from others), plus a look at the queues every ``refresh`` seconds
        for what no wake-up announces (another process's failures, new queues when
        ``queues`` is None: every queue): their capped counts by state
        (:meth:`queue_counts`, a bounded read) where the store has them, else
        :meth:`queues`. Changes within ``debounce`` seconds of the
        first come as one event per queue.
        """
        for option, value, low in (("debounce", debounce, 0.0), ("refresh", refresh, 0.01)):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not low <= value <= 3600
            ):
                raise InvalidOption(option, value, f"seconds between {low} and 3600")
        watched = None if queues is None else set(check_queue_names(queues))
        pending: set[str] = set()
        signal = AsyncSignal()
        unsubscribers: dict[str, Callable[[], None]] = {}

        def follow(names: Iterable[str]) -> None:
            for name in names:
                if name not in unsubscribers:
                    unsubscribers[name] = self.store.wakeups.subscribe(
                        [name], functools.partial(_changed, pending, signal, name)
                    )

        snapshot = await self._queue_snapshot()
        follow(watched if watched is not None else snapshot)
        try:
            while True:
                await signal.wait(refresh)
                await async_sleep(debounce)
                now = await self._queue_snapshot()
                changed = {
                    name
                    for name in now.keys() | snapshot.keys()
                    if now.get(name) != snapshot.get(name)
                }
                snapshot = now
                if watched is None:
                    follow(now)
                while pending:  # pop by pop: a wake-up from another thread is never lost
                    changed.add(pending.pop())
                for name in sorted(changed):
                    if watched is None or name in watched:
                        yield QueueEvent(name)
        finally:
            for unsubscribe in unsubscribers.values():
                unsubscribe()

    async def _queue_snapshot(self) -> dict[str, object]:
        """What ``watch`` compares every ``refresh``: each queue's counts, by name."""
        if self.store.capabilities.queue_counts:
            return {
                counts.name: counts for counts in await self.store.queue_counts(None, COUNT_CAP)
            }
        return {info.name: info for info in await self.store.queues()}

    async def rollups(
        self,
        resolution: Resolution = "minute",
        since: float | None = None,
        queue: str | None = None,
        type: str | None = None,
    ) -> list[RollupRow]:
        """Per-minute (kept 8 hours) or per-hour (kept 3 days) throughput, errors and
        duration histograms per queue and type, flushed by the workers every 10 seconds;
        ``since`` (default: all kept) bounds the periods' start."""
        check_rollup_query(resolution, since)
        if queue is not None:
            check_queue_name(queue)
        start = 0.0 if since is None else since
        return await self.store.rollups(resolution, start, queue, type)

    async def _require(self, job_id: str) -> Job:
        job = await self.store.show(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job


def _changed(pending: set[str], signal: AsyncSignal, queue: str) -> None:
    pending.add(queue)
    signal.set()


def _check_int(option: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidOption(option, value, f"must be an int between {low} and {high}")
