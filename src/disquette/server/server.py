"""What the connections of one server share: the store and the node, the settings, the
counters INFO and QSTAT report, and the entry points that hand requests to the batches."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import partial
from typing import Final, Protocol

from ..client_async import AsyncClient
from ..clock import SystemClock
from ..defaults import MAX_ATTEMPTS, PRIORITY, RESULT_TTL
from ..disque import DEFAULT_TTL, default_retry
from ..errors import StoreUnavailable
from ..job import Encoding, Job, JobState, job_id_factory, new_job
from ..stores.store_async import AsyncStore
from ..stores.types import Delivery
from .batching import (
    AddRequest,
    Gathered,
    Settling,
    run_adds,
    run_settles,
)
from .node import Node
from .protocol import refusal

log = logging.getLogger("disquette.server")

#: Enum members a plain ADDJOB's job takes, read once: in Python 3.11 reading an enum
#: class's attribute (``JobState.QUEUED``) costs about 150 ns, a global 5 ns.
_BYTES: Final = Encoding.BYTES
_QUEUED: Final = JobState.QUEUED
#: Disque's RETRY for the default TTL.
DEFAULT_RETRY: Final = float(default_retry(DEFAULT_TTL))
#: How long a done job stays visible to ``wait()`` of Python clients (SHOW says ``$-1``).
DEFAULT_RESULT_TTL: Final = RESULT_TTL
#: How long Disque keeps an empty queue object nobody uses (a blocked GETJOB creates one).
QUEUE_IDLE_GC: Final = 300.0


class Rates:
    """Redis' instantaneous metrics: commands, input and output bytes per second, each the
    mean of the last :data:`SAMPLES` rates, one measured every :data:`INTERVAL` seconds."""

    SAMPLES: Final = 16
    INTERVAL: Final = 0.1

    def __init__(self, server: Server) -> None:
        self._server = server
        self._last = (time.monotonic(), 0, 0, 0)
        self._samples: list[tuple[float, float, float]] = []
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Sample from now on, every :data:`INTERVAL` seconds."""
        self._last = self._now()
        self._timer = asyncio.get_running_loop().call_later(self.INTERVAL, self._sample)

    def stop(self) -> None:
        """Stop sampling."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _now(self) -> tuple[float, int, int, int]:
        server = self._server
        return (
            time.monotonic(),
            server.commands_processed,
            server.net_input_bytes,
            server.net_output_bytes,
        )

    def _sample(self) -> None:
        now = self._now()
        (then, ops, read, written), self._last = self._last, now
        elapsed = max(now[0] - then, 1e-6)
        rates = ((now[1] - ops) / elapsed, (now[2] - read) / elapsed, (now[3] - written) / elapsed)
        self._samples = [*self._samples[-(self.SAMPLES - 1) :], rates]
        self._timer = asyncio.get_running_loop().call_later(self.INTERVAL, self._sample)

    def per_second(self) -> tuple[float, float, float]:
        """Commands, input bytes and output bytes per second, lately."""
        samples = self._samples or [(0.0, 0.0, 0.0)]
        ops, read, written = (sum(column) / len(samples) for column in zip(*samples, strict=True))
        return ops, read, written


class Resumable(Protocol):
    """A session that goes on once a batch settled its replies (see ``Server.resumes``)."""

    def resume(self) -> None:
        """Run what may run now, and write what is ready."""


class Server:
    """What the connections of one server share: the store, the node, settings, counters."""

    def __init__(
        self,
        client: AsyncClient,
        node: Node,
        *,
        requirepass: str | None = None,
        result_ttl: float = DEFAULT_RESULT_TTL,
        max_batch: int = 1024,
        pool_nodes_as_replicas: bool = False,
    ) -> None:
        self.client = client
        self.store: AsyncStore = client.store
        self.node = node
        self.requirepass = requirepass
        #: REPLICATE n is met when the pool has n live nodes (they share the store's copy).
        self.pool_nodes_as_replicas = pool_nodes_as_replicas
        #: The Unix socket served beside TCP, and its mode (CONFIG GET).
        self.unixsocket: tuple[str | None, int | None] = (None, None)
        self.result_ttl = result_ttl
        self.started = time.time()
        self.run_id = os.urandom(20).hex()
        self.connected = 0
        self.blocked = 0
        self.total_connections = 0
        self.rejected_connections = 0
        self.commands_processed = 0
        #: Bytes read from and written to clients (INFO's total_net_*_bytes).
        self.net_input_bytes = 0
        self.net_output_bytes = 0
        #: Whether the store took the last batch of ADDJOBs (INFO's aof_last_write_status).
        self.last_write_ok = True
        self.rates = Rates(self)
        self.jobs_in: Counter[str] = Counter()
        self.jobs_out: Counter[str] = Counter()
        self.blocked_on: Counter[str] = Counter()
        self.multiplexing_api = "asyncio"
        self._factories: dict[tuple[int, int], Callable[[], str]] = {}
        self._writers: list[Callable[[], None]] = []
        #: Sessions whose replies a batch settled, resumed once it is over (by
        #: :meth:`after_batch`, called after each batch or, outside one, in the next loop
        #: iteration): a batch settles many replies of one session, and going on once, after
        #: all of them, costs one pass over its requests and replies instead of one per
        #: reply. Sessions append themselves (no call, no bound method per settled reply).
        self.resumes: list[Resumable] = []
        #: Queue names already checked, by their bytes (ADDJOB's fast path).
        self.queues_checked: dict[bytes, str] = {}
        self._default_id = job_id_factory(DEFAULT_TTL, DEFAULT_RETRY, node.prefix)
        clock = self.store.clock
        # The wall clock's own function when the store keeps time by it: a Python call less
        # per ADDJOB. The TTL of a plain ADDJOB's job is worked out once per second.
        self._now: Callable[[], float] = time.time if type(clock) is SystemClock else clock.now
        self._second = (0.0, 0.0)
        self._default_expiry = 0.0
        self.max_batch = max_batch
        # One store call per loop iteration for all connections, not one per request, even
        # on the memory store, which commits nothing (bench/bench_server.py). After each
        # batch the sessions it answered go on, and its replies leave, at once. Sessions
        # and commands push their requests themselves (a call less per request).
        #: Plain ADDJOBs (no MAXLEN, no REPLICATE): their replies, concatenated, once
        #: committed. Concurrent ADDJOBs of every connection share one store transaction
        #: (one commit, one fsync, up to ``max_batch`` jobs): what makes SQLite fast here.
        self.adds = Gathered[AddRequest](partial(run_adds, self), self.after_batch)
        # ACKJOBs and GETJOBs: one batch for both kinds, one store call when it can be
        # (SQLite: one commit instead of two per loop iteration).
        settling = Settling(partial(run_settles, self), self.after_batch)
        #: ACKJOBs: each ``Pending`` gets how many of its jobs became done.
        self.acks = settling.acks
        #: GETJOBs: up to COUNT jobs each with the next batched claim (GETJOB's order).
        self.claims = settling.claims
        #: Per queue, when this node first and last saw it used (QSTAT's age and idle).
        self.queue_times: dict[str, list[float]] = {}
        self._prune_at = 1024
        self.on_shutdown: Callable[[], None] = lambda: None

    def new_job(self, queue: str, body: bytes, ttl: int, retry: int, delay: int) -> Job:
        """A job as Disque makes it: this node's id prefix, whole-second TTL."""
        factory = self._factories.get((ttl, retry))
        if factory is None:
            factory = self._factories[(ttl, retry)] = job_id_factory(ttl, retry, self.node.prefix)
        return self._job(factory(), queue, body, ttl, float(retry), delay)

    def default_job(self, queue: str, body: bytes) -> Job:
        """:meth:`new_job` with Disque's defaults: TTL one day, RETRY its tenth, no DELAY."""
        # The hot path of a plain ADDJOB: new_job's Job, made here without its two calls
        # (positional, in Job's field order).
        now = self._now()
        start, end = self._second
        if not start <= now < end:
            second = math.floor(now)
            self._second = (float(second), float(second + 1))
            # Disque's TTL counts from the current whole second (its etime).
            self._default_expiry = float(second + DEFAULT_TTL)
        return Job(
            self._default_id(),
            queue,
            body,
            _BYTES,
            None,
            PRIORITY,
            _QUEUED,
            now,
            now,
            DEFAULT_RETRY,
            self._default_expiry,
            MAX_ATTEMPTS,
            self.result_ttl,
        )

    def _job(self, job_id: str, queue: str, body: bytes, ttl: int, retry: float, delay: int) -> Job:
        now = self.store.clock.now()
        return new_job(
            job_id,
            queue,
            body,
            Encoding.BYTES,
            now,
            delay=delay,
            retry_after=retry,
            # Disque's TTL counts from the current whole second (its etime).
            expires_at=float(math.floor(now) + ttl),
            result_ttl=self.result_ttl,
        )

    def write_soon(self, write: Callable[[], None]) -> None:
        """Call ``write`` once this loop iteration has read what it could.

        Replies written while requests are still being read (inside ``data_received``)
        cost more: each write wakes the client for one reply. Written together, after the
        reads, they cost one wake-up for many, and the server reads in bigger batches.
        """
        self._writers.append(write)
        if len(self._writers) == 1:
            asyncio.get_running_loop().call_soon(self._write_all)

    def _write_all(self) -> None:
        writers, self._writers = self._writers, []
        for write in writers:
            write()

    def after_batch(self) -> None:
        """Resume the sessions a batch settled replies of, then write what they queued."""
        while self.resumes:
            sessions, self.resumes = self.resumes, []
            for session in sessions:
                session.resume()
        self._write_all()

    async def add_one(self, job: Job, max_len: int | None, replicate: int) -> bytes:
        """Add one job on its own (MAXLEN, REPLICATE): its reply, an error for a refusal."""
        try:
            await self.store.add([job], max_len, replicate=replicate)
        except Exception as exc:
            if isinstance(exc, StoreUnavailable):
                self.last_write_ok = False
            return refusal(exc)
        self.last_write_ok = True
        self.jobs_in[job.queue] += 1
        self.touch([job.queue])
        return b"+" + job.id.encode() + b"\r\n"

    def touch(self, queues: Iterable[str]) -> None:
        """Note that these queues were used now (QSTAT's ``age`` and ``idle``)."""
        now = time.time()
        times = self.queue_times
        for queue in queues:
            seen = times.get(queue)
            if seen is None:
                times[queue] = [now, now]
                if len(times) > self._prune_at:
                    self.recent_queues()  # forgets the idle ones: a queue per request is fine
            else:
                seen[1] = now

    def recent_queues(self) -> set[str]:
        """Queues this node used in the last :data:`QUEUE_IDLE_GC` seconds, empty or not
        (Disque's queue objects: a blocked GETJOB creates its queues). Forgets the others,
        as Disque collects idle queues (used again, a queue starts a new ``age``)."""
        since = time.time() - QUEUE_IDLE_GC
        times = self.queue_times
        for queue in [queue for queue, (_, used) in times.items() if used < since]:
            del times[queue]
        self._prune_at = max(1024, 2 * len(times))
        return set(times)

    def recently_used(self, queue: str) -> bool:
        """Whether this node used ``queue`` in the last :data:`QUEUE_IDLE_GC` seconds."""
        seen = self.queue_times.get(queue)
        return seen is not None and seen[1] >= time.time() - QUEUE_IDLE_GC

    async def requeue(
        self, job_ids: list[str], requeue: Callable[[list[str]], Awaitable[Mapping[str, str]]]
    ) -> int:
        """NACK or ENQUEUE (``requeue``) the jobs; how many were queued again, each counted
        in its queue's ``jobs-in``, as Disque counts every queueing (ADDJOB, NACK, ENQUEUE).
        The store names the queue of each job it requeued, so counting reads nothing."""
        requeued = await requeue(job_ids)
        if requeued:
            arrived = Counter(requeued.values())
            self.jobs_in.update(arrived)
            self.touch(arrived)
        return len(requeued)

    async def give_back(self, jobs: list[Delivery]) -> None:
        """NACK jobs leased for nobody; on failure they come back when their lease runs out."""
        try:
            await self.store.nack([job.id for job in jobs])
        except Exception:
            log.warning("could not give back %d leased job(s)", len(jobs), exc_info=True)
