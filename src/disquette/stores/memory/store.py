"""The in-memory store itself: adds, claims, acks and the other transitions, on the state
of ``state.py`` (with ``admin.py``'s inspecting and managing operations), and the openers of
``memory://`` (a private store) and ``memory://name`` (one shared in the process)."""

from __future__ import annotations

import heapq
import operator
import threading
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import TypeVar
from urllib.parse import urlsplit

from ...clock import Clock
from ...errors import (
    InvalidState,
    InvalidURL,
    JobCancelled,
    JobNotFound,
    LeaseLost,
    QueueFull,
    QueuePaused,
    UniqueKeyTaken,
)
from ...job import Job, JobState, decode_progress
from ..store import Store
from ..types import (
    CANCEL_CHANNEL,
    DONE_CHANNEL,
    HOLDER_GONE,
    NO_RESULT,
    PAUSE_IN,
    PAUSE_OUT,
    Delivery,
    EncodedResult,
    deliveries_of,
    held_elsewhere,
    refuse_store_powers,
)
from .admin import MemoryAdmin
from .observe import MemoryObserve
from .state import _ACTIVE, _FINISHED, _PENDING, _QUEUED, ReadyEntry

T = TypeVar("T")

#: Jobs of each kind a claim makes due at most (a burst is spread over the next claims).
TICK_BATCH = 1000


class MemoryStore(MemoryObserve, MemoryAdmin, Store):
    """Jobs in dictionaries and heaps, guarded by one lock. Thread-safe, not persistent.

    Its state and transitions are :class:`~.state.MemoryState`'s, its inspecting and
    managing operations :class:`~.admin.MemoryAdmin`'s.
    """

    poll_interval = 0.25  # every change is announced in-process; this only catches delays
    blocking = False  # calls never wait on I/O: the asyncio client runs them inline
    #: Disquette's semantics in full; no transactions, replicas or schema to migrate.
    capabilities = Store.capabilities.replace(
        transactions=False,
        replication=False,
        node_registry=True,
        migrations=False,
        limits=True,
        dependencies=True,
    )

    def __init__(self, clock: Clock, url: str = "memory://") -> None:
        self.url = url
        super().__init__(clock)

    # -- the interface -----------------------------------------------------------------

    def add(
        self,
        jobs: Sequence[Job],
        max_len: int | None,
        *,
        connection: object = None,
        replicate: int = 0,
    ) -> dict[str, str]:
        """Insert jobs; see :meth:`Store.add`."""
        if connection is not None or replicate:
            refuse_store_powers("memory", connection, replicate)
        existing: dict[str, str] = {}
        with self._lock:
            now = self.clock.now()
            self._tick(now)
            queues = set(map(_queue_of, jobs))
            if self._pause:
                for queue in queues:
                    if self._pause.get(queue, 0) & PAUSE_IN:
                        raise QueuePaused(queue)
            if max_len is None and self._plain(jobs):
                self._add_plain(jobs, now)
                notify = queues
            else:
                notify = self._add_checked(jobs, max_len, now, existing)
        self.wakeups.notify(notify)
        return existing

    @staticmethod
    def _plain(jobs: Sequence[Job]) -> bool:
        """Whether no job of an add has a unique key or parents (what ``add``'s checks are
        about: the common add, which :meth:`_add_plain` makes without them)."""
        for job in jobs:  # noqa: SIM110 (a loop: all() over a generator costs twice this)
            if job.unique_key is not None or job.depends_on:
                return False
        return True

    def _add_plain(self, jobs: Sequence[Job], now: float) -> None:
        """Store new jobs without unique keys nor parents, ready or scheduled (an id
        already stored, or repeated in ``jobs``, is skipped): ``add``'s hot path, the
        transitions of ``_make_ready`` and ``_start`` inlined. Runs under the lock."""
        stored, seqs, counter, expiries = self._jobs, self._seq, self._counter, self._expiries
        counts, push = self._queued_count, heapq.heappush
        queued = _QUEUED
        # The ready jobs of a run of one queue are counted in ``run``, added to its count
        # when another queue starts (an add is mostly one queue's).
        last_queue: str | None = None
        run = 0
        fifo: deque[ReadyEntry] = deque()
        for job in jobs:
            job_id = job.id
            if job_id in stored:
                continue  # an id the store holds (in any state) is never added again
            stored[job_id] = job
            seqs[job_id] = seq = next(counter)
            expires_at = job.expires_at
            if expires_at is not None:
                push(expiries, (expires_at, job_id))
            run_at = job.run_at
            if run_at > now:
                job.state = JobState.SCHEDULED
                push(self._scheduled, (run_at, job_id))
                continue
            queue = job.queue
            if queue != last_queue:
                if run:
                    counts[last_queue] += run  # type: ignore[index]
                fifo = self._fifo.get(queue) or self._fifo.setdefault(queue, deque())
                last_queue, run = queue, 0
            job.state = queued
            job.lease_until = None
            run += 1
            entry = (job.priority, run_at, seq, job_id)
            if not fifo or fifo[-1] < entry:  # _push_ready, inline
                fifo.append(entry)
            else:
                push(self._ready.setdefault(queue, []), entry)
        if run:
            counts[last_queue] += run  # type: ignore[index]

    def _add_checked(
        self, jobs: Sequence[Job], max_len: int | None, now: float, existing: dict[str, str]
    ) -> set[str]:
        """``add`` with its checks (``max_len``, unique keys, parents), under the lock:
        ``existing`` gets the jobs a unique key held. Returns the channels to notify."""
        # An id the store holds (in any state, done included) is never added again, nor
        # twice from one batch (the first is).
        fresh: dict[str, Job] = {}
        for job in jobs:
            if job.id not in self._jobs:
                fresh.setdefault(job.id, job)
        jobs = list(fresh.values())
        if any(job.unique_key is not None for job in jobs):
            jobs, held = self._split_unique(jobs)
            existing.update(held)
        if max_len is not None:
            incoming = Counter(job.queue for job in jobs if job.run_at <= now)
            for queue, extra in incoming.items():
                if self._queued_count[queue] + extra > max_len:
                    raise QueueFull(queue, max_len)
        dependants = any(job.depends_on for job in jobs)
        if dependants:
            self._check_parents(jobs)
        notify = {job.queue for job in jobs}
        for job in jobs:
            self._jobs[job.id] = job
            self._seq[job.id] = next(self._counter)
            self._set_expiry(job, job.expires_at)
            if job.unique_key is not None:
                self._unique[job.queue, job.unique_key] = job.id
            if dependants and job.depends_on:
                notify.update(self._admit_dependant(job, now))
            else:
                self._start(job, now)
        return notify

    def claim(self, queues: Sequence[str], count: int, *, holder: str | None = None) -> list[Job]:
        """Lease ready jobs; see :meth:`Store.claim`."""
        return self._claim(queues, count, holder, _copies)

    def claim_deliveries(
        self, queues: Sequence[str], count: int, *, holder: str | None = None
    ) -> list[Delivery]:
        """Lease ready jobs as :meth:`claim` does, returning of each what a delivery reads
        instead of a copy of the job; see :meth:`Store.claim_deliveries`."""
        return self._claim(queues, count, holder, deliveries_of)

    def _claim(
        self,
        queues: Sequence[str],
        count: int,
        holder: str | None,
        make: Callable[[list[Job]], list[T]],
    ) -> list[T]:
        """Lease ready jobs, returning ``make`` of them, under the lock (the store keeps the
        jobs: what it returns must not be them)."""
        claimed: list[Job] = []
        with self._lock:
            now = self.clock.now()
            self._tick(now, TICK_BATCH)
            for queue in queues:
                fifo, heap = self._fifo.get(queue), self._ready.get(queue)
                if not (fifo or heap) or self._pause.get(queue, 0) & PAUSE_OUT:
                    continue
                end = count
                limits = self._limits.get(queue)
                if limits is not None:
                    end = len(claimed) + self._limited(queue, limits, count - len(claimed), now)
                before = len(claimed)
                self._claim_queue(queue, fifo, heap, end, holder, now, claimed)
                taken = len(claimed) - before
                if taken:
                    self._queued_count[queue] -= taken
                    if limits is not None:
                        self._spend(queue, taken)
                if len(claimed) >= count:
                    break
            return make(claimed)

    def _claim_queue(
        self,
        queue: str,
        fifo: deque[ReadyEntry] | None,
        heap: list[ReadyEntry] | None,
        end: int,
        holder: str | None,
        now: float,
        claimed: list[Job],
    ) -> None:
        """Lease ready jobs of one queue into ``claimed`` until it holds ``end``: each the
        smaller head of the queue's FIFO and heap (entries that no longer match their job
        are dropped). The transitions of ``_leave_state`` and ``_lease`` for a queued job
        are inlined (the claim's hot loop); the caller counts the jobs out of the queue."""
        fifo = fifo if fifo is not None else deque()
        heap = heap if heap is not None else []
        jobs, seqs, leased_at, active = self._jobs, self._seq, self._leased_at, self._active_count
        holders, lapsed, leases = self._holders, self._lapsed, self._leases
        queued, active_state = _QUEUED, _ACTIVE
        while (fifo or heap) and len(claimed) < end:
            if heap and (not fifo or heap[0] < fifo[0]):
                priority, run_at, seq, job_id = heapq.heappop(heap)
            else:
                priority, run_at, seq, job_id = fifo.popleft()
            job = jobs.get(job_id)
            if (
                job is None
                or job.state is not queued
                or job.queue != queue
                or seqs[job_id] != seq
                or job.run_at != run_at
                or job.priority != priority
            ):
                continue
            if job_id not in leased_at:
                active[queue] += 1
            leased_at[job_id] = now
            if holder is not None:
                holders[job_id] = (holder, job.attempts + 1)
            elif holders:
                holders.pop(job_id, None)
            if lapsed:
                lapsed.pop(job_id, None)
            job.state = active_state
            job.attempts += 1
            if job.retry_after > 0:
                job.lease_until = lease_until = now + job.retry_after
                heapq.heappush(leases, (lease_until, job_id))
            claimed.append(job)

    def ack(
        self,
        job_ids: Sequence[str],
        results: Sequence[EncodedResult] | None = None,
        *,
        connection: object = None,
        attempts: Sequence[int | None] | None = None,
    ) -> list[str]:
        """Mark jobs done; see :meth:`Store.ack`."""
        refuse_store_powers("memory", connection, 0)
        done: list[str] = []
        released: set[str] = set()
        with self._lock:
            now = self.clock.now()
            self._tick(now)
            jobs, lapsed, children = self._jobs, self._lapsed, self._children
            for index, job_id in enumerate(job_ids):
                job = jobs.get(job_id)
                if job is None or job.state in _FINISHED:
                    continue
                delivery = None if attempts is None else attempts[index]
                if delivery is not None and delivery != job.attempts:
                    continue  # delivered again since: another delivery holds it
                if lapsed:  # mostly empty: no call then
                    self._take_back_lapse(job)
                done.append(job_id)
                if children and job_id in children:
                    released.update(self._resolve(job_id, "done", now))
                if job.result_ttl <= 0:
                    self._remove(job)
                    continue
                self._leave_state(job)
                job.state = JobState.DONE
                job.lease_until = None
                job.finished_at = now
                job.raw_result, job.result_encoding = (
                    NO_RESULT if results is None else results[index]
                )
                self._set_expiry(job, now + job.result_ttl)
        if done:
            released.add(DONE_CHANNEL)
            self.wakeups.notify(released)
        return done

    def nack(
        self, job_ids: Sequence[str], *, attempts: Sequence[int | None] | None = None
    ) -> dict[str, str]:
        """Requeue active jobs; see :meth:`Store.nack`."""
        nacked: dict[str, str] = {}
        with self._lock:
            self._tick(self.clock.now())
            for index, job_id in enumerate(job_ids):
                job = self._jobs.get(job_id)
                delivery = None if attempts is None else attempts[index]
                if job is None or not self._holds(job, delivery):
                    continue
                job.nacks += 1
                if self._take_back_lapse(job) is None:  # a lapsed one is in its place already
                    self._leave_state(job)
                    self._make_ready(job)
                nacked[job_id] = job.queue
        self.wakeups.notify(set(nacked.values()))
        return nacked

    def fail(
        self, job_id: str, error: str, retry_at: float | None, *, attempt: int | None = None
    ) -> bool:
        """Record an error; see :meth:`Store.fail`."""
        with self._lock:
            now = self.clock.now()
            self._tick(now)
            job = self._jobs.get(job_id)
            if job is None or not self._holds(job, attempt):
                return False
            self._take_back_lapse(job)
            notify = self._record_error(job, error, retry_at, now)
        self.wakeups.notify(notify)
        return True

    def _record_error(self, job: Job, error: str, retry_at: float | None, now: float) -> list[str]:
        """A held job's error: again at ``retry_at``, or failed for good when None.
        Returns the channels to notify."""
        self._leave_state(job)
        job.error_count += 1
        job.last_error = error
        job.lease_until = None
        if retry_at is None:
            self._finish(job, JobState.FAILED, now)
            if job.id in self._children:
                return [DONE_CHANNEL, *self._resolve(job.id, "failed", now)]
            return [DONE_CHANNEL]
        job.run_at = retry_at
        if retry_at <= now:
            self._make_ready(job)
            return [job.queue]
        job.state = JobState.SCHEDULED
        heapq.heappush(self._scheduled, (retry_at, job.id))
        return []

    def working(self, job_id: str, *, attempt: int | None = None) -> float | None:
        """Extend a lease; see :meth:`Store.working`."""
        with self._lock:
            return self._extend(self._held_job(job_id, attempt, "working"))

    def progress(self, job_id: str, value: str, *, attempt: int | None = None) -> float | None:
        """Record progress and extend the lease; see :meth:`Store.progress`."""
        with self._lock:
            job = self._held_job(job_id, attempt, "progress")
            job.progress = decode_progress(value)
            return self._extend(job)

    def _held_job(self, job_id: str, attempt: int | None, operation: str) -> Job:
        """The job a delivery holds, for working and progress; raises as they do."""
        job = self._live(job_id)
        if job is None:
            raise JobNotFound(job_id)
        if attempt is not None and attempt != job.attempts:
            raise LeaseLost(job_id, operation, attempt, job.attempts, job.state)
        if not self._holds(job, attempt):
            raise InvalidState(job_id, job.state, "extend the lease of")
        if job.cancel_requested:
            raise JobCancelled(job_id, requested=True)
        return job

    def _extend(self, job: Job) -> float | None:
        """Lease a held job to now + its retry_after (a lapsed one is leased again)."""
        if job.retry_after <= 0:
            return None
        lapsed = self._take_back_lapse(job)
        if lapsed is not None:  # ready since its lease ran out: leased again instead
            self._leave_state(job)
            self._lease(job, lapsed[0])
            if lapsed[1] is not None:
                self._holders[job.id] = lapsed[1]
        job.lease_until = self.clock.now() + job.retry_after
        heapq.heappush(self._leases, (job.lease_until, job.id))
        return job.lease_until

    def cancel(self, job_id: str, *, attempt: int | None = None) -> JobState:
        """Cancel a job, or ask its holder to stop; see :meth:`Store.cancel`."""
        with self._lock:
            now = self.clock.now()
            job = self._live(job_id)
            if job is None:
                raise JobNotFound(job_id)
            if attempt is not None:
                if attempt != job.attempts:
                    raise LeaseLost(job_id, "cancel", attempt, job.attempts, job.state)
                if not self._holds(job, attempt):
                    raise InvalidState(job_id, job.state, "end as cancelled")
            elif job.state not in _PENDING and job.state is not JobState.WAITING:
                raise InvalidState(job_id, job.state, "cancel")
            requested = attempt is None and job.state is JobState.ACTIVE
            notify = [CANCEL_CHANNEL if requested else DONE_CHANNEL]
            if requested:
                job.cancel_requested = True
            else:
                if job_id in self._children:
                    notify.extend(self._resolve(job_id, "cancelled", now))
                self._take_back_lapse(job)
                self._leave_state(job)
                self._finish(job, JobState.CANCELLED, now)
        self.wakeups.notify(notify)
        return JobState.ACTIVE if requested else JobState.CANCELLED

    def show(self, job_id: str) -> Job | None:
        """Return a copy of the job; see :meth:`Store.show`."""
        with self._lock:
            job = self._live(job_id)
            return None if job is None else job.copy()

    def delete(self, job_ids: Sequence[str]) -> int:
        """Delete jobs; see :meth:`Store.delete`."""
        deleted = 0
        notify = {DONE_CHANNEL}
        with self._lock:
            now = self.clock.now()
            self._tick(now)
            for job_id in job_ids:
                job = self._jobs.get(job_id)
                if job is not None:
                    self._remove(job)
                    deleted += 1
                    if job_id in self._children:
                        notify.update(self._resolve(job_id, "deleted", now))
        if deleted:
            self.wakeups.notify(notify)
        return deleted

    def retry(self, job_id: str) -> None:
        """Make a failed job ready; see :meth:`Store.retry`."""
        with self._lock:
            now = self.clock.now()
            job = self._live(job_id)
            if job is None:
                raise JobNotFound(job_id)
            if job.state is not JobState.FAILED:
                raise InvalidState(job_id, job.state, "retry")
            if job.unique_key is not None:
                holder = self._key_holder(job.queue, job.unique_key)
                if held_elsewhere(holder, job.id):
                    raise UniqueKeyTaken(job_id, holder)
                self._unique[job.queue, job.unique_key] = job.id
            job.run_at = now
            job.finished_at = None
            self._make_ready(job)
        self.wakeups.notify([job.queue])

    def enqueue(self, job_ids: Sequence[str]) -> dict[str, str]:
        """Make jobs ready now; see :meth:`Store.enqueue`."""
        enqueued: dict[str, str] = {}
        with self._lock:
            self._tick(self.clock.now())
            for job_id in job_ids:
                job = self._jobs.get(job_id)
                if job is None or job.state not in (JobState.SCHEDULED, JobState.ACTIVE):
                    continue
                if job.attempts and job.retry_after <= 0:
                    continue
                self._leave_state(job)
                if job.attempts:
                    job.additional_deliveries += 1
                self._make_ready(job)
                enqueued[job_id] = job.queue
        self.wakeups.notify(set(enqueued.values()))
        return enqueued

    def dequeue(self, job_ids: Sequence[str]) -> int:
        """Take ready jobs out of their queue; see :meth:`Store.dequeue`."""
        dequeued = 0
        with self._lock:
            now = self.clock.now()
            self._tick(now)
            for job_id in job_ids:
                job = self._jobs.get(job_id)
                if job is None or job.state is not JobState.QUEUED:
                    continue
                self._leave_state(job)
                self._lease(job, now)
                if job.retry_after > 0:
                    job.lease_until = now + job.retry_after
                    heapq.heappush(self._leases, (job.lease_until, job.id))
                dequeued += 1
        return dequeued

    def recover_stale(self, max_age: float | None) -> int:
        """Requeue jobs whose worker is gone; see :meth:`Store.recover_stale`."""
        with self._lock:
            now = self.clock.now()
            queues, recovered = self._tick(now)
            if max_age is not None:
                for job_id, leased_at in list(self._leased_at.items()):
                    job = self._jobs[job_id]
                    if job.state is JobState.ACTIVE and leased_at <= now - max_age:
                        self._requeue_stale(job)
                        queues.add(job.queue)
                        recovered += 1
        self.wakeups.notify(queues)
        return recovered

    def release_leases(self, holder: str) -> int:
        """Give back a dead holder's jobs; see :meth:`Store.release_leases`."""
        notify: set[str] = set()
        with self._lock:
            now = self.clock.now()
            self._tick(now)
            held = [
                job_id
                for job_id, (owner, attempts) in self._holders.items()
                if owner == holder and self._jobs[job_id].attempts == attempts
            ]
            for job_id in held:
                job = self._jobs[job_id]
                if job.retry_after > 0:
                    self._requeue_stale(job)
                    notify.add(job.queue)
                else:
                    notify.update(self._record_error(job, HOLDER_GONE, None, now))
        self.wakeups.notify(notify)
        return len(held)

    def close(self) -> None:
        """Nothing to release."""


_NAMED: dict[str, MemoryStore] = {}
_NAMED_LOCK = threading.Lock()


_queue_of = operator.attrgetter("queue")


def _copies(jobs: list[Job]) -> list[Job]:
    """What ``claim`` returns of the jobs it leased: copies."""
    return [job.copy() for job in jobs]


def open_memory_store(name: str, clock: Clock) -> MemoryStore:
    """Open ``memory://`` (a private store) or ``memory://name`` (shared in the process)."""
    if not name:
        return MemoryStore(clock)
    with _NAMED_LOCK:
        store = _NAMED.get(name)
        if store is None:
            store = _NAMED[name] = MemoryStore(clock, url=f"memory://{name}")
        return store


def open_url(url: str, clock: Clock) -> MemoryStore:
    """Open ``memory://`` (a private store) or ``memory://name`` (one shared in the process)."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidURL(url, str(exc)) from None
    if parts.path not in ("", "/") or parts.query:
        raise InvalidURL(url, "use memory:// or memory://name")
    return open_memory_store(parts.netloc, clock)
