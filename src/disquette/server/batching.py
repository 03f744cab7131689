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
from .planner import claim_in_order, runs
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


class Gathered(Generic[R]):
    """Requests of one kind from every connection, run together once per loop iteration.

    A SQLite commit or a database round trip costs far more than the Python around it, so
    the ADDJOBs (GETJOBs, ACKJOBs) that arrive while one store call runs share the next
    call: one transaction, one commit, for many clients. ``run`` hands each request its
    outcome and never raises.
    """

    def __init__(
        self, run: Callable[[list[R]], Awaitable[None]], after: Callable[[], object]
    ) -> None:
        self._run = run
        #: Called after each batch (the server writes the replies it settled at once).
        self._after = after
        self._queue: list[R] = []
        self._running = False
        self._task: asyncio.Task[None] | None = None

    def push(self, request: R) -> None:
        """Run ``request`` with the next batch."""
        self._queue.append(request)
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
            while self._queue:
                batch, self._queue = self._queue, []
                await self._run(batch)
                self._after()
        finally:
            self._running = False
            self._task = None


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


async def run_claims(server: Server, requests: list[ClaimRequest]) -> None:
    """Lease the jobs of a batch of GETJOBs (a blocking one that gets none then blocks)."""
    # A run of consecutive GETJOBs on the same queues shares one claim per queue; each
    # gets the jobs it would have got had they run one after the other.
    for queues, run in runs(requests):
        # As in Disque, a GETJOB that may block creates its queues: noted once per run.
        for _, _, blocking, _ in run:
            if blocking:
                server.touch(queues)
                break
        try:
            counts = [request[1] for request in run]
            shares = await claim_in_order(server.store, queues, counts, server.give_back)
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
            await server.give_back(unwanted)


async def run_acks(server: Server, requests: list[AckRequest]) -> None:
    """Ack the ids of a batch of ACKJOBs in one store call; each gets its own count (a
    reply whose client left is not settled)."""
    ids = [job_id for job_ids, _ in requests for job_id in job_ids]
    try:
        done_ids = await server.store.ack(ids)
    except Exception as exc:
        error = refusal(exc)
        for _, pending in requests:
            if not pending.abandoned:
                pending.settle(error)
        return
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
