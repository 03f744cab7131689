"""Requests gathered from every connection into one store call per loop iteration.

A SQLite commit or a database round trip costs far more than the Python around it, so
plain ADDJOBs, GETJOBs and ACKJOBs of every connection that arrive while one store
call runs share the next one (:class:`Gathered`); their replies come back to the sessions
as :class:`Pending` replies, each request's share of the batch's outcome.
"""

from __future__ import annotations

import asyncio
import enum
import operator
from collections import Counter
from collections.abc import Awaitable, Callable
from itertools import chain
from typing import TYPE_CHECKING, Final, Generic, TypeVar

from ..errors import StoreUnavailable
from ..job import Job
from ..stores.types import Delivery
from .eager import start
from .planner import claim_in_order, runs, split
from .protocol import integer, refusal

if TYPE_CHECKING:
    from .server import Server

R = TypeVar("R")
T = TypeVar("T")


class Gather(enum.Enum):
    """The requests the server gathers from every connection into one store call (see
    :class:`Gathered`). Like plain ADDJOBs, a run of requests of one kind on a connection is
    in flight together (a pipeline of them costs one store call, not one each); a request
    of another kind waits for them."""

    CLAIM = "claim"
    ACK = "ack"


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


class _Batching:
    """Runs what connections pushed together, once per loop iteration: started by the
    first request (:meth:`wake`), then batch after batch until none is left, ``after``
    following each (the server writes the replies it settled at once)."""

    def __init__(self, after: Callable[[], object]) -> None:
        self._after = after
        self._running = False
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Run the requests pushed with the next batch."""
        if self._running:
            return
        self._running = True
        asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        task = start(self._drain())
        if task is not None:
            self._task = task  # a reference: the loop keeps tasks weakly

    async def _drain(self) -> None:
        try:
            while await self._run_batch():
                self._after()
        finally:
            self._running = False
            self._task = None

    async def _run_batch(self) -> bool:
        """Run the requests pushed so far; False when there were none."""
        raise NotImplementedError


class Gathered(_Batching, Generic[R]):
    """Requests of one kind from every connection, run together once per loop iteration.

    A SQLite commit or a database round trip costs far more than the Python around it, so
    the ADDJOBs that arrive while one store call runs share the next call: one
    transaction, one commit, for many clients. ``run`` hands each request its outcome and
    never raises.
    """

    def __init__(
        self, run: Callable[[list[R]], Awaitable[None]], after: Callable[[], object]
    ) -> None:
        super().__init__(after)
        self._run = run
        self._queue: list[R] = []

    def push(self, request: R) -> None:
        """Run ``request`` with the next batch."""
        self._queue.append(request)
        if not self._running:
            self.wake()

    async def _run_batch(self) -> bool:
        if not self._queue:
            return False
        batch, self._queue = self._queue, []
        await self._run(batch)
        return True


class Settling(_Batching):
    """ACKJOBs and GETJOBs from every connection, run together once per loop iteration:
    both kinds of a batch share one store call when the store can take them so
    (:func:`run_settles`: SQLite commits the acks and the claim at once), as a worker
    that finished jobs acks them and claims the next ones in one call. ``acks`` and
    ``claims`` take the requests of each kind."""

    def __init__(
        self,
        run: Callable[[list[AckRequest], list[ClaimRequest]], Awaitable[None]],
        after: Callable[[], object],
    ) -> None:
        super().__init__(after)
        self._run = run
        self.acks = _Lane[AckRequest](self)
        self.claims = _Lane[ClaimRequest](self)

    async def _run_batch(self) -> bool:
        acks, claims = self.acks, self.claims
        if not (acks.queue or claims.queue):
            return False
        ack_batch, acks.queue = acks.queue, []
        claim_batch, claims.queue = claims.queue, []
        await self._run(ack_batch, claim_batch)
        return True


class _Lane(Generic[R]):
    """The requests of one kind a :class:`Settling` runs with its next batch."""

    __slots__ = ("_owner", "queue")

    def __init__(self, owner: Settling) -> None:
        self._owner = owner
        self.queue: list[R] = []

    def push(self, request: R) -> None:
        """Run ``request`` with the next batch."""
        self.queue.append(request)
        self._owner.wake()


#: Where a gathered request's outcome goes (its result, or the store's error); it answers
#: whether anybody took it (a blocked GETJOB whose client left takes no jobs).
Then = Callable[[T | Exception], bool]


#: A GETJOB's share of a batched claim: its queues, its COUNT, whether it may block (it
#: then notes its queues as used, see ``Server.touch``), where its jobs go.
ClaimRequest = tuple[tuple[str, ...], int, bool, Then[list[Delivery]]]


#: An ACKJOB's share of a batched ack: its ids, and its reply (how many became done).
AckRequest = tuple[list[str], Pending]


#: Plain ADDJOBs of one connection: their jobs, and where their replies go.
AddRequest = tuple[list[Job], Pending]


async def run_adds(server: Server, requests: list[AddRequest]) -> None:
    """Add the plain ADDJOBs of a batch, ``max_batch`` jobs per store call at most."""
    # The jobs of every request, flattened in C (a comprehension costs two lines per job).
    jobs = list(chain.from_iterable(map(_jobs_of, requests)))
    if len(jobs) <= server.max_batch:  # the usual batch: one store call, no grouping
        await _add_groups(server, requests, jobs)
        return
    at = 0
    while at < len(requests):
        groups = [requests[at]]
        size = len(requests[at][0])
        at += 1
        while at < len(requests) and size + len(requests[at][0]) <= server.max_batch:
            groups.append(requests[at])
            size += len(requests[at][0])
            at += 1
        await _add_groups(server, groups, list(chain.from_iterable(map(_jobs_of, groups))))


async def _add_groups(server: Server, groups: list[AddRequest], jobs: list[Job]) -> None:
    """Add ``jobs``, the jobs of ``groups`` in order, in one store call, and settle the
    groups' replies (one refused job, a paused queue, refuses none of its neighbours)."""
    try:
        await server.store.add(jobs, None)
        server.last_write_ok = True
    except Exception as exc:
        server.last_write_ok = not isinstance(exc, StoreUnavailable)
        for group_jobs, pending in groups:
            pending.settle(b"".join([await server.add_one(job, None, 0) for job in group_jobs]))
        return
    # Counted in C (Counter.update of an iterable), no Counter made per batch.
    server.jobs_in.update(map(_queue_of, jobs))
    server.touch(set(map(_queue_of, jobs)))
    for group_jobs, pending in groups:
        if len(group_jobs) == 1:  # a client that waits for each reply: added(), inline
            pending.settle(b"+%b\r\n" % group_jobs[0].id.encode())
        else:
            pending.settle(added(group_jobs))


_jobs_of: Final = operator.itemgetter(0)
_queue_of: Final = operator.attrgetter("queue")


async def run_settles(server: Server, acks: list[AckRequest], claims: list[ClaimRequest]) -> None:
    """The ACKJOBs and GETJOBs of a batch: the acks first, then the claims; in one store
    call (``ack_and_claim_deliveries``) when the claims are all on one queue (a worker's
    GETJOBs), else one store call for the acks (:func:`run_acks`) and a claim per run of
    GETJOBs on the same queues."""
    claim_runs = runs(claims)
    if not (acks and len(claim_runs) == 1 and len(claim_runs[0][0]) == 1):
        if acks:
            await run_acks(server, acks)
        for queues, run in claim_runs:
            await _run_claim(server, queues, run)
        return
    queues, run = claim_runs[0]
    _note_blocking(server, queues, run)
    ids = _ids_of(acks)
    counts = [request[1] for request in run]
    try:
        done_ids, jobs = await server.store.ack_and_claim_deliveries(ids, queues, sum(counts))
    except Exception as exc:
        # Each ACKJOB and GETJOB gets the error. A store that does both in one transaction
        # did neither; after the default's two calls the acks may stand, and their ACKJOBs
        # learn no more than from a lost reply (acked again, they count 0).
        _acks_failed(acks, exc)
        for *_, then in run:
            then(exc)
        return
    _settle_acks(acks, ids, done_ids)
    await _hand_out(server, run, split(jobs, counts))


async def _run_claim(server: Server, queues: tuple[str, ...], run: list[ClaimRequest]) -> None:
    """Lease the jobs of a run of GETJOBs on the same queues (one claim per queue); each
    gets the jobs it would have got had they run one after the other (a blocking one that
    gets none then blocks)."""
    _note_blocking(server, queues, run)
    try:
        counts = [request[1] for request in run]
        shares = await claim_in_order(server.store, queues, counts, server.give_back)
    except Exception as exc:
        for *_, then in run:
            then(exc)
        return
    await _hand_out(server, run, shares)


def _note_blocking(server: Server, queues: tuple[str, ...], run: list[ClaimRequest]) -> None:
    """As in Disque, a GETJOB that may block creates its queues: noted once per run."""
    for _, _, blocking, _ in run:
        if blocking:
            server.touch(queues)
            return


async def _hand_out(server: Server, run: list[ClaimRequest], shares: list[list[Delivery]]) -> None:
    """Each request of ``run`` gets its share; jobs whose client left go back at once."""
    unwanted = [
        job for (*_, then), jobs in zip(run, shares, strict=True) if not then(jobs) for job in jobs
    ]
    if unwanted:
        await server.give_back(unwanted)


async def run_acks(server: Server, requests: list[AckRequest]) -> None:
    """Ack the ids of a batch of ACKJOBs in one store call; each gets its own count (a
    reply whose client left is not settled)."""
    ids = _ids_of(requests)
    try:
        done_ids = await server.store.ack(ids)
    except Exception as exc:
        _acks_failed(requests, exc)
        return
    _settle_acks(requests, ids, done_ids)


def _ids_of(requests: list[AckRequest]) -> list[str]:
    return [job_id for job_ids, _ in requests for job_id in job_ids]


def _acks_failed(requests: list[AckRequest], exc: Exception) -> None:
    error = refusal(exc)
    for _, pending in requests:
        if not pending.abandoned:
            pending.settle(error)


def _settle_acks(requests: list[AckRequest], ids: list[str], done_ids: list[str]) -> None:
    """Each ACKJOB's reply: how many of its ids are among ``done_ids`` (of ``ids``)."""
    if len(done_ids) == len(ids):  # the usual batch: every id acked, none twice
        for job_ids, pending in requests:
            if not pending.abandoned:
                pending.settle(integer(len(job_ids)))
        return
    done = Counter(done_ids)
    for job_ids, pending in requests:
        acked = 0
        for job_id in job_ids:  # an id acked twice in one batch counts for the first
            if done[job_id] > 0:
                done[job_id] -= 1
                acked += 1
        if not pending.abandoned:
            pending.settle(integer(acked))


def added(jobs: list[Job]) -> bytes:
    """ADDJOB's replies for added jobs, concatenated (ids are ASCII). ``run_adds`` makes
    one job's reply (a client that waits for each reply) without this call."""
    return "".join(["+" + job.id + "\r\n" for job in jobs]).encode()
