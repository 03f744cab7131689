"""The in-memory store: a real store (same semantics, same conformance suite), kept in a
process's memory. ``memory://`` opens a private one, ``memory://name`` a named one shared by
every client of the process."""

from __future__ import annotations

import heapq
import itertools
import threading
from collections import Counter
from collections.abc import Collection, Sequence
from urllib.parse import urlsplit

from ..clock import Clock
from ..errors import (
    InvalidState,
    InvalidURL,
    JobCancelled,
    JobNotFound,
    LeaseLost,
    QueueFull,
    QueuePaused,
    UniqueKeyTaken,
)
from ..job import Job, JobState, Stats, StatsRow, decode_progress, state_bit
from .store import Store
from .types import (
    CANCEL_CHANNEL,
    DONE_CHANNEL,
    HOLDER_GONE,
    NO_RESULT,
    PAUSE_IN,
    PAUSE_MODES,
    PAUSE_OUT,
    EncodedResult,
    NodeInfo,
    PauseMode,
    QueueInfo,
    Wakeups,
    held_elsewhere,
    pause_bits,
    refuse_store_powers,
)

_PENDING = (JobState.SCHEDULED, JobState.QUEUED, JobState.ACTIVE)
#: States an ack leaves alone: done, and cancelled (final: no ack makes it done).
_FINISHED = (JobState.DONE, JobState.CANCELLED)


class MemoryStore(Store):
    """Jobs in dictionaries and heaps, guarded by one lock. Thread-safe, not persistent."""

    poll_interval = 0.25  # every change is announced in-process; this only catches delays
    blocking = False  # calls never wait on I/O: the asyncio client runs them inline
    #: Disquette's semantics in full; no transactions, replicas or schema to migrate.
    capabilities = Store.capabilities.replace(
        transactions=False, replication=False, node_registry=True, migrations=False
    )

    def __init__(self, clock: Clock, url: str = "memory://") -> None:
        self.url = url
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
        self._ready: dict[str, list[tuple[int, float, int, str]]] = {}
        self._scheduled: list[tuple[float, str]] = []
        self._leases: list[tuple[float, str]] = []
        self._expiries: list[tuple[float, str]] = []
        self._queued_count: Counter[str] = Counter()
        #: Pause bits per queue (PAUSE_IN, PAUSE_OUT); queues without a mode are absent.
        self._pause: dict[str, int] = {}
        self._nodes: dict[str, NodeInfo] = {}
        #: (queue, unique key) -> the last job that took it. It holds the key only while
        #: it lives in one of its unique_states (checked at each add, see _key_holder), so
        #: no transition needs to free a key; _remove drops the entry to bound the memory.
        self._unique: dict[tuple[str, str], str] = {}

    # -- transitions -------------------------------------------------------------------

    def _make_ready(self, job: Job) -> None:
        job.state = JobState.QUEUED
        job.lease_until = None
        self._queued_count[job.queue] += 1
        entry = (job.priority, job.run_at, self._seq[job.id], job.id)
        heapq.heappush(self._ready.setdefault(job.queue, []), entry)

    def _leave_state(self, job: Job) -> None:
        if job.state is JobState.QUEUED:
            self._queued_count[job.queue] -= 1
        self._leased_at.pop(job.id, None)
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

    def _tick(self, now: float) -> tuple[set[str], int]:
        """Apply what time made due; return the queues that got ready jobs, and how many
        leases ran out."""
        woken: set[str] = set()
        stale = 0
        while self._expiries and self._expiries[0][0] <= now:
            expires_at, job_id = heapq.heappop(self._expiries)
            job = self._jobs.get(job_id)
            if job is not None and job.expires_at == expires_at:
                self._remove(job)
        while self._scheduled and self._scheduled[0][0] <= now:
            run_at, job_id = heapq.heappop(self._scheduled)
            job = self._jobs.get(job_id)
            if job is not None and job.state is JobState.SCHEDULED and job.run_at == run_at:
                self._make_ready(job)
                woken.add(job.queue)
        while self._leases and self._leases[0][0] <= now:
            lease_until, job_id = heapq.heappop(self._leases)
            job = self._jobs.get(job_id)
            if job is not None and job.state is JobState.ACTIVE and job.lease_until == lease_until:
                delivery = (self._leased_at.get(job_id, now), self._holders.get(job_id))
                self._requeue_stale(job)
                self._lapsed[job_id] = delivery
                woken.add(job.queue)
                stale += 1
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
        return job.state is JobState.ACTIVE or job.id in self._lapsed

    def _take_back_lapse(self, job: Job) -> tuple[float, tuple[str, int] | None] | None:
        """Undo the requeue of a lapsed lease whose delivery acts on the job before any claim
        took it: the lapse was no redelivery after all. Returns that delivery's leased_at
        and holder, or None when the job was not requeued so; the job stays queued (the
        caller moves it on)."""
        delivery = self._lapsed.pop(job.id, None)
        if delivery is not None:
            job.additional_deliveries -= 1
        return delivery

    def _live(self, job_id: str) -> Job | None:
        self._tick(self.clock.now())
        return self._jobs.get(job_id)

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
        refuse_store_powers("memory", connection, replicate)
        existing: dict[str, str] = {}
        with self._lock:
            now = self.clock.now()
            self._tick(now)
            for queue in {job.queue for job in jobs}:
                if self._pause.get(queue, 0) & PAUSE_IN:
                    raise QueuePaused(queue)
            # An id the store holds (in any state, done included) is never added again.
            jobs = [job for job in jobs if job.id not in self._jobs]
            if any(job.unique_key is not None for job in jobs):
                jobs, existing = self._split_unique(jobs)
            if max_len is not None:
                incoming = Counter(job.queue for job in jobs if job.run_at <= now)
                for queue, extra in incoming.items():
                    if self._queued_count[queue] + extra > max_len:
                        raise QueueFull(queue, max_len)
            for job in jobs:
                self._jobs[job.id] = job
                self._seq[job.id] = next(self._counter)
                self._set_expiry(job, job.expires_at)
                if job.unique_key is not None:
                    self._unique[job.queue, job.unique_key] = job.id
                if job.run_at <= now:
                    self._make_ready(job)
                else:
                    job.state = JobState.SCHEDULED
                    heapq.heappush(self._scheduled, (job.run_at, job.id))
        self.wakeups.notify({job.queue for job in jobs})
        return existing

    def claim(self, queues: Sequence[str], count: int, *, holder: str | None = None) -> list[Job]:
        """Lease ready jobs; see :meth:`Store.claim`."""
        claimed: list[Job] = []
        with self._lock:
            now = self.clock.now()
            self._tick(now)
            for queue in queues:
                heap = self._ready.get(queue)
                if not heap or self._pause.get(queue, 0) & PAUSE_OUT:
                    continue
                while heap and len(claimed) < count:
                    priority, run_at, seq, job_id = heapq.heappop(heap)
                    job = self._jobs.get(job_id)
                    if (
                        job is None
                        or job.state is not JobState.QUEUED
                        or job.queue != queue
                        or (job.priority, job.run_at, self._seq[job_id]) != (priority, run_at, seq)
                    ):
                        continue
                    self._leave_state(job)
                    job.state = JobState.ACTIVE
                    job.attempts += 1
                    self._leased_at[job.id] = now
                    if holder is not None:
                        self._holders[job.id] = (holder, job.attempts)
                    if job.retry_after > 0:
                        job.lease_until = now + job.retry_after
                        heapq.heappush(self._leases, (job.lease_until, job.id))
                    claimed.append(job.copy())
                if len(claimed) >= count:
                    break
        return claimed

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
        with self._lock:
            now = self.clock.now()
            self._tick(now)
            for index, job_id in enumerate(job_ids):
                job = self._jobs.get(job_id)
                if job is None or job.state in _FINISHED:
                    continue
                delivery = None if attempts is None else attempts[index]
                if delivery is not None and delivery != job.attempts:
                    continue  # delivered again since: another delivery holds it
                self._take_back_lapse(job)
                done.append(job_id)
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
            self.wakeups.notify([DONE_CHANNEL])
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
            job.state = JobState.FAILED
            job.finished_at = now
            self._set_expiry(job, None)
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
            job.state = JobState.ACTIVE
            self._leased_at[job.id] = lapsed[0]
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
            elif job.state not in _PENDING:
                raise InvalidState(job_id, job.state, "cancel")
            requested = attempt is None and job.state is JobState.ACTIVE
            if requested:
                job.cancel_requested = True
            else:
                self._take_back_lapse(job)
                self._leave_state(job)
                job.state = JobState.CANCELLED
                job.lease_until = None
                job.finished_at = now
                if job.result_ttl <= 0:
                    self._remove(job)
                else:
                    self._set_expiry(job, now + job.result_ttl)
        self.wakeups.notify([CANCEL_CHANNEL if requested else DONE_CHANNEL])
        return JobState.ACTIVE if requested else JobState.CANCELLED

    def show(self, job_id: str) -> Job | None:
        """Return a copy of the job; see :meth:`Store.show`."""
        with self._lock:
            job = self._live(job_id)
            return None if job is None else job.copy()

    def delete(self, job_ids: Sequence[str]) -> int:
        """Delete jobs; see :meth:`Store.delete`."""
        deleted = 0
        with self._lock:
            self._tick(self.clock.now())
            for job_id in job_ids:
                job = self._jobs.get(job_id)
                if job is not None:
                    self._remove(job)
                    deleted += 1
        if deleted:
            self.wakeups.notify([DONE_CHANNEL])
        return deleted

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
                job.state = JobState.ACTIVE
                self._leased_at[job.id] = now
                if job.retry_after > 0:
                    job.lease_until = now + job.retry_after
                    heapq.heappush(self._leases, (job.lease_until, job.id))
                dequeued += 1
        return dequeued

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
            self._scheduled.clear()
            self._leases.clear()
            self._expiries.clear()
            self._queued_count.clear()
            self._pause.clear()
            self._unique.clear()
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
