"""The Disque command table, each command mapped onto the store.

Where our semantics differ from Disque 1.0-rc1 (documented in ``server/__init__.py``), the
reply keeps Disque's shape so that unmodified clients still work.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import os
import platform
import resource
import sys
import sysconfig
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

from .._async.client import AsyncClient
from .._async.store import AsyncStore
from ..errors import (
    DisquetteError,
    InvalidJobId,
    InvalidQueueName,
    JobNotFound,
    NotReplicated,
    QueueFull,
    QueuePaused,
    StoreUnavailable,
)
from ..job import Encoding, Job, JobState, check_queue_name, job_id_factory
from ..stores.base import PAUSE_MODES
from . import protocol
from .eager import start
from .node import Node
from .protocol import EMPTY_ARRAY, NULL_ARRAY, NULL_BULK, OK, SYNTAX_ERROR, ZERO

if TYPE_CHECKING:
    from . import Session

log = logging.getLogger("disquette.server")

DEFAULT_TTL: Final = 86400
MAX_RETRY_DEFAULT: Final = 300
_DEFAULT_RETRY: Final = float(max(1, min(DEFAULT_TTL // 10, MAX_RETRY_DEFAULT)))
#: How long a done job stays visible to ``wait()`` of Python clients (SHOW says ``$-1``).
DEFAULT_RESULT_TTL: Final = 3600.0
#: How long Disque keeps an empty queue object nobody uses (a blocked GETJOB creates one).
QUEUE_IDLE_GC: Final = 300.0
#: How long before its requeue time Disque wakes a job (SHOW's ``next-awake-within``).
_WAKE_ADVANCE_MS: Final = 500
#: JSCAN's default page, as Disque's COUNT default.
SCAN_COUNT: Final = 100
#: Ids per JSCAN/QPEEK call we fetch at most.
MAX_PAGE: Final = 10_000
BADID: Final = b"-BADID Invalid Job ID format.\r\n"
NOAUTH: Final = b"-NOAUTH Authentication required.\r\n"
#: Disque's job states, as our states map onto them (DONE jobs are "acked", and gone).
DISQUE_STATES: Final[dict[str, frozenset[JobState]]] = {
    "wait-repl": frozenset(),
    "active": frozenset({JobState.SCHEDULED, JobState.ACTIVE, JobState.FAILED}),
    "queued": frozenset({JobState.QUEUED}),
    "acked": frozenset({JobState.DONE}),
}
_PENDING_STATES: Final = frozenset(JobState) - {JobState.DONE}
R = TypeVar("R")
T = TypeVar("T")


class CommandError(Exception):
    """A command refused: ``reply`` is the error reply to send."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        super().__init__(reply.decode(errors="replace").strip())


def refusal(exc: BaseException) -> bytes:
    """The Disque error reply for an error raised by the store or the client."""
    if isinstance(exc, QueuePaused):
        return b"-PAUSED Queue paused in input, try later\r\n"
    if isinstance(exc, QueueFull):
        return b"-MAXLEN Queue is already longer than the specified MAXLEN count\r\n"
    if isinstance(exc, NotReplicated):
        return b"-NOREPL Not enough reachable nodes for the requested replication level\r\n"
    if isinstance(exc, InvalidJobId):
        return BADID
    if isinstance(exc, InvalidQueueName):
        return protocol.error(f"ERR invalid queue name: {exc.reason}")
    return protocol.error(f"ERR {exc}")


def _int(value: bytes) -> int | None:
    """Redis' string2ll: an optional minus and digits, no blanks, no plus, 64 bits."""
    if not value or len(value) > 20:
        return None
    digits = value[1:] if value[:1] == b"-" else value
    if not digits.isdigit() or (digits[:1] == b"0" and len(digits) > 1):
        return None
    number = int(value)
    return number if -(2**63) <= number < 2**63 else None


def _timeout_ms(value: bytes) -> int:
    number = _int(value)
    if number is None:
        raise CommandError(b"-ERR timeout is not an integer or out of range\r\n")
    if number < 0:
        raise CommandError(b"-ERR timeout is negative\r\n")
    return number


def _ids(args: list[bytes]) -> list[str]:
    """Validate every id first: one bad id and the command does nothing."""
    ids = []
    for raw in args:
        if len(raw) != 40 or raw[0:2] != b"D-" or raw[10:11] != b"-" or raw[35:36] != b"-":
            raise CommandError(BADID)
        try:
            ids.append(raw.decode())
        except UnicodeDecodeError:
            raise CommandError(BADID) from None
    return ids


def _queue(raw: bytes) -> str | None:
    """The queue name, or ``None`` for names no store can hold (empty, control chars)."""
    try:
        return check_queue_name(raw.decode())
    except (UnicodeDecodeError, InvalidQueueName):
        return None


class Pending:
    """The replies of requests that run with others (plain ADDJOBs waiting for their
    batch): ``reply`` once known, then ``then`` is called."""

    __slots__ = ("abandoned", "reply", "then")

    def __init__(self) -> None:
        self.reply: bytes | None = None
        self.then: Callable[[], object] | None = None
        #: Its client left: nobody will read the reply (jobs leased for it go back).
        self.abandoned = False

    def settle(self, reply: bytes) -> None:
        """Set the reply and tell whoever waits."""
        self.reply = reply
        if self.then is not None:
            self.then()


class Gathered(Generic[R]):
    """Requests of one kind from every connection, run together once per loop iteration.

    A SQLite commit or a database round trip costs far more than the Python around it, so
    the ADDJOBs (GETJOBs, ACKJOBs) that arrive while one store call runs share the next
    call: one transaction, one commit, for many clients. ``run`` hands each request its
    outcome and never raises.
    """

    def __init__(self, run: Callable[[list[R]], Awaitable[None]], *, gather: bool) -> None:
        self._run = run
        #: False: each request runs at once (the store's calls cost no I/O to share).
        self._gather = gather
        self._queue: list[R] = []
        self._running = False
        self._task: asyncio.Task[None] | None = None

    def push(self, request: R) -> None:
        """Run ``request`` with the next batch."""
        self._queue.append(request)
        if self._running:
            return
        self._running = True
        if self._gather:
            asyncio.get_running_loop().call_soon(self._start)
        else:
            self._start()

    def _start(self) -> None:
        task = start(self._drain())
        if task is not None:
            self._task = task  # a reference: the loop keeps tasks weakly

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                await self._run(batch)
        finally:
            self._running = False
            self._task = None


#: Where a gathered request's outcome goes (its result, or the store's error); it answers
#: whether anybody took it (a blocked GETJOB whose client left takes no jobs).
Then = Callable[[T | Exception], bool]
#: A GETJOB's share of a batched claim: its queues, its COUNT, where its jobs go.
ClaimRequest = tuple[tuple[str, ...], int, Then[list[Job]]]
#: An ACKJOB's share of a batched ack: its ids, where its count goes.
AckRequest = tuple[list[str], Then[int]]
#: Plain ADDJOBs of one connection: their jobs, and where their replies go.
AddRequest = tuple[list[Job], Pending]


def _to_future(future: asyncio.Future[T]) -> Then[T]:
    def then(outcome: T | Exception) -> bool:
        if future.done():  # cancelled: the client is gone
            return False
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
        return True

    return then


def _to_pending(pending: Pending, reply: Callable[[T], bytes]) -> Then[T]:
    def then(outcome: T | Exception) -> bool:
        if pending.abandoned:
            return False
        pending.settle(refusal(outcome) if isinstance(outcome, Exception) else reply(outcome))
        return True

    return then


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
        #: Queue names already checked, by their bytes (ADDJOB's fast path).
        self._queues: dict[bytes, str] = {}
        self._default_id = job_id_factory(DEFAULT_TTL, _DEFAULT_RETRY, node.prefix)
        self._max_batch = max_batch
        # Even the memory store, which commits nothing, adds faster so: one store call per
        # loop iteration, not per request.
        self._adds = Gathered[AddRequest](self._run_adds, gather=True)
        gather = self.store.blocking
        self._claims = Gathered[ClaimRequest](self._run_claims, gather=gather)
        self._acks = Gathered[AckRequest](self._run_acks, gather=gather)
        #: Per queue, when this node first and last saw it used (QSTAT's age and idle).
        self.queue_times: dict[str, list[float]] = {}
        self._prune_at = 1024
        self.on_shutdown: Callable[[], None] = lambda: None

    # -- ADDJOB and its group commit -------------------------------------------------------

    def new_job(self, queue: str, body: bytes, ttl: int, retry: int, delay: int) -> Job:
        """A job as Disque makes it: this node's id prefix, whole-second TTL."""
        factory = self._factories.get((ttl, retry))
        if factory is None:
            factory = self._factories[(ttl, retry)] = job_id_factory(ttl, retry, self.node.prefix)
        now = self.store.clock.now()
        return Job(
            factory(),
            queue,
            body,
            Encoding.BYTES,
            None,
            100,
            JobState.QUEUED,
            now,
            now + delay,
            float(retry),
            float(math.floor(now) + ttl),
            25,
            self.result_ttl,
        )

    def _default_job(self, queue: str, body: bytes) -> Job:
        """:meth:`new_job` with Disque's defaults: TTL one day, RETRY its tenth, no DELAY."""
        now = self.store.clock.now()
        return Job(
            self._default_id(),
            queue,
            body,
            Encoding.BYTES,
            None,
            100,
            JobState.QUEUED,
            now,
            now,
            _DEFAULT_RETRY,
            float(math.floor(now) + DEFAULT_TTL),
            25,
            self.result_ttl,
        )

    def add_jobs(self, jobs: list[Job], pending: Pending) -> None:
        """Add plain ADDJOBs (no MAXLEN, no REPLICATE) with the next batch; ``pending``
        gets their replies, concatenated, once committed.

        Concurrent ADDJOBs of every connection share one store transaction (one commit,
        one fsync, up to ``max_batch`` jobs), which is what makes SQLite fast here.
        """
        self._adds.push((jobs, pending))

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

    async def _run_adds(self, requests: list[AddRequest]) -> None:
        at = 0
        while at < len(requests):
            groups = [requests[at]]
            size = len(requests[at][0])
            at += 1
            while at < len(requests) and size + len(requests[at][0]) <= self._max_batch:
                groups.append(requests[at])
                size += len(requests[at][0])
                at += 1
            jobs = groups[0][0] if len(groups) == 1 else [j for g, _ in groups for j in g]
            try:
                await self.store.add(jobs, None)
                self.last_write_ok = True
            except Exception as exc:
                self.last_write_ok = not isinstance(exc, StoreUnavailable)
                # One refused job (a paused queue) must not refuse its batch neighbours.
                for group_jobs, pending in groups:
                    pending.settle(
                        b"".join([await self.add_one(job, None, 0) for job in group_jobs])
                    )
                continue
            arrived = Counter([job.queue for job in jobs])
            self.jobs_in.update(arrived)
            self.touch(arrived)
            for group_jobs, pending in groups:
                pending.settle(_added(group_jobs))

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

    # -- GETJOB and ACKJOB group commit ---------------------------------------------------

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
        self, job_ids: list[str], requeue: Callable[[list[str]], Awaitable[int]]
    ) -> int:
        """NACK or ENQUEUE (``requeue``) the jobs; how many were queued again, each counted
        in its queue's ``jobs-in``, as Disque counts every queueing (ADDJOB, NACK, ENQUEUE).

        The store says how many, not which: with several ids, the jobs that could be
        queued again (neither queued nor done) are read first, and the first ones of them
        are counted when fewer were.
        """
        show = self.store.show
        if len(job_ids) == 1:
            requeued = await requeue(job_ids)
            job = await show(job_ids[0]) if requeued else None
            queues = [] if job is None else [job.queue]
        else:
            candidates = [
                job.queue
                for job in [await show(job_id) for job_id in dict.fromkeys(job_ids)]
                if job is not None and job.state not in (JobState.QUEUED, JobState.DONE)
            ]
            requeued = await requeue(job_ids)
            queues = candidates[:requeued]
        if queues:
            arrived = Counter(queues)
            self.jobs_in.update(arrived)
            self.touch(arrived)
        return requeued

    def claim_then(self, queues: Sequence[str], count: int, then: Then[list[Job]]) -> None:
        """Lease up to ``count`` jobs with the next batched claim (GETJOB's order)."""
        self._claims.push((tuple(queues), count, then))

    def claim(self, queues: Sequence[str], count: int) -> asyncio.Future[list[Job]]:
        """:meth:`claim_then`, as a future."""
        future: asyncio.Future[list[Job]] = asyncio.get_running_loop().create_future()
        self.claim_then(queues, count, _to_future(future))
        return future

    def ack_then(self, job_ids: list[str], then: Then[int]) -> None:
        """Ack jobs with the next batched ack; ``then`` gets how many became done."""
        self._acks.push((job_ids, then))

    async def _run_claims(self, requests: list[ClaimRequest]) -> None:
        # A run of consecutive GETJOBs on the same queues shares one claim per queue; each
        # gets the jobs it would have got had they run one after the other.
        for queues, run in _runs(requests):
            try:
                shares = await self.claim_in_order(queues, [count for _, count, _ in run])
            except Exception as exc:
                for *_, then in run:
                    then(exc)
                continue
            unwanted = [
                job
                for (*_, then), jobs in zip(run, shares, strict=True)
                if not then(jobs)
                for job in jobs
            ]
            if unwanted:  # their clients left: back to the queue at once
                await self._give_back(unwanted)

    async def _give_back(self, jobs: list[Job]) -> None:
        """NACK jobs leased for nobody; on failure they come back when their lease runs out."""
        try:
            await self.store.nack([job.id for job in jobs])
        except Exception:
            log.warning("could not give back %d leased job(s)", len(jobs), exc_info=True)

    async def claim_in_order(self, queues: Sequence[str], counts: Sequence[int]) -> list[list[Job]]:
        """Lease jobs for GETJOBs on ``queues`` asking ``counts`` jobs each, as if they ran
        one after the other, each in Disque's order: the queues scanned left to right,
        taking at most one job per queue per pass (a queue listed twice serves twice per
        pass), until its COUNT or no queue has more. Returns each request's jobs.

        The store's claim drains its queues in turn, so with several queues the passes are
        planned from the queue lengths, then each queue is claimed once; a queue that gives
        fewer than planned (paused, or emptied by another client) counts as empty.
        """
        if len(queues) == 1:
            jobs = await self.store.claim(queues, sum(counts))
            shares, at = [], 0
            for count in counts:
                shares.append(jobs[at : at + count])
                at += count
            return shares
        shares = [[] for _ in counts]
        wanted = list(counts)
        distinct = list(dict.fromkeys(queues))
        exhausted: set[str] = set()
        claimed: dict[str, list[Job]] = {}
        try:
            while any(wanted) and len(exhausted) < len(distinct):
                ready = {q: 0 if q in exhausted else await self.store.qlen(q) for q in distinct}
                asked: Counter[str] = Counter()
                for want in wanted:
                    plan = _passes(queues, ready, want)
                    for queue in plan:
                        ready[queue] -= 1
                    asked.update(plan)
                if not asked:
                    break
                claimed = {}
                for queue, share in asked.items():
                    claimed[queue] = await self.store.claim([queue], share)
                    if len(claimed[queue]) < share:
                        exhausted.add(queue)
                # Deal what was claimed as the requests would have taken it, in turn (every
                # job claimed is dealt: no more was claimed than the requests want).
                left = {queue: len(claimed.get(queue, ())) for queue in distinct}
                dealt: Counter[str] = Counter()
                for index, want in enumerate(wanted):
                    for queue in _passes(queues, left, want):
                        left[queue] -= 1
                        shares[index].append(claimed[queue][dealt[queue]])
                        dealt[queue] += 1
                        wanted[index] -= 1
                claimed = {}
        except BaseException:
            # Leased, and nobody will get them: give them back before failing.
            await self._give_back(
                [job for share in shares for job in share]
                + [job for jobs in claimed.values() for job in jobs]
            )
            raise
        return shares

    async def _run_acks(self, requests: list[AckRequest]) -> None:
        ids = [job_id for job_ids, _ in requests for job_id in job_ids]
        try:
            done = Counter(await self.store.ack(ids))
        except Exception as exc:
            for _, then in requests:
                then(exc)
            return
        for job_ids, then in requests:
            acked = 0
            for job_id in job_ids:  # an id acked twice in one batch counts for the first
                if done[job_id] > 0:
                    done[job_id] -= 1
                    acked += 1
            then(acked)

    def parse_addjob(self, args: list[bytes]) -> tuple[Job, int | None, int]:
        """ADDJOB's job, its MAXLEN and the extra copies it asks for, parsed as Disque does;
        raises :class:`CommandError` with Disque's reply for a refused command."""
        if len(args) == 4 and args[3] == b"0":  # no option: the defaults, decided once
            queue = self._queues.get(args[1])
            if queue is not None:
                return self._default_job(queue, args[2]), None, 0
        replicate, ttl, retry, delay, max_len, asynchronous = 1, DEFAULT_TTL, -1, 0, None, False
        j, argc = 4, len(args)
        while j < argc:
            option = args[j].lower()
            last = j == argc - 1
            if option == b"async":
                asynchronous = True
                j += 1
                continue
            if last or option not in (b"replicate", b"ttl", b"retry", b"delay", b"maxlen"):
                raise CommandError(SYNTAX_ERROR)
            value = _int(args[j + 1])
            if option == b"replicate":
                if value is None or not 1 <= value <= 65535:
                    raise CommandError(b"-ERR REPLICATE must be between 1 and 65535\r\n")
                replicate = value
            elif option == b"ttl":
                if value is None or value <= 0:
                    raise CommandError(b"-ERR TTL must be a number > 0\r\n")
                ttl = value
            elif option == b"retry":
                if value is None or value < 0:
                    raise CommandError(b"-ERR RETRY time must be a non negative number\r\n")
                retry = value
            elif option == b"delay":
                if value is None or value < 0:
                    raise CommandError(b"-ERR DELAY time must be a non negative number\r\n")
                delay = value
            else:
                if value is None or value <= 0:
                    raise CommandError(b"-ERR MAXLEN must be a positive number\r\n")
                max_len = value
            j += 2
        if args[3] != b"0":  # the usual timeout, checked for nothing
            _timeout_ms(args[3])
        if retry == 0 and replicate > 1:
            raise CommandError(
                b"-ERR With RETRY set to 0 please explicitly set  REPLICATE to 1 "
                b"(at-most-once delivery)\r\n"
            )
        if delay >= ttl:
            raise CommandError(
                b"-ERR The specified DELAY is greater than TTL. Job refused since would "
                b"never be delivered\r\n"
            )
        if retry == -1:
            retry = max(1, min(ttl // 10, MAX_RETRY_DEFAULT))
        ttl = min(ttl, 10 * 365 * 86400)
        queue = _queue(args[1])
        if queue is None:
            raise CommandError(refusal(InvalidQueueName(args[1], "not a name this store keeps")))
        if len(self._queues) >= 4096:
            self._queues.clear()
        self._queues[args[1]] = queue
        # REPLICATE counts copies, this one included; the store's replicate counts the
        # copies beyond its own. ASYNC asks for none to be awaited. Counting pool nodes
        # as replicas, n live nodes meet REPLICATE n with the store's one copy.
        if asynchronous or (self.pool_nodes_as_replicas and replicate <= len(self.node.peers)):
            copies = 0
        else:
            copies = replicate - 1
        return self.new_job(queue, args[2], ttl, retry, delay), max_len, copies

    # -- helpers -------------------------------------------------------------------------

    def show_reply(self, job: Job, now: float) -> bytes:
        """SHOW's 30-element array for one job."""
        state = (
            "acked"
            if job.state is JobState.DONE
            else ("queued" if job.state is JobState.QUEUED else "active")
        )
        # Whole seconds, as Disque: etime and its clock are both whole seconds.
        ttl = 0 if job.expires_at is None else max(0, int(job.expires_at - math.floor(now)))
        if job.expires_at is None:
            ttl = 10 * 365 * 86400
        # As Disque: a delayed job is (re)queued when its delay ends, and wakes then; any
        # other job wakes 500 ms before its requeue time (JOB_WILLQUEUE_ADVANCE).
        requeue_ms: int | None = None
        if job.state is JobState.SCHEDULED:
            requeue_ms = max(0, int((job.run_at - now) * 1000))
        elif job.state is JobState.ACTIVE and job.lease_until is not None:
            requeue_ms = max(0, int((job.lease_until - now) * 1000))
        elif job.state is JobState.QUEUED and job.retry_after > 0:
            requeue_ms = int(job.retry_after * 1000)
        requeue = NULL_BULK if requeue_ms is None else protocol.integer(requeue_ms)
        awake = requeue
        if requeue_ms is not None and job.state is not JobState.SCHEDULED:
            awake = protocol.integer(max(0, requeue_ms - _WAKE_ADVANCE_MS))
        return protocol.array(
            [
                b"$2\r\nid\r\n",
                protocol.bulk(job.id),
                b"$5\r\nqueue\r\n",
                protocol.bulk(job.queue),
                b"$5\r\nstate\r\n",
                protocol.bulk(state),
                b"$4\r\nrepl\r\n",
                protocol.integer(1),
                b"$3\r\nttl\r\n",
                protocol.integer(ttl),
                b"$5\r\nctime\r\n",
                protocol.integer(int(job.created_at * 1_000_000_000)),
                b"$5\r\ndelay\r\n",
                protocol.integer(
                    max(0, round(job.run_at - job.created_at)) if not job.attempts else 0
                ),
                b"$5\r\nretry\r\n",
                protocol.integer(int(job.retry_after)),
                b"$5\r\nnacks\r\n",
                protocol.integer(job.nacks),
                b"$21\r\nadditional-deliveries\r\n",
                protocol.integer(job.additional_deliveries),
                b"$15\r\nnodes-delivered\r\n",
                protocol.array([protocol.bulk(self.node.id)]),
                b"$15\r\nnodes-confirmed\r\n",
                EMPTY_ARRAY,
                b"$19\r\nnext-requeue-within\r\n",
                requeue,
                b"$17\r\nnext-awake-within\r\n",
                awake,
                b"$4\r\nbody\r\n",
                protocol.bulk(job.raw_body),
            ]
        )


def _runs(
    requests: list[ClaimRequest],
) -> list[tuple[tuple[str, ...], list[ClaimRequest]]]:
    """Consecutive requests on the same queues, together (in request order, at most
    :data:`MAX_PAGE` jobs asked per run)."""
    runs: list[tuple[tuple[str, ...], list[ClaimRequest]]] = []
    asked = 0
    for request in requests:
        queues, count, _ = request
        if runs and runs[-1][0] == queues and asked + count <= MAX_PAGE:
            runs[-1][1].append(request)
            asked += count
        else:
            runs.append((queues, [request]))
            asked = count
    return runs


def _passes(queues: Sequence[str], available: dict[str, int], limit: int) -> list[str]:
    """The queue each job comes from, in GETJOB's order: passes over ``queues`` left to
    right, one job per listed queue per pass while it has ``available`` jobs left."""
    left = dict(available)
    order: list[str] = []
    while len(order) < limit:
        before = len(order)
        for queue in queues:
            if len(order) < limit and left[queue] > 0:
                left[queue] -= 1
                order.append(queue)
        if len(order) == before:
            break
    return order


def _added(jobs: list[Job]) -> bytes:
    """ADDJOB's replies for added jobs, concatenated (ids are ASCII)."""
    return "".join(["+" + job.id + "\r\n" for job in jobs]).encode()


# -- the commands ------------------------------------------------------------------------


def start_addjob(session: Session, args: list[bytes]) -> bytes | Job | Coroutine[Any, Any, bytes]:
    """ADDJOB: a plain one's job (the session adds it with its neighbours, in the server's
    next batch), else the add on its own (MAXLEN, REPLICATE), or the refusal."""
    server = session.server
    try:
        job, max_len, copies = server.parse_addjob(args)
    except CommandError as exc:
        return exc.reply
    if max_len is None and copies == 0:
        return job
    return server.add_one(job, max_len, copies)


@dataclass(slots=True)
class GetJob:
    """A parsed GETJOB."""

    queues: list[str]
    count: int = 1
    nohang: bool = False
    timeout_ms: int = 0
    counters: bool = False


def parse_getjob(args: list[bytes]) -> GetJob:
    """GETJOB [NOHANG] [TIMEOUT ms] [COUNT n] [WITHCOUNTERS] FROM q1 q2 ..., as Disque
    parses it (invalid queue names are left out); raises :class:`CommandError`."""
    request = GetJob([])
    j = 1
    while True:
        if j >= len(args):
            raise CommandError(SYNTAX_ERROR)
        option = args[j].lower()
        if option == b"from":
            break
        if option == b"nohang":
            request.nohang = True
        elif option == b"withcounters":
            request.counters = True
        elif option in (b"timeout", b"count") and j + 1 < len(args):
            if option == b"timeout":
                request.timeout_ms = _timeout_ms(args[j + 1])
            else:
                value = _int(args[j + 1])
                if value is None or value <= 0:
                    raise CommandError(b"-ERR COUNT must be a number greater than zero\r\n")
                request.count = min(value, MAX_PAGE)
            j += 1
        else:
            raise CommandError(SYNTAX_ERROR)
        j += 1
    raw_queues = args[j + 1 :]
    if not raw_queues:
        raise CommandError(SYNTAX_ERROR)
    request.queues = [name for name in map(_queue, raw_queues) if name is not None]
    return request


def getjob_reply(server: Server, jobs: list[Job], counters: bool) -> bytes:
    """GETJOB's reply for the jobs it leased (counted as delivered)."""
    if not jobs:
        return NULL_ARRAY
    server.touch({job.queue for job in jobs})
    items = []
    for job in jobs:
        server.jobs_out[job.queue] += 1
        fields = [protocol.bulk(job.queue), protocol.bulk(job.id), protocol.bulk(job.raw_body)]
        if counters:
            fields += [
                b"$5\r\nnacks\r\n",
                protocol.integer(job.nacks),
                b"$21\r\nadditional-deliveries\r\n",
                protocol.integer(job.additional_deliveries),
            ]
        items.append(protocol.array(fields))
    return protocol.array(items)


def getjob_nohang(server: Server, args: list[bytes]) -> bytes | Pending:
    """GETJOB NOHANG, gathered with the other connections' claims: its reply, or the
    :class:`Pending` that gets it (see ``Session``: no task per request)."""
    try:
        request = parse_getjob(args)
    except CommandError as exc:
        return exc.reply
    if not request.queues:
        return NULL_ARRAY
    pending = Pending()
    counters = request.counters

    def reply(jobs: list[Job]) -> bytes:
        return getjob_reply(server, jobs, counters)

    server.claim_then(request.queues, request.count, _to_pending(pending, reply))
    return pending


def getjob_gathered(args: list[bytes]) -> Gather | None:
    """GETJOB NOHANG is gathered with the other connections' claims (it never blocks)."""
    for arg in args[1:]:
        lowered = arg.lower()
        if lowered == b"nohang":
            return Gather.CLAIM
        if lowered == b"from":
            return None
    return None


def start_getjob(
    session: Session, args: list[bytes]
) -> bytes | Pending | Coroutine[Any, Any, bytes]:
    """GETJOB: gathered when NOHANG, else a command that may block."""
    if getjob_gathered(args) is Gather.CLAIM:
        return getjob_nohang(session.server, args)
    return cmd_getjob(session, args)


def start_ackjob(session: Session, args: list[bytes]) -> bytes | Pending:
    """ACKJOB id ...: the jobs become done (SHOW then says ``$-1``), gathered with the other
    connections' ACKJOBs: its reply, or the :class:`Pending` that gets it."""
    server = session.server
    try:
        ids = _ids(args[1:])
    except CommandError as exc:
        return exc.reply
    if not ids:
        return ZERO
    pending = Pending()
    server.ack_then(ids, _to_pending(pending, protocol.integer))
    return pending


async def cmd_getjob(session: Session, args: list[bytes]) -> bytes:
    """GETJOB [NOHANG] [TIMEOUT ms] [COUNT n] [WITHCOUNTERS] FROM q1 q2 ..."""
    server = session.server
    request = parse_getjob(args)
    queues = request.queues
    if not request.nohang:
        server.touch(queues)  # as in Disque, a GETJOB that may block creates its queues
    jobs = await server.claim(queues, request.count) if queues else []
    if not jobs and not request.nohang and queues:
        timeout = request.timeout_ms
        client = server.client.timeout(None if timeout == 0 else timeout / 1000)
        server.blocked += 1
        for queue in queues:
            server.blocked_on[queue] += 1
        try:
            # A task of its own: the command may have been started eagerly (no current
            # task), and the wait may need one. Disque hands a blocked client the one job
            # that woke it, whatever its COUNT.
            jobs = await asyncio.ensure_future(client.get_many(*queues, count=1))
        finally:
            server.blocked -= 1
            for queue in queues:
                server.blocked_on[queue] -= 1
                if not server.blocked_on[queue]:
                    del server.blocked_on[queue]
    return getjob_reply(server, jobs, request.counters)


async def cmd_fastack(session: Session, args: list[bytes]) -> bytes:
    """FASTACK id ...: delete the jobs."""
    ids = _ids(args[1:])
    return protocol.integer(await session.server.store.delete(ids)) if ids else ZERO


cmd_deljob = cmd_fastack


async def cmd_nack(session: Session, args: list[bytes]) -> bytes:
    """NACK id ...: put active jobs back, ``nacks`` + 1."""
    ids = _ids(args[1:])
    if not ids:
        return ZERO
    server = session.server

    async def nack(job_ids: list[str]) -> int:
        return len(await server.store.nack(job_ids))

    return protocol.integer(await server.requeue(ids, nack))


async def cmd_enqueue(session: Session, args: list[bytes]) -> bytes:
    """ENQUEUE id ...: active (or delayed) jobs become ready now."""
    ids = _ids(args[1:])
    if not ids:
        return ZERO
    server = session.server
    return protocol.integer(await server.requeue(ids, server.store.enqueue))


async def cmd_dequeue(session: Session, args: list[bytes]) -> bytes:
    """DEQUEUE id ...: ready jobs leave their queue until their retry time."""
    ids = _ids(args[1:])
    return protocol.integer(await session.server.store.dequeue(ids)) if ids else ZERO


async def cmd_working(session: Session, args: list[bytes]) -> bytes:
    """WORKING id: postpone the next delivery by the job's retry time."""
    (job_id,) = _ids(args[1:])
    store = session.server.store
    job = await store.show(job_id)
    if job is None or job.state is JobState.DONE:
        raise CommandError(b"-NOJOB Job not known in the context of this node.\r\n")
    now = store.clock.now()
    if job.expires_at is not None and now - job.created_at > (job.expires_at - job.created_at) / 2:
        raise CommandError(
            b"-TOOLATE Half of job TTL already elapsed, you are no longer allowed to postpone "
            b"the next delivery.\r\n"
        )
    if job.retry_after <= 0:
        return ZERO
    if job.state is JobState.QUEUED:
        await store.dequeue([job_id])
        return protocol.integer(int(job.retry_after))
    try:
        await store.working(job_id)
    except JobNotFound:
        raise CommandError(b"-NOJOB Job not known in the context of this node.\r\n") from None
    except DisquetteError:
        pass  # scheduled or failed: nothing to postpone, the retry time is still the answer
    return protocol.integer(int(job.retry_after))


async def cmd_show(session: Session, args: list[bytes]) -> bytes:
    """SHOW id: the job's fields, ``$-1`` for unknown and acked (done) jobs."""
    (job_id,) = _ids(args[1:])
    store = session.server.store
    job = await store.show(job_id)
    if job is None or job.state is JobState.DONE:
        return NULL_BULK
    return session.server.show_reply(job, store.clock.now())


async def cmd_qlen(session: Session, args: list[bytes]) -> bytes:
    """QLEN queue."""
    queue = _queue(args[1])
    return protocol.integer(await session.server.store.qlen(queue)) if queue else ZERO


async def cmd_qpeek(session: Session, args: list[bytes]) -> bytes:
    """QPEEK queue count: oldest first, or newest first for a negative count."""
    count = _int(args[2])
    if count is None:
        raise CommandError(b"-ERR value is not an integer or out of range\r\n")
    queue = _queue(args[1])
    if queue is None or count == 0:
        return EMPTY_ARRAY
    store = session.server.store
    if count > 0:
        jobs = await store.peek(queue, min(count, MAX_PAGE))
    else:
        length = await store.qlen(queue)
        jobs = (await store.peek(queue, min(length, 100 * MAX_PAGE)))[count:][::-1]
    return protocol.array(
        protocol.array([protocol.bulk(j.queue), protocol.bulk(j.id), protocol.bulk(j.raw_body)])
        for j in jobs
    )


async def cmd_qstat(session: Session, args: list[bytes]) -> bytes:
    """QSTAT queue: ``*-1`` unless the store knows the queue."""
    server = session.server
    queue = _queue(args[1])
    known = {info.name: info for info in await server.store.queues()} if queue else {}
    info = known.get(queue or "")
    if queue is None or (
        info is None and not server.blocked_on[queue] and not server.recently_used(queue)
    ):
        return NULL_ARRAY
    length = info.queued if info is not None else 0
    pause = info.pause if info is not None else "none"
    now = time.time()
    # A queue this node never used (another node of the pool did): known since our start.
    created, used = server.queue_times.get(queue, (server.started, server.started))
    return protocol.array(
        [
            b"$4\r\nname\r\n",
            protocol.bulk(queue),
            b"$3\r\nlen\r\n",
            protocol.integer(length),
            b"$3\r\nage\r\n",
            protocol.integer(int(now - created)),
            b"$4\r\nidle\r\n",
            protocol.integer(int(now - used)),
            b"$7\r\nblocked\r\n",
            protocol.integer(server.blocked_on[queue]),
            b"$11\r\nimport-from\r\n",
            EMPTY_ARRAY,
            b"$11\r\nimport-rate\r\n",
            ZERO,
            b"$7\r\njobs-in\r\n",
            protocol.integer(server.jobs_in[queue]),
            b"$8\r\njobs-out\r\n",
            protocol.integer(server.jobs_out[queue]),
            b"$5\r\npause\r\n",
            protocol.bulk(pause),
        ]
    )


def _scan_options(
    args: list[bytes], extra: Collection[bytes]
) -> tuple[int, dict[bytes, list[bytes]]]:
    """JSCAN/QSCAN: an optional cursor, then options (valued ones in ``extra``)."""
    cursor: int | None = None
    options: dict[bytes, list[bytes]] = {}
    j = 1
    while j < len(args):
        option = args[j].lower()
        if option == b"busyloop":
            options[option] = []
        elif option == b"count" or option in extra:
            if j + 1 >= len(args):
                raise CommandError(SYNTAX_ERROR)
            options.setdefault(option, []).append(args[j + 1])
            j += 1
        elif cursor is None and args[j].isdigit():
            cursor = int(args[j])
        elif cursor is None:
            raise CommandError(b"-ERR invalid cursor or option name\r\n")
        else:
            raise CommandError(SYNTAX_ERROR)
        j += 1
    for value in options.get(b"count", []):
        if _int(value) is None:
            raise CommandError(b"-ERR value is not an integer or out of range\r\n")
    return cursor or 0, options


async def cmd_jscan(session: Session, args: list[bytes]) -> bytes:
    """JSCAN [cursor] [COUNT n] [BUSYLOOP] [QUEUE q] [STATE s]... [REPLY id|all]."""
    cursor, options = _scan_options(args, (b"queue", b"state", b"reply"))
    states: set[JobState] | None = None
    for raw in options.get(b"state", []):
        wanted = DISQUE_STATES.get(raw.decode(errors="replace").lower())
        if wanted is None:
            raise CommandError(b"-ERR Invalid job state name\r\n")
        states = (states or set()) | wanted
    reply = options.get(b"reply", [b"id"])[-1].lower()
    if reply not in (b"id", b"all"):
        raise CommandError(b"-ERR Invalid REPLY type, try ID or ALL\r\n")
    queue: str | None = None
    if b"queue" in options:
        queue = _queue(options[b"queue"][-1])
        if queue is None:
            return protocol.array([b"$1\r\n0\r\n", EMPTY_ARRAY])
    count = max(1, min(_int(options.get(b"count", [b"100"])[-1]) or SCAN_COUNT, MAX_PAGE))
    store = session.server.store
    found: list[Job] = []
    while True:
        cursor, page = await store.scan(
            cursor, count, queue=queue, states=_PENDING_STATES if states is None else states
        )
        found.extend(page)
        if cursor == 0 or b"busyloop" not in options:
            break
    now = store.clock.now()
    if reply == b"id":
        items = [b"+" + job.id.encode() + b"\r\n" for job in found]
    else:
        items = [session.server.show_reply(job, now) for job in found]
    return protocol.array([protocol.bulk(str(cursor)), protocol.array(items)])


async def cmd_qscan(session: Session, args: list[bytes]) -> bytes:
    """QSCAN [cursor] [COUNT n] [BUSYLOOP] [MINLEN n] [MAXLEN n] [IMPORTRATE n]: one page."""
    _, options = _scan_options(args, (b"minlen", b"maxlen", b"importrate"))
    bounds = {}
    for name in (b"minlen", b"maxlen", b"importrate"):
        if name in options:
            value = _int(options[name][-1])
            if value is None:
                raise CommandError(b"-ERR value is not an integer or out of range\r\n")
            bounds[name] = value
    minimum, maximum = bounds.get(b"minlen", 0), bounds.get(b"maxlen", 0)
    names = [
        protocol.bulk(info.name)
        for info in await session.server.store.queues()
        if info.queued >= minimum and (not maximum or info.queued <= maximum)
    ]
    return protocol.array([b"$1\r\n0\r\n", protocol.array(names)])


async def cmd_pause(session: Session, args: list[bytes]) -> bytes:
    """PAUSE queue in|out|all|none|state|bcast ...: replies the resulting mode."""
    bits, change = 0, False
    for raw in args[2:]:
        option = raw.lower()
        if option == b"in":
            bits, change = bits | 1, True
        elif option == b"out":
            bits, change = bits | 2, True
        elif option == b"all":
            bits, change = 3, True
        elif option == b"none":
            bits, change = 0, True
        elif option not in (b"state", b"bcast"):
            raise CommandError(SYNTAX_ERROR)
    queue = _queue(args[1])
    if queue is None:
        raise CommandError(refusal(InvalidQueueName(args[1], "not a name this store keeps")))
    store = session.server.store
    if change:
        await store.set_pause(queue, PAUSE_MODES[bits])
        return protocol.status(PAUSE_MODES[bits])
    return protocol.status(await store.pause_mode(queue))


async def cmd_hello(session: Session, args: list[bytes]) -> bytes:
    """HELLO: the pool's nodes."""
    return session.server.node.hello()


async def cmd_ping(session: Session, args: list[bytes]) -> bytes:
    """PING [message]."""
    if len(args) > 2:
        return b"-ERR wrong number of arguments for 'ping' command\r\n"
    return protocol.bulk(args[1]) if len(args) == 2 else protocol.PONG


async def cmd_auth(session: Session, args: list[bytes]) -> bytes:
    """AUTH password."""
    password = session.server.requirepass
    if not password:
        return b"-ERR Client sent AUTH, but no password is set\r\n"
    if args[1] != password.encode():
        session.authenticated = False
        return b"-ERR invalid password\r\n"
    session.authenticated = True
    return OK


async def cmd_time(session: Session, args: list[bytes]) -> bytes:
    """TIME: seconds and microseconds."""
    now = time.time_ns() // 1000
    return protocol.array(
        [protocol.bulk(str(now // 1_000_000)), protocol.bulk(str(now % 1_000_000))]
    )


async def cmd_command(session: Session, args: list[bytes]) -> bytes:
    """COMMAND [COUNT]."""
    if len(args) > 1:
        if args[1].lower() == b"count":
            return protocol.integer(len(TABLE))
        return b"-ERR Unknown subcommand or wrong number of arguments.\r\n"
    return protocol.array(
        protocol.array(
            [protocol.bulk(c.name), protocol.integer(c.arity), EMPTY_ARRAY, ZERO, ZERO, ZERO]
        )
        for c in TABLE.values()
    )


async def cmd_config(session: Session, args: list[bytes]) -> bytes:
    """CONFIG GET key | CONFIG SET requirepass value."""
    server = session.server
    sub = args[1].lower()
    if sub == b"get" and len(args) == 3:
        values = {
            b"maxmemory": b"1073741824",
            b"requirepass": (server.requirepass or "").encode(),
            b"port": str(server.node.port).encode(),
            b"bind": server.node.host.encode(),
            b"unixsocket": (server.unixsocket[0] or "").encode(),
            b"unixsocketperm": b"%o" % (server.unixsocket[1] or 0),
        }
        pattern = args[2].lower()
        found = [(k, v) for k, v in values.items() if pattern in (b"*", k)]
        return protocol.array(x for k, v in found for x in (protocol.bulk(k), protocol.bulk(v)))
    if sub == b"set" and len(args) == 4:
        if args[2].lower() != b"requirepass":
            return protocol.error(
                f"ERR Unsupported CONFIG parameter: {args[2].decode(errors='replace')}"
            )
        server.requirepass = args[3].decode(errors="replace") or None
        return OK
    if sub == b"resetstat" and len(args) == 2:
        return OK
    return b"-ERR CONFIG subcommand must be one of GET, SET, RESETSTAT, REWRITE\r\n"


async def cmd_debug(session: Session, args: list[bytes]) -> bytes:
    """DEBUG FLUSHALL: delete every job of the store (the whole pool's), and drop the
    pool's dead nodes (``Node.prune``)."""
    if args[1].lower() == b"flushall":
        await session.server.store.flush()
        session.server.jobs_in.clear()
        session.server.jobs_out.clear()
        session.server.queue_times.clear()
        try:
            await session.server.node.prune()
        except (DisquetteError, OSError) as exc:  # the jobs are gone: FLUSHALL did its part
            log.warning("could not check the pool for dead nodes: %s", exc)
        return OK
    if args[1].lower() == b"sleep" and len(args) == 3:
        await asyncio.sleep(float(args[2]))
        return OK
    return b"-ERR Supported DEBUG subcommands: FLUSHALL, SLEEP\r\n"


async def cmd_cluster(session: Session, args: list[bytes]) -> bytes:
    """CLUSTER NODES | INFO | MEET (the pool forms through the store: nothing to meet)."""
    node = session.server.node
    sub = args[1].lower()
    if sub == b"nodes":
        return node.cluster_nodes()
    if sub == b"info":
        return node.cluster_info()
    if sub in (b"meet", b"forget", b"saveconfig"):
        return OK
    return b"-ERR Wrong CLUSTER subcommand or number of arguments\r\n"


async def cmd_client(session: Session, args: list[bytes]) -> bytes:
    """CLIENT: only what Disque had (redis-py's CLIENT SETINFO gets Disque's error)."""
    sub = args[1].lower()
    if sub == b"setname" and len(args) == 3:
        session.name = args[2]
        return OK
    if sub == b"getname":
        return protocol.bulk(session.name)
    return (
        b"-ERR Syntax error, try CLIENT (LIST | KILL ip:port | GETNAME | SETNAME "
        b"connection-name)\r\n"
    )


async def cmd_info(session: Session, args: list[bytes]) -> bytes:
    """INFO [section]: ``key:value`` lines in ``# Section`` groups."""
    server = session.server
    if len(args) > 2:
        return SYNTAX_ERROR
    wanted = args[1].decode(errors="replace").lower() if len(args) > 1 else "default"
    sections: list[tuple[str, Callable[[], Awaitable[list[str]]]]] = [
        ("server", server_info(server)),
        ("clients", clients_info(server)),
        ("memory", memory_info()),
        ("jobs", jobs_info(server)),
        ("queues", queues_info(server)),
        ("persistence", persistence_info(server)),
        ("stats", stats_info(server)),
        ("cpu", cpu_info()),
    ]
    parts = []
    for name, lines in sections:
        if wanted in ("default", "all", "everything", name):
            parts.append(
                f"# {name.capitalize() if name != 'cpu' else 'CPU'}\r\n"
                + "".join(line + "\r\n" for line in await lines())
            )
    return protocol.bulk("\r\n".join(parts))


def server_info(server: Server) -> Callable[[], Awaitable[list[str]]]:
    """The Server section."""

    async def lines() -> list[str]:
        uptime = int(time.time() - server.started)
        return [
            "disque_version:1.0-rc1",
            "disque_git_sha1:00000000",
            "disque_git_dirty:0",
            "disque_build_id:0",
            "disquette_store:" + server.store.url.partition(":")[0],
            f"os:{platform.system()} {platform.release()} {platform.machine()}",
            "arch_bits:64",
            f"multiplexing_api:{server.multiplexing_api}",
            "gcc_version:0.0.0",
            f"process_id:{os.getpid()}",
            f"run_id:{server.run_id}",
            f"tcp_port:{server.node.port}",
            f"uptime_in_seconds:{uptime}",
            f"uptime_in_days:{uptime // 86400}",
            "hz:10",
            f"executable:{sys.executable}",
            "config_file:",
        ]

    return lines


def clients_info(server: Server) -> Callable[[], Awaitable[list[str]]]:
    """The Clients section."""

    async def lines() -> list[str]:
        return [
            f"connected_clients:{server.connected}",
            "client_longest_output_list:0",
            "client_biggest_input_buf:0",
            f"blocked_clients:{server.blocked}",
        ]

    return lines


def memory_info() -> Callable[[], Awaitable[list[str]]]:
    """The Memory section: this process' resident size (the store may be elsewhere).

    Disque reports what its allocator handed out (``used_memory``) beside the resident
    size; Python's allocators keep no such total, so both are the resident size and
    ``mem_fragmentation_ratio`` is 1.00. The peak is the kernel's (``ru_maxrss``)."""

    async def lines() -> list[str]:
        peak = peak_rss()
        used = resident_size() or peak
        peak = max(peak, used)
        return [
            f"used_memory:{used}",
            f"used_memory_human:{human_bytes(used)}",
            f"used_memory_rss:{used}",
            f"used_memory_peak:{peak}",
            f"used_memory_peak_human:{human_bytes(peak)}",
            "mem_fragmentation_ratio:1.00",
            f"mem_allocator:{MEM_ALLOCATOR}",
            "maxmemory:1073741824",
        ]

    return lines


#: Python's small-object allocator, over the C library's malloc.
MEM_ALLOCATOR: Final = "pymalloc" if sysconfig.get_config_var("WITH_PYMALLOC") else "libc"


def resident_size() -> int:
    """This process' resident set size in bytes now (0 where /proc does not tell)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize()
    except (OSError, IndexError, ValueError):
        return 0


def peak_rss() -> int:
    """This process' largest resident set size so far, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS counts bytes, Linux KiB


def human_bytes(size: int) -> str:
    """Sizes as Disque's INFO writes them: ``512B``, ``1.50K``, ``36.20M``, ``2.00G``."""
    if size < 1024:
        return f"{size}B"
    value, unit = size / 1024, "K"
    for bigger in "MGT":
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.2f}{unit}"


def jobs_info(server: Server) -> Callable[[], Awaitable[list[str]]]:
    """The Jobs section: jobs not yet acked, in the whole store."""

    async def lines() -> list[str]:
        rows = (await server.store.stats()).rows
        count = sum(r.scheduled + r.queued + r.active + r.failed for r in rows)
        return [f"registered_jobs:{count}"]

    return lines


def queues_info(server: Server) -> Callable[[], Awaitable[list[str]]]:
    """The Queues section."""

    async def lines() -> list[str]:
        known = {info.name for info in await server.store.queues()}
        return [f"registered_queues:{len(known | server.recent_queues())}"]

    return lines


def persistence_info(server: Server) -> Callable[[], Awaitable[list[str]]]:
    """The Persistence section: the store is the persistence, so no AOF exists (off, never
    rewritten: BGREWRITEAOF does nothing). ``aof_last_write_status`` tells whether the
    store took the last batch of ADDJOBs (``err`` while it is unreachable)."""

    async def lines() -> list[str]:
        return [
            "loading:0",
            "aof_enabled:0",
            "aof_state:off",
            "aof_rewrite_in_progress:0",
            "aof_rewrite_scheduled:0",
            "aof_last_rewrite_time_sec:-1",
            "aof_current_rewrite_time_sec:-1",
            "aof_last_bgrewrite_status:ok",
            f"aof_last_write_status:{'ok' if server.last_write_ok else 'err'}",
        ]

    return lines


def stats_info(server: Server) -> Callable[[], Awaitable[list[str]]]:
    """The Stats section."""

    async def lines() -> list[str]:
        ops, read, written = server.rates.per_second()
        return [
            f"total_connections_received:{server.total_connections}",
            f"total_commands_processed:{server.commands_processed}",
            f"instantaneous_ops_per_sec:{round(ops)}",
            f"total_net_input_bytes:{server.net_input_bytes}",
            f"total_net_output_bytes:{server.net_output_bytes}",
            f"instantaneous_input_kbps:{read / 1024:.2f}",
            f"instantaneous_output_kbps:{written / 1024:.2f}",
            f"rejected_connections:{server.rejected_connections}",
            "latest_fork_usec:0",  # the server never forks
        ]

    return lines


def cpu_info() -> Callable[[], Awaitable[list[str]]]:
    """The CPU section."""

    async def lines() -> list[str]:
        times = os.times()
        return [
            f"used_cpu_sys:{times.system:.2f}",
            f"used_cpu_user:{times.user:.2f}",
            f"used_cpu_sys_children:{times.children_system:.2f}",
            f"used_cpu_user_children:{times.children_user:.2f}",
        ]

    return lines


async def cmd_shutdown(session: Session, args: list[bytes]) -> bytes:
    """SHUTDOWN: leave the pool and stop (the store keeps every job)."""
    session.server.on_shutdown()
    return OK


async def cmd_unsupported(session: Session, args: list[bytes]) -> bytes:
    """Commands of Disque's table that have no meaning over a shared store."""
    return protocol.error(f"ERR {args[0].decode(errors='replace').upper()} is not supported")


async def cmd_bgrewriteaof(session: Session, args: list[bytes]) -> bytes:
    """BGREWRITEAOF: the store is the persistence; nothing to rewrite."""
    return b"+Background append only file rewriting started\r\n"


async def cmd_slowlog(session: Session, args: list[bytes]) -> bytes:
    """SLOWLOG GET|LEN|RESET: nothing is recorded."""
    sub = args[1].lower()
    if sub == b"len":
        return ZERO
    if sub == b"reset":
        return OK
    return EMPTY_ARRAY


class Gather(enum.Enum):
    """The requests the server gathers from every connection into one store call (see
    :class:`Gathered`). Like plain ADDJOBs, a run of requests of one kind on a connection is
    in flight together (a pipeline of them costs one store call, not one each); a request
    of another kind waits for them."""

    CLAIM = "claim"
    ACK = "ack"


#: What starting a command gives the session, which says how it runs: ``bytes``, its
#: reply, known at once; a :class:`Job`, a plain ADDJOB's, added with its neighbours in
#: the server's next batch; a :class:`Pending`, a gathered request's reply to come; a
#: coroutine, a command that may wait, run (eagerly) as a task that nothing on the
#: connection overtakes.
Started = bytes | Job | Pending | Coroutine[Any, Any, bytes]


@dataclass(frozen=True, slots=True)
class Command:
    """One entry of the table: Disque's name and arity (negative: at least), how to start
    it, and which of its requests are gathered with other connections'."""

    name: str
    arity: int
    start: Callable[[Session, list[bytes]], Started]
    #: The kind a request is gathered with (``None``: not gathered).
    gathered: Callable[[list[bytes]], Gather | None] | None = None


def _always_ack(args: list[bytes]) -> Gather:
    return Gather.ACK


def _table() -> dict[bytes, Command]:
    entries: list[tuple[str, int, Callable[[Session, list[bytes]], Started]]] = [
        ("auth", 2, cmd_auth),
        ("ping", -1, cmd_ping),
        ("info", -1, cmd_info),
        ("shutdown", -1, cmd_shutdown),
        ("monitor", 1, cmd_unsupported),
        ("debug", -2, cmd_debug),
        ("config", -2, cmd_config),
        ("cluster", -2, cmd_cluster),
        ("client", -2, cmd_client),
        ("slowlog", -2, cmd_slowlog),
        ("time", 1, cmd_time),
        ("command", 0, cmd_command),
        ("latency", -2, cmd_slowlog),
        ("hello", 1, cmd_hello),
        ("addjob", -4, start_addjob),
        ("getjob", -2, start_getjob),
        ("ackjob", -1, start_ackjob),
        ("fastack", -1, cmd_fastack),
        ("deljob", -1, cmd_deljob),
        ("show", 2, cmd_show),
        ("loadjob", 2, cmd_unsupported),
        ("bgrewriteaof", 1, cmd_bgrewriteaof),
        ("qlen", 2, cmd_qlen),
        ("qpeek", 3, cmd_qpeek),
        ("qstat", 2, cmd_qstat),
        ("qscan", -1, cmd_qscan),
        ("jscan", -1, cmd_jscan),
        ("enqueue", -1, cmd_enqueue),
        ("nack", -1, cmd_nack),
        ("dequeue", -1, cmd_dequeue),
        ("working", 2, cmd_working),
        ("pause", -3, cmd_pause),
    ]
    gathered = {"getjob": getjob_gathered, "ackjob": _always_ack}
    return {
        name.encode(): Command(name, arity, start, gathered.get(name))
        for name, arity, start in entries
    }


#: Disque 1.0-rc1's command table: name -> entry (COMMAND COUNT is 32, as Disque's).
TABLE: Final = _table()


def check_arity(command: Command, argc: int) -> bytes | None:
    """Disque's arity rule; the error reply, or ``None`` when the count is right."""
    arity = command.arity
    if (arity > 0 and argc != arity) or (arity < 0 and argc < -arity):
        return protocol.error(f"ERR wrong number of arguments for '{command.name}' command")
    return None
