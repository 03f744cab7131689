"""Job commands: ADDJOB, GETJOB, SHOW, WORKING and JSCAN."""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from ...disque import (
    DEFAULT_TTL,
    DISQUE_STATES,
    FOREVER,
    ShowValue,
    default_retry,
    parse_ids,
    show_entries,
)
from ...errors import DisquetteError, InvalidQueueName, JobCancelled, JobNotFound, WorkingTooLate
from ...job import Job, JobState
from ...stores.types import Delivery
from .. import protocol
from ..batching import Pending
from ..planner import MAX_PAGE
from ..protocol import EMPTY_ARRAY, NULL_ARRAY, NULL_BULK, SYNTAX_ERROR, ZERO, refusal
from ..server import Server
from .args import (
    CommandError,
    parse_int,
    parse_queue,
    parse_scan_options,
    parse_timeout_ms,
)

if TYPE_CHECKING:
    from ..session import Session

#: JSCAN's default page, as Disque's COUNT default.
SCAN_COUNT: Final = 100
_PENDING_STATES: Final = frozenset(JobState) - {JobState.DONE}


def start_addjob(session: Session, args: list[bytes]) -> bytes | Job | Coroutine[Any, Any, bytes]:
    """ADDJOB: a plain one's job (the session adds it with its neighbours, in the server's
    next batch), else the add on its own (MAXLEN, REPLICATE), or the refusal."""
    server = session.server
    if len(args) == 4 and args[3] == b"0":  # no option, a known queue: the hot path
        queue = server.queues_checked.get(args[1])
        if queue is not None:
            return server.default_job(queue, args[2])
    try:
        job, max_len, copies = parse_addjob(server, args)
    except CommandError as exc:
        return exc.reply
    if max_len is None and copies == 0:
        return job
    return server.add_one(job, max_len, copies)


@dataclass(slots=True)
class AddJobOptions:
    """ADDJOB's options, with Disque's defaults (``retry`` -1: derived from the TTL)."""

    replicate: int = 1
    ttl: int = DEFAULT_TTL
    retry: int = -1
    delay: int = 0
    max_len: int | None = None
    asynchronous: bool = False


#: ADDJOB's options that take a number: the lowest value accepted, and the reply otherwise.
_NUMERIC_OPTIONS: Final = {
    b"replicate": (1, b"-ERR REPLICATE must be between 1 and 65535\r\n"),
    b"ttl": (1, b"-ERR TTL must be a number > 0\r\n"),
    b"retry": (0, b"-ERR RETRY time must be a non negative number\r\n"),
    b"delay": (0, b"-ERR DELAY time must be a non negative number\r\n"),
    b"maxlen": (1, b"-ERR MAXLEN must be a positive number\r\n"),
}


def parse_addjob(server: Server, args: list[bytes]) -> tuple[Job, int | None, int]:
    """ADDJOB's job, its MAXLEN and the extra copies it asks for, parsed as Disque does;
    raises :class:`CommandError` with Disque's reply for a refused command."""
    if len(args) == 4 and args[3] == b"0":  # no option: the defaults, decided once
        queue = server.queues_checked.get(args[1])
        if queue is not None:
            return server.default_job(queue, args[2]), None, 0
    options = parse_addjob_options(args)
    ttl, retry = options.ttl, options.retry
    if retry == -1:
        retry = default_retry(ttl)
    ttl = min(ttl, FOREVER)
    queue = parse_queue(args[1])
    if queue is None:
        raise CommandError(refusal(InvalidQueueName(args[1], "not a name this store keeps")))
    if len(server.queues_checked) >= 4096:
        server.queues_checked.clear()
    server.queues_checked[args[1]] = queue
    # REPLICATE counts copies, this one included; the store's replicate counts the
    # copies beyond its own. ASYNC asks for none to be awaited. Counting pool nodes
    # as replicas, n live nodes meet REPLICATE n with the store's one copy.
    replicate = options.replicate
    if options.asynchronous or (
        server.pool_nodes_as_replicas and replicate <= len(server.node.peers)
    ):
        copies = 0
    else:
        copies = replicate - 1
    delay = options.delay
    return server.new_job(queue, args[2], ttl, retry, delay), options.max_len, copies


def parse_addjob_options(args: list[bytes]) -> AddJobOptions:
    """The options after ADDJOB's timeout, checked alone and together as Disque does."""
    options = AddJobOptions()
    j, argc = 4, len(args)
    while j < argc:
        option = args[j].lower()
        if option == b"async":
            options.asynchronous = True
            j += 1
            continue
        bounds = _NUMERIC_OPTIONS.get(option)
        if bounds is None or j == argc - 1:
            raise CommandError(SYNTAX_ERROR)
        value, (lowest, refused) = parse_int(args[j + 1]), bounds
        if value is None or value < lowest or (option == b"replicate" and value > 65535):
            raise CommandError(refused)
        setattr(options, "max_len" if option == b"maxlen" else option.decode(), value)
        j += 2
    if args[3] != b"0":  # the usual timeout, checked for nothing
        parse_timeout_ms(args[3])
    if options.retry == 0 and options.replicate > 1:
        raise CommandError(
            b"-ERR With RETRY set to 0 please explicitly set  REPLICATE to 1 "
            b"(at-most-once delivery)\r\n"
        )
    if options.delay >= options.ttl:
        raise CommandError(
            b"-ERR The specified DELAY is greater than TTL. Job refused since would "
            b"never be delivered\r\n"
        )
    return options


@dataclass(slots=True)
class GetJob:
    """A parsed GETJOB."""

    queues: tuple[str, ...]
    count: int = 1
    nohang: bool = False
    timeout_ms: int = 0
    counters: bool = False


#: GETJOBs parsed, by their arguments: a worker sends the same one again and again.
_PARSED: Final[dict[tuple[bytes, ...], GetJob]] = {}
_MAX_PARSED: Final = 4096
#: Only short GETJOBs are kept (a request may hold up to 1M arguments of 64 MiB).
_MAX_PARSED_ARGS: Final = 16
_MAX_PARSED_BYTES: Final = 1024


def parse_getjob(args: list[bytes]) -> GetJob:
    """GETJOB [NOHANG] [TIMEOUT ms] [COUNT n] [WITHCOUNTERS] FROM q1 q2 ..., as Disque
    parses it (invalid queue names are left out); raises :class:`CommandError`."""
    if len(args) > _MAX_PARSED_ARGS:
        return _parse_getjob(args)
    key = tuple(args)
    request = _PARSED.get(key)
    if request is not None:
        return request
    request = _parse_getjob(args)
    if sum(map(len, args)) <= _MAX_PARSED_BYTES:
        if len(_PARSED) >= _MAX_PARSED:
            _PARSED.clear()
        _PARSED[key] = request
    return request


def _parse_getjob(args: list[bytes]) -> GetJob:
    request = GetJob(())
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
                request.timeout_ms = parse_timeout_ms(args[j + 1])
            else:
                value = parse_int(args[j + 1])
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
    request.queues = tuple([name for name in map(parse_queue, raw_queues) if name is not None])
    return request


def getjob_reply(
    server: Server, jobs: Sequence[Job | Delivery], counters: bool, *, touched: bool = False
) -> bytes:
    """GETJOB's reply for the jobs it leased (counted as delivered; ``touched``: their
    queues were just noted as used, see ``Server.touch``)."""
    if not jobs:
        return NULL_ARRAY
    if not touched:
        server.touch({job.queue for job in jobs})
    delivered = server.jobs_out
    if counters:
        items = []
        for job in jobs:
            delivered[job.queue] += 1
            fields = [
                protocol.bulk(job.queue),
                protocol.bulk(job.id),
                protocol.bulk(job.raw_body),
                b"$5\r\nnacks\r\n",
                protocol.integer(job.nacks),
                b"$21\r\nadditional-deliveries\r\n",
                protocol.integer(job.additional_deliveries),
            ]
            items.append(protocol.array(fields))
        return protocol.array(items)
    # The hot path (a worker's GETJOB): the parts of every job's array joined once, the
    # queue's header and the length headers made once (a bytes format per job costs more).
    parts = [_ARRAY_HEADS[len(jobs)] if len(jobs) < _MADE_HEADS else b"*%d\r\n" % len(jobs)]
    heads = _QUEUE_HEADS
    for job in jobs:
        queue, job_id, body = job.queue, job.id.encode(), job.raw_body
        delivered[queue] += 1
        head = heads.get(queue)
        if head is None:
            head = _queue_head(queue)
        parts += (
            head,
            _BULK_HEADS[len(job_id)] if len(job_id) < _MADE_HEADS else _bulk_head(job_id),
            job_id,
            _BULK_HEADS[len(body)] if len(body) < _MADE_HEADS else _bulk_head(body),
            body,
            b"\r\n",
        )
    return b"".join(parts)


#: Lengths under this have their headers made once.
_MADE_HEADS: Final = 1024
#: A GETJOB reply's ``*n``, by n.
_ARRAY_HEADS: Final = [b"*%d\r\n" % n for n in range(_MADE_HEADS)]
#: The end of a bulk string and the header of the next one, by its length.
_BULK_HEADS: Final = [b"\r\n$%d\r\n" % n for n in range(_MADE_HEADS)]
#: A job's array header with its queue's bulk string (without its CRLF), by queue name.
_QUEUE_HEADS: Final[dict[str, bytes]] = {}


def _bulk_head(data: bytes) -> bytes:
    return b"\r\n$%d\r\n" % len(data)


def _queue_head(queue: str) -> bytes:
    if len(_QUEUE_HEADS) >= 4096:  # a queue per request must not grow it without end
        _QUEUE_HEADS.clear()
    name = queue.encode()
    head = _QUEUE_HEADS[queue] = b"*3\r\n$%d\r\n%b" % (len(name), name)
    return head


def start_getjob(session: Session, args: list[bytes]) -> bytes | Pending:
    """GETJOB, gathered with the other connections' claims (one store call for all): its
    reply, or the :class:`Pending` that gets it. A blocking GETJOB that finds no job then
    blocks (:func:`wait_for_job`, run by ``Session.block`` after the connection's blocked
    requests before it), so jobs already waiting cost no task and no wait."""
    try:
        request = parse_getjob(args)
    except CommandError as exc:
        return exc.reply
    queues = request.queues
    if not queues:
        return NULL_ARRAY
    pending = Pending()
    # A partial, not a closure: made for every GETJOB, it costs half as much.
    # A blocking GETJOB notes its queues as used (see Server.touch, run_settles).
    session.server.claims.push(
        (queues, request.count, not request.nohang, partial(_got_jobs, session, request, pending))
    )
    return pending


def _got_jobs(
    session: Session, request: GetJob, pending: Pending, outcome: list[Delivery] | Exception
) -> bool:
    """Where a GETJOB's share of a batched claim goes: its reply, or the wait of a blocking
    GETJOB that got no job. Whether anybody took the jobs (not a client that left)."""
    if pending.abandoned:
        return False
    if isinstance(outcome, Exception):
        pending.settle(refusal(outcome))
    elif outcome or request.nohang:
        # A blocking GETJOB's queues, the jobs' among them, were noted as used already.
        server = session.server
        pending.settle(getjob_reply(server, outcome, request.counters, touched=not request.nohang))
    else:
        session.block(partial(wait_for_job, session.server, request), pending)
    return True


async def wait_for_job(server: Server, request: GetJob) -> bytes:
    """A blocking GETJOB that found no job: its reply once a job comes (Disque hands a
    blocked client the one job that woke it, whatever its COUNT) or its TIMEOUT ends."""
    timeout_ms, queues = request.timeout_ms, request.queues
    client = server.client.timeout(None if timeout_ms == 0 else timeout_ms / 1000)
    server.blocked += 1
    for queue in queues:
        server.blocked_on[queue] += 1
    try:
        jobs = await client.get_many(*queues, count=1)
    finally:
        server.blocked -= 1
        for queue in queues:
            server.blocked_on[queue] -= 1
            if not server.blocked_on[queue]:
                del server.blocked_on[queue]
    return getjob_reply(server, jobs, request.counters)


async def cmd_working(session: Session, args: list[bytes]) -> bytes:
    """WORKING id: postpone the next delivery by the job's retry time (refused with
    ``-ERR`` once a CANCEL asked the job's holder to stop)."""
    (job_id,) = parse_ids(args[1:])
    store = session.server.store
    job = await store.show(job_id)
    if job is None or job.state in (JobState.DONE, JobState.CANCELLED):
        raise JobNotFound(job_id)
    now = store.clock.now()
    if job.expires_at is not None and now - job.created_at > (job.expires_at - job.created_at) / 2:
        raise WorkingTooLate(job_id)
    if job.retry_after <= 0:
        return ZERO
    if job.state is JobState.QUEUED:
        await store.dequeue([job_id])
        return protocol.integer(int(job.retry_after))
    try:
        await store.working(job_id)
    except JobNotFound:
        raise JobNotFound(job_id) from None
    except JobCancelled:
        raise
    except DisquetteError:
        pass  # scheduled or failed: nothing to postpone, the retry time is still the answer
    return protocol.integer(int(job.retry_after))


async def cmd_show(session: Session, args: list[bytes]) -> bytes:
    """SHOW id: the job's fields, ``$-1`` for unknown and acked (done) or cancelled jobs."""
    (job_id,) = parse_ids(args[1:])
    store = session.server.store
    job = await store.show(job_id)
    if job is None or job.state in (JobState.DONE, JobState.CANCELLED):
        return NULL_BULK
    return encode_show(job, store.clock.now(), session.server.node.id)


def encode_show(job: Job, now: float, node_id: str) -> bytes:
    """SHOW's array for one job: 30 elements, 32 with headers (see
    :func:`disquette.disque.show_entries`)."""
    return protocol.array(
        item
        for name, value in show_entries(job, now, node_id)
        for item in (protocol.bulk(name), _encode(value))
    )


def _encode(value: ShowValue) -> bytes:
    if value is None:
        return NULL_BULK
    if isinstance(value, int):
        return protocol.integer(value)
    if isinstance(value, list):
        return protocol.array(map(protocol.bulk, value))
    return protocol.bulk(value)


async def cmd_jscan(session: Session, args: list[bytes]) -> bytes:
    """JSCAN [cursor] [COUNT n] [BUSYLOOP] [QUEUE q] [STATE s]... [REPLY id|all]."""
    cursor, options = parse_scan_options(args, (b"queue", b"state", b"reply"))
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
        queue = parse_queue(options[b"queue"][-1])
        if queue is None:
            return protocol.array([b"$1\r\n0\r\n", EMPTY_ARRAY])
    count = max(1, min(parse_int(options.get(b"count", [b"100"])[-1]) or SCAN_COUNT, MAX_PAGE))
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
        items = [encode_show(job, now, session.server.node.id) for job in found]
    return protocol.array([protocol.bulk(str(cursor)), protocol.array(items)])
