"""The in-memory store's state: its jobs, the indexes and heaps that order them, and the
transitions that keep those consistent (a job moving between states, time making changes
due, a lapsed lease's delivery taking the job back). Every method runs under the store's
lock, which the caller holds."""

from __future__ import annotations

import heapq
import itertools
import threading
from collections import Counter, deque

from ...clock import Clock
from ...errors import JobNotFound
from ...job import Job, JobState, state_bit
from ..limits import QueueLimits, allowance, refill
from ..types import DONE_CHANNEL, NodeInfo, ScheduleInfo, Wakeups, dependency_error

#: A ready job's place in its queue: priority, run_at, the job's sequence number, its id.
ReadyEntry = tuple[int, float, int, str]

_PENDING = (JobState.SCHEDULED, JobState.QUEUED, JobState.ACTIVE)
#: States an ack leaves alone: done, and cancelled (final: no ack makes it done).
_FINISHED = (JobState.DONE, JobState.CANCELLED)
#: States the hot transitions test, read once: in Python 3.11 reading an enum class's
#: attribute (``JobState.QUEUED``) costs about 150 ns, a global 5 ns.
_QUEUED = JobState.QUEUED
_WAITING = JobState.WAITING
_ACTIVE = JobState.ACTIVE


class MemoryState:
    """Jobs in dictionaries and heaps, and the transitions between states;
    :class:`~disquette.stores.memory.MemoryStore` is built on it."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.wakeups = Wakeups()
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._seq: dict[str, int] = {}
        self._leased_at: dict[str, float] = {}
        #: The holder of each active job claimed with one (see release_leases), with the
        #: job's attempts at that claim: the holder is only right while they match.
        self._holders: dict[str, tuple[str, int]] = {}
        #: Jobs requeued because their lease ran out that no claim took since: their
        #: delivery still holds them (see _take_back_lapse), with its leased_at and holder.
        self._lapsed: dict[str, tuple[float, tuple[str, int] | None]] = {}
        self._counter = itertools.count()
        # Heaps with lazy deletion: an entry is live only while it matches the job.
        self._ready: dict[str, list[ReadyEntry]] = {}
        #: Each queue's ready entries that came in order (each after the one before: new
        #: jobs, the usual case), beside its heap for the others: a claim takes the
        #: smaller head of the two, so most jobs cost an append and a popleft, not a heap
        #: push and a pop of log(queue length) comparisons. Lazy deletion as the heaps.
        self._fifo: dict[str, deque[ReadyEntry]] = {}
        self._scheduled: list[tuple[float, str]] = []
        self._leases: list[tuple[float, str]] = []
        self._expiries: list[tuple[float, str]] = []
        self._queued_count: Counter[str] = Counter()
        #: Pause bits per queue (PAUSE_IN, PAUSE_OUT); queues without a mode are absent.
        self._pause: dict[str, int] = {}
        self._nodes: dict[str, NodeInfo] = {}
        self._schedules: dict[str, ScheduleInfo] = {}
        #: (queue, unique key) -> the last job that took it. It holds the key only while
        #: it lives in one of its unique_states (checked at each add, see _key_holder), so
        #: no transition needs to free a key; _remove drops the entry to bound the memory.
        self._unique: dict[tuple[str, str], str] = {}
        #: Flow limits (issue 16): each limited queue's limits, its rate bucket (level,
        #: when filled), and how many jobs of each queue are active (leased).
        self._limits: dict[str, QueueLimits] = {}
        self._buckets: dict[str, tuple[float, float]] = {}
        self._active_count: Counter[str] = Counter()
        #: Dependencies (issue 16): each parent's waiting children (an entry whose child
        #: is no longer waiting is skipped), and each waiting job's parents not yet ended.
        self._children: dict[str, list[str]] = {}
        self._pending_parents: dict[str, int] = {}

    def _make_ready(self, job: Job) -> None:
        job.state = _QUEUED
        job.lease_until = None
        self._queued_count[job.queue] += 1
        entry = (job.priority, job.run_at, self._seq[job.id], job.id)
        self._push_ready(job.queue, entry)

    def _push_ready(self, queue: str, entry: ReadyEntry) -> None:
        """Queue a ready entry: on the queue's FIFO when it sorts after its last entry."""
        fifo = self._fifo.get(queue)
        if fifo is None:
            fifo = self._fifo[queue] = deque()
        if not fifo or fifo[-1] < entry:
            fifo.append(entry)
        else:
            heapq.heappush(self._ready.setdefault(queue, []), entry)

    def _leave_state(self, job: Job) -> None:
        if job.state is _QUEUED:
            self._queued_count[job.queue] -= 1
        elif job.state is _WAITING:
            del self._pending_parents[job.id]
        if self._leased_at.pop(job.id, None) is not None:
            self._active_count[job.queue] -= 1
        self._holders.pop(job.id, None)
        self._lapsed.pop(job.id, None)

    def _set_expiry(self, job: Job, expires_at: float | None) -> None:
        job.expires_at = expires_at
        if expires_at is not None:
            heapq.heappush(self._expiries, (expires_at, job.id))

    def _remove(self, job: Job) -> None:
        self._leave_state(job)
        del self._jobs[job.id]
        del self._seq[job.id]
        if job.unique_key is not None and self._unique.get((job.queue, job.unique_key)) == job.id:
            del self._unique[job.queue, job.unique_key]

    def _key_holder(self, queue: str, key: str) -> str | None:
        """The job holding a unique key of a queue now, if any."""
        job = self._jobs.get(self._unique.get((queue, key), ""))
        if job is None or job.unique_key != key or not job.unique_states & state_bit(job.state):
            return None
        return job.id

    def _split_unique(self, jobs: list[Job]) -> tuple[list[Job], dict[str, str]]:
        """The jobs to create, and id -> holder for those whose unique key is held (by a
        stored job or an earlier one of the batch)."""
        created: list[Job] = []
        existing: dict[str, str] = {}
        batch: dict[tuple[str, str], str] = {}
        for job in jobs:
            if job.unique_key is not None:
                slot = (job.queue, job.unique_key)
                holder = batch.get(slot) or self._key_holder(*slot)
                if holder is not None:
                    existing[job.id] = holder
                    continue
                batch[slot] = job.id
            created.append(job)
        return created, existing

    def _tick(self, now: float, limit: int | None = None) -> tuple[set[str], int]:
        """Apply what time made due (at most ``limit`` jobs of each kind: a claim does not
        stop the store for a whole backlog; the next call goes on); return the queues that
        got ready jobs, and how many leases ran out."""
        woken: set[str] = set()
        stale = 0
        left = limit
        while self._expiries and self._expiries[0][0] <= now and left != 0:
            expires_at, job_id = heapq.heappop(self._expiries)
            job = self._jobs.get(job_id)
            if job is not None and job.expires_at == expires_at:
                self._remove(job)
                if job_id in self._children:
                    woken.update(self._resolve(job_id, "expired", now))
            left = None if left is None else left - 1
        left = limit
        while self._scheduled and self._scheduled[0][0] <= now and left != 0:
            run_at, job_id = heapq.heappop(self._scheduled)
            job = self._jobs.get(job_id)
            if job is not None and job.state is JobState.SCHEDULED and job.run_at == run_at:
                self._make_ready(job)
                woken.add(job.queue)
            left = None if left is None else left - 1
        left = limit
        while self._leases and self._leases[0][0] <= now and left != 0:
            lease_until, job_id = heapq.heappop(self._leases)
            job = self._jobs.get(job_id)
            if job is not None and job.state is JobState.ACTIVE and job.lease_until == lease_until:
                delivery = (self._leased_at.get(job_id, now), self._holders.get(job_id))
                self._requeue_stale(job)
                self._lapsed[job_id] = delivery
                woken.add(job.queue)
                stale += 1
            left = None if left is None else left - 1
        return woken, stale

    def _requeue_stale(self, job: Job) -> None:
        self._leave_state(job)
        job.additional_deliveries += 1
        self._make_ready(job)

    def _holds(self, job: Job, delivery: int | None) -> bool:
        """Whether a delivery (None: whichever is the job's) holds the job: it is active, or
        its lease ran out and no claim took it since."""
        if delivery is not None and delivery != job.attempts:
            return False
        return job.state is _ACTIVE or job.id in self._lapsed

    def _take_back_lapse(self, job: Job) -> tuple[float, tuple[str, int] | None] | None:
        """Undo the requeue of a lapsed lease whose delivery acts on the job before any claim
        took it: the lapse was no redelivery after all. Returns that delivery's leased_at
        and holder, or None when the job was not requeued so; the job stays queued (the
        caller moves it on)."""
        delivery = self._lapsed.pop(job.id, None)
        if delivery is not None:
            job.additional_deliveries -= 1
        return delivery

    def _lease(self, job: Job, leased_at: float) -> None:
        """Make a job active (its previous state left), leased at ``leased_at``."""
        job.state = _ACTIVE
        self._leased_at[job.id] = leased_at
        self._active_count[job.queue] += 1

    def _limited(self, queue: str, limits: QueueLimits, wanted: int, now: float) -> int:
        """How many of ``wanted`` jobs a claim may take from a limited queue now; the
        bucket is refilled (the caller spends what it takes with :meth:`_spend`)."""
        tokens = 0.0
        if limits.rate is not None:
            tokens = refill(limits.rate, *self._buckets[queue], now)
            self._buckets[queue] = (tokens, now)
        return allowance(limits, self._active_count[queue], tokens, wanted)

    def _spend(self, queue: str, taken: int) -> None:
        if taken and queue in self._buckets:
            tokens, filled_at = self._buckets[queue]
            self._buckets[queue] = (tokens - taken, filled_at)

    # -- dependencies ------------------------------------------------------------------

    def _check_parents(self, jobs: list[Job]) -> None:
        """Refuse a batch with ``JobNotFound`` if a job's parent is neither stored nor an
        earlier job of the batch (before anything changes)."""
        batch: set[str] = set()
        for job in jobs:
            for parent in job.depends_on:
                if parent not in batch and parent not in self._jobs:
                    raise JobNotFound(parent)
            batch.add(job.id)

    def _admit_dependant(self, job: Job, now: float) -> list[str]:
        """A stored new job with parents: wait for those still pending, end at once after
        one that ended without being done (policy ``fail``), else start. Returns the
        channels to notify."""
        pending: list[str] = []
        for parent_id in job.depends_on:
            parent = self._jobs[parent_id]
            if parent.state in (JobState.FAILED, JobState.CANCELLED):
                if job.on_dependency_failure == "fail":
                    self._end_dependant(
                        job, parent.state, dependency_error(parent_id, parent.state.value), now
                    )
                    return [DONE_CHANNEL]
            elif parent.state is not JobState.DONE:
                pending.append(parent_id)
        if not pending:
            return self._start(job, now)
        for parent_id in pending:
            self._children.setdefault(parent_id, []).append(job.id)
        job.state = JobState.WAITING
        self._pending_parents[job.id] = len(pending)
        return []

    def _resolve(self, parent_id: str, end: str, now: float) -> set[str]:
        """A parent ended (``done``, ``failed``, ``cancelled``, ``deleted``, ``expired``):
        apply it to its waiting children, and a child's end to its own children in turn.
        Returns the channels to notify."""
        notify: set[str] = set()
        work = [(parent_id, end)]
        while work:
            parent_id, end = work.pop()
            for child_id in self._children.pop(parent_id, ()):
                child = self._jobs.get(child_id)
                if child is None or child.state is not JobState.WAITING:
                    continue
                if end == "done" or child.on_dependency_failure == "run":
                    left = self._pending_parents[child_id] - 1
                    self._pending_parents[child_id] = left
                    if not left:
                        self._leave_state(child)
                        child.run_at = max(child.run_at, now)
                        notify.update(self._start(child, now))
                    continue
                state = JobState.FAILED if end == "failed" else JobState.CANCELLED
                self._end_dependant(child, state, dependency_error(parent_id, end), now)
                notify.add(DONE_CHANNEL)
                work.append((child_id, state.value))
        return notify

    def _start(self, job: Job, now: float) -> list[str]:
        """Make a job ready, or scheduled until its ``run_at``; the channels to notify."""
        if job.run_at <= now:
            self._make_ready(job)
            return [job.queue]
        job.state = JobState.SCHEDULED
        heapq.heappush(self._scheduled, (job.run_at, job.id))
        return []

    def _end_dependant(self, job: Job, state: JobState, error: str, now: float) -> None:
        """End a job that may no longer run because of a parent (see :meth:`_finish`)."""
        if job.state is JobState.WAITING:
            self._leave_state(job)
        job.last_error = error
        self._finish(job, state, now)

    def _finish(self, job: Job, state: JobState, now: float) -> None:
        """End a job that left its state: ``failed`` is kept until deleted or retried,
        ``cancelled`` for its ``result_ttl`` (removed at once when that is 0)."""
        job.state = state
        job.lease_until = None
        job.finished_at = now
        if state is JobState.FAILED:
            self._set_expiry(job, None)
        elif job.result_ttl <= 0:
            self._remove(job)
        else:
            self._set_expiry(job, now + job.result_ttl)

    def _live(self, job_id: str) -> Job | None:
        self._tick(self.clock.now())
        return self._jobs.get(job_id)
