"""The ``disque://`` store: a client for any Disque-protocol server (ours, or Disque 1.0).

URL forms (``?parameters`` may follow any part)::

    disque://127.0.0.1:7711                       one node
    disque://:secret@10.0.0.1:7711,10.0.0.2:7711  several nodes, one password (AUTH)
    disque://a:7711,disque://b:7711               comma-separated URLs
    disque://                                     the nodes of $DISQUE_NODES (host:port or
                                                  disque:// URLs, comma-separated)

Parameters: ``password``, ``max_idle`` (idle connections kept per node, default 8),
``max_active`` (connections in use at once, all nodes together, default 64; a caller waits
for one past that), ``idle_timeout`` (seconds an idle connection is kept, default 300),
``connect_timeout`` (seconds, default 2), ``replicate_timeout`` (ADDJOB's ms-timeout in
seconds, default 5), ``cycle`` (after this many received jobs, switch to the node that
produced most of them, by the 8-hex node prefix of the job ids; 0, the default, never
switches), ``poll_interval`` (seconds between two GETJOB NOHANG of a blocked ``get``,
default 0.05), ``retry_for`` (seconds, default 10: while no node accepts a connection, a call
waits and tries again for that long, so a worker started before its server waits for it; 0
fails at once).

Failover: commands go to the current node; when it cannot be reached (refused, reset,
timed out), the store moves on to the next node of the list and retries there. A command
that was sent but got no reply may have run (an ADDJOB may then be added twice): Disque's
delivery is at-least-once anyway. Only rounds in which no node could even be connected to
(nothing was sent) are tried again for ``retry_for``.

Body format. What a Disque client reads is the job's body: a job added from Python with a
``bytes`` body and no disquette-only field is its bytes exactly, and a job added by any
other Disque client is read as ``bytes`` (no type: the worker's catch-all handler, or a
queue per kind of work, as documented by ``disquette server``). A job that needs more (a
``str`` or JSON body, a ``type``, a non-default ``priority``, ``max_attempts`` or
``result_ttl``) travels in a JSON envelope any language can read::

    {"disquette": 1, "encoding": "text" | "json" | "bytes", "type": "send_mail",
     "priority": 100, "max_attempts": 25, "result_ttl": 3600, "body": ...}

``body`` is the JSON value itself (``json``), the string (``text``) or base64 (``bytes``);
optional keys are left out at their defaults. A ``bytes`` body that happens to begin with
``{"disquette":`` is always enveloped, so it is never mistaken for an envelope.

Where Disque's semantics differ from disquette's (the conformance suite marks each test):

- Time is the server's: TTL, DELAY and RETRY are whole seconds (rounded up) and run on the
  server's clock, not on the clock given to :func:`open_url`.
- No priorities: jobs of a queue come out in creation order; ``priority`` is only carried.
- A ``get_many`` over several queues takes one job per queue per pass (GETJOB's order),
  not the leftmost queue's jobs first.
- No results and no ``done`` state: ACKJOB deletes the job, so ``wait`` cannot see it
  (``JobNotFound``); the result given to ``ack`` is dropped.
- No ``failed`` state and no error bookkeeping (a body cannot change): ``fail`` leaves the
  job leased, so the server redelivers it after its RETRY (Disque's own retry), and
  ``error_count``/``last_error`` stay 0/``None``. ``failed`` is always empty.
- ``attempts`` is derived: 1 + nacks + additional deliveries once delivered.
- ACKJOB, NACK and WORKING act by id: a late ``ack``/``nack``/``working`` of an older
  delivery applies to the job whatever delivery holds it now (the ``attempts`` a client
  passes along are not checked, and :class:`~disquette.errors.LeaseLost` is never raised).
  Claims record no holder, and ``release_leases`` is refused (``NotSupported``): the
  server requeues a dead consumer's jobs after their RETRY.
- No transactions (``connection=``) and no node registry (``register_node``): refused.
"""

from __future__ import annotations

import base64
import binascii
import collections
import json
import math
import os
import threading
import time
from collections.abc import Collection, Sequence
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis

from ..._concurrency import AsyncSemaphore, AsyncTcpStream, async_sleep
from ...clock import Clock
from ...defaults import MAX_ATTEMPTS, PRIORITY, RESULT_TTL
from ...disque import (
    DEFAULT_PORT,
    FOREVER,
    STATE_NAMES,
    error_for,
    id_is_leased,
    id_node_prefix,
    parse_show,
    show_fields,
)
from ...errors import (
    InvalidOption,
    InvalidState,
    InvalidURL,
    JobNotFound,
    NotSupported,
    StoreError,
    StoreUnavailable,
)
from ...job import Encoding, Job, JobState, Stats, StatsRow
from .._url import check_known, number
from ..store_async import AsyncStore
from ..types import (
    DONE_CHANNEL,
    PAUSE_MODES,
    EncodedResult,
    NodeInfo,
    PauseMode,
    QueueInfo,
    Wakeups,
)

_ENVELOPE_PREFIX: Final = b'{"disquette":'
_ENCODINGS: Final = {Encoding.BYTES: "bytes", Encoding.TEXT: "text", Encoding.JSON: "json"}
_ENCODING_NAMES: Final = {name: encoding for encoding, name in _ENCODINGS.items()}
_PARAMETERS: Final = frozenset(
    {
        "password",
        "max_idle",
        "max_active",
        "idle_timeout",
        "connect_timeout",
        "replicate_timeout",
        "cycle",
        "poll_interval",
        "retry_for",
    }
)

Reply = Any
#: Between two rounds of connection attempts while every node is down.
_RETRY_PAUSE: Final = 0.25


class ServerError(StoreError):
    """An error reply (``-PREFIX text``) the store has no typed error for."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        super().__init__("Disque", reply)


# -- the envelope --------------------------------------------------------------------------


def encode_body(job: Job) -> bytes:
    """The body a Disque server keeps for ``job`` (see the module's "Body format")."""
    plain = (
        job.encoding == Encoding.BYTES
        and job.type is None
        and job.priority == PRIORITY
        and job.max_attempts == MAX_ATTEMPTS
        and job.result_ttl == RESULT_TTL
        and not job.raw_body.startswith(_ENVELOPE_PREFIX)
    )
    if plain:
        return job.raw_body
    envelope: dict[str, Any] = {"disquette": 1, "encoding": _ENCODINGS[job.encoding]}
    if job.type is not None:
        envelope["type"] = job.type
    if job.priority != PRIORITY:
        envelope["priority"] = job.priority
    if job.max_attempts != MAX_ATTEMPTS:
        envelope["max_attempts"] = job.max_attempts
    if job.result_ttl != RESULT_TTL:
        envelope["result_ttl"] = job.result_ttl
    if job.encoding == Encoding.JSON:
        envelope["body"] = json.loads(job.raw_body)
    elif job.encoding == Encoding.TEXT:
        envelope["body"] = job.raw_body.decode()
    else:
        envelope["body"] = base64.b64encode(job.raw_body).decode()
    return json.dumps(envelope, separators=(",", ":")).encode()


def decode_body(job: Job, data: bytes) -> Job:
    """Fill ``job``'s body and envelope fields from what the server keeps."""
    job.raw_body, job.encoding = data, Encoding.BYTES
    if not data.startswith(_ENVELOPE_PREFIX):
        return job
    try:
        envelope = json.loads(data)
        encoding = _ENCODING_NAMES[envelope["encoding"]]
        body = envelope["body"]
        if encoding == Encoding.JSON:
            raw = json.dumps(body, separators=(",", ":")).encode()
        elif encoding == Encoding.TEXT:
            raw = body.encode()
        else:
            raw = base64.b64decode(body, validate=True)
        job.type = envelope.get("type")
        job.priority = int(envelope.get("priority", PRIORITY))
        job.max_attempts = int(envelope.get("max_attempts", MAX_ATTEMPTS))
        job.result_ttl = float(envelope.get("result_ttl", RESULT_TTL))
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        return job  # someone else's body that looks like ours: keep it as bytes
    job.raw_body, job.encoding = raw, encoding
    return job


# -- the URL -------------------------------------------------------------------------------


def parse_url(
    url: str, environ: dict[str, str] | None = None
) -> tuple[list[tuple[str, int]], dict[str, str]]:
    """The nodes (host, port) and the parameters (password included) a URL names."""
    environ = dict(os.environ) if environ is None else environ
    nodes: list[tuple[str, int]] = []
    params: dict[str, str] = {}
    body = url[len("disque://") :] if url.startswith("disque://") else url
    pieces = [piece for piece in body.split(",")]
    if not any(p.split("?")[0].rpartition("@")[2] for p in pieces):
        # disque:// (maybe with a password or parameters): the nodes come from the environment.
        for piece in pieces:
            _parse_piece(url, piece, [], params)
        listed = environ.get("DISQUE_NODES", "")
        pieces = [piece.strip() for piece in listed.split(",") if piece.strip()]
        if not pieces:
            raise InvalidURL(url, "no node: name host:port in the URL or in $DISQUE_NODES")
        pieces = [p[len("disque://") :] if p.startswith("disque://") else p for p in pieces]
    for piece in pieces:
        if piece.startswith("disque://"):
            piece = piece[len("disque://") :]
        _parse_piece(url, piece, nodes, params)
    check_known(url, params, _PARAMETERS)
    return nodes, params


def _parse_piece(
    url: str, piece: str, nodes: list[tuple[str, int]], params: dict[str, str]
) -> None:
    try:
        parts = urlsplit("disque://" + piece)
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(url, str(exc)) from None
    if parts.path not in ("", "/"):
        raise InvalidURL(url, "a disque URL has no path")
    params.update({key: values[-1] for key, values in parse_qs(parts.query).items()})
    if parts.password is not None:
        params["password"] = unquote(parts.password)
    if parts.hostname:
        nodes.append((parts.hostname, port or DEFAULT_PORT))


# -- connections ---------------------------------------------------------------------------


class AsyncWire:
    """One RESP connection: pipelined requests out, hiredis-parsed replies in."""

    def __init__(self, stream: AsyncTcpStream) -> None:
        self.stream = stream
        self.parser = hiredis.Reader()
        self.last_used = time.monotonic()

    @classmethod
    async def open(cls, host: str, port: int, timeout: float) -> AsyncWire:
        """Connect, or raise ``OSError``."""
        return cls(await AsyncTcpStream.open(host, port, timeout))

    async def call(self, frames: bytes, replies: int) -> list[Reply]:
        """Send pipelined requests and read their ``replies``."""
        self.stream.send(frames)
        out: list[Reply] = []
        while len(out) < replies:
            reply = self.parser.gets()
            if reply is False:
                data = await self.stream.read(65536)
                if not data:
                    raise ConnectionResetError("the server closed the connection")
                self.parser.feed(data)
                continue
            out.append(reply)
        self.last_used = time.monotonic()
        return out

    def close(self) -> None:
        """Close the connection (never raises)."""
        self.stream.close()


def _frame(*args: str | bytes | int) -> bytes:
    """One RESP request."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class AsyncPool:
    """Connections to the nodes: idle ones kept per node, a bound on those in use, and
    failover from the current node to the next when one cannot be reached."""

    def __init__(
        self,
        nodes: list[tuple[str, int]],
        *,
        password: str | None,
        max_idle: int,
        max_active: int,
        idle_timeout: float,
        connect_timeout: float,
        retry_for: float = 0.0,
    ) -> None:
        self.nodes = list(nodes)
        self.retry_for = retry_for
        self.current = 0
        self.password = password
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self._idle: dict[tuple[str, int], collections.deque[AsyncWire]] = {
            node: collections.deque() for node in self.nodes
        }
        self._lock = threading.Lock()
        self._gate = AsyncSemaphore(max_active)
        self.closed = False

    def move_to(self, node: tuple[str, int]) -> None:
        """Make ``node`` the current node (added to the list if new)."""
        with self._lock:
            if node not in self.nodes:
                self.nodes.append(node)
                self._idle[node] = collections.deque()
            self.current = self.nodes.index(node)

    async def call(self, *requests: tuple[str | bytes | int, ...]) -> list[Reply]:
        """Run pipelined requests on one connection of the current node (failing over);
        error replies are returned as ``hiredis.ReplyError`` values. While no node accepts
        a connection, try again for ``retry_for`` seconds."""
        if self.closed:
            raise StoreUnavailable("the disque store is closed")
        frames = b"".join(_frame(*request) for request in requests)
        deadline = time.monotonic() + self.retry_for
        await self._gate.acquire()
        try:
            while True:
                errors: list[str] = []
                replies, sent = await self._call_once(frames, len(requests), errors)
                if replies is not None:
                    return replies
                remaining = deadline - time.monotonic()
                if sent or remaining <= 0 or self.closed:
                    break
                await async_sleep(min(_RETRY_PAUSE, remaining))
        finally:
            self._gate.release()
        retried = f" (retried for {self.retry_for:g} s)" if self.retry_for and not sent else ""
        raise StoreUnavailable("no Disque node could be reached: " + "; ".join(errors) + retried)

    async def _call_once(
        self, frames: bytes, replies: int, errors: list[str]
    ) -> tuple[list[Reply] | None, bool]:
        """One round over the nodes: the replies, or None and whether a request was sent
        (its reply lost: it may have run, so the round is not repeated)."""
        sent = False
        for _ in range(len(self.nodes)):
            with self._lock:
                node = self.nodes[self.current]
            try:
                wire = await self._checkout(node)
            except OSError as exc:
                errors.append(f"{node[0]}:{node[1]}: {exc}")
                self._fail_over(node)
                continue
            try:
                answers = await wire.call(frames, replies)
            except OSError as exc:
                wire.close()
                self._drop_idle(node)
                errors.append(f"{node[0]}:{node[1]}: {exc}")
                self._fail_over(node)
                sent = True
                continue
            except BaseException:
                wire.close()  # a half-read reply: the connection is unusable
                raise
            self._checkin(node, wire)
            return answers, sent
        return None, sent

    def _fail_over(self, node: tuple[str, int]) -> None:
        with self._lock:
            if self.nodes[self.current] == node:
                self.current = (self.current + 1) % len(self.nodes)

    async def _checkout(self, node: tuple[str, int]) -> AsyncWire:
        now = time.monotonic()
        stale: list[AsyncWire] = []
        wire: AsyncWire | None = None
        with self._lock:
            idle = self._idle[node]
            while idle:
                candidate = idle.pop()
                if now - candidate.last_used > self.idle_timeout:
                    stale.append(candidate)
                else:
                    wire = candidate
                    break
        for old in stale:
            old.close()
        if wire is not None:
            return wire
        wire = await AsyncWire.open(node[0], node[1], self.connect_timeout)
        if self.password is not None:
            (reply,) = await wire.call(_frame("AUTH", self.password), 1)
            if isinstance(reply, hiredis.ReplyError):
                wire.close()
                raise StoreUnavailable(f"AUTH refused by {node[0]}:{node[1]}: {reply}")
        return wire

    def _checkin(self, node: tuple[str, int], wire: AsyncWire) -> None:
        with self._lock:
            idle = self._idle.get(node)
            if idle is not None and not self.closed and len(idle) < self.max_idle:
                idle.append(wire)
                return
        # Past max_idle (or closed): let it go. Closing a socket does not block.
        wire.close()

    def _drop_idle(self, node: tuple[str, int]) -> None:
        with self._lock:
            wires = list(self._idle[node])
            self._idle[node].clear()
        for wire in wires:
            wire.close()

    async def close(self) -> None:
        """Close every idle connection; later calls raise ``StoreUnavailable``."""
        self.closed = True
        for node in list(self._idle):
            self._drop_idle(node)


# -- the store -----------------------------------------------------------------------------


def _text(value: Reply) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pause_mode(reply: Reply) -> PauseMode:
    name = _text(reply)
    for mode in PAUSE_MODES:
        if mode == name:
            return mode
    raise ServerError(f"unexpected pause state {name!r}")


def _seconds(value: float) -> int:
    """Disque's whole seconds, never earlier than asked."""
    return math.ceil(value - 1e-9)


class AsyncDisqueStore(AsyncStore):
    """Jobs kept by Disque-protocol servers (see the module documentation)."""

    #: Disque's semantics where they differ from disquette's (see the module documentation).
    capabilities = AsyncStore.capabilities.replace(
        transactions=False,
        replication=True,
        node_registry=False,
        migrations=False,
        results=False,
        failures=False,
        lease_holders=False,
        recovers_stale=False,
        follows_clock=False,
        tracks_deliveries=False,
        priorities=False,
        leftmost_first=False,
        keeps_given_ids=False,
    )

    def __init__(self, url: str, clock: Clock, environ: dict[str, str] | None = None) -> None:
        nodes, params = parse_url(url, environ)
        self.url = (
            url.split("?")[0]
            if "@" not in url
            else "disque://" + ",".join(f"{host}:{port}" for host, port in nodes)
        )
        self.clock = clock
        self.wakeups = Wakeups()
        self.poll_interval = number(url, params, "poll_interval", 0.05, 0.001, 60)
        self.replicate_timeout = number(url, params, "replicate_timeout", 5, 0, 3600)
        self.cycle = int(number(url, params, "cycle", 0, 0, 1e9))
        self.max_replicas = 65534
        # ACKJOB, NACK and WORKING act by id; attempts are derived from Disque's counters,
        # which NACK moves too, so they cannot name a delivery.
        self.tracks_deliveries = False
        self.pool = AsyncPool(
            nodes,
            password=params.get("password"),
            max_idle=int(number(url, params, "max_idle", 8, 0, 10_000)),
            max_active=int(number(url, params, "max_active", 64, 1, 100_000)),
            idle_timeout=number(url, params, "idle_timeout", 300, 0, 86400 * 365),
            connect_timeout=number(url, params, "connect_timeout", 2, 0.001, 3600),
            retry_for=number(url, params, "retry_for", 10, 0, 3600),
        )
        #: Node id prefix -> counts of jobs received since the last cycle check.
        self._producers: collections.Counter[str] = collections.Counter()
        self._received = 0

    # -- plumbing ----------------------------------------------------------------------------

    async def _call(self, *args: str | bytes | int) -> Reply:
        (reply,) = await self.pool.call(args)
        if isinstance(reply, hiredis.ReplyError):
            raise self._error(reply)
        return reply

    def _error(
        self,
        reply: Exception,
        job_id: str = "",
        queue: str = "",
        *,
        max_len: int = 0,
        replicate: int = 0,
    ) -> Exception:
        """The typed error for an error reply (see :func:`disquette.disque.error_for`)."""
        text = str(reply)
        error = error_for(text, job_id=job_id, queue=queue, max_len=max_len, replicate=replicate)
        return ServerError(text) if error is None else error

    # -- producing ---------------------------------------------------------------------------

    async def add(
        self,
        jobs: Sequence[Job],
        max_len: int | None,
        *,
        connection: object = None,
        replicate: int = 0,
    ) -> None:
        """ADDJOB each job (pipelined); on a refusal, delete those added and raise."""
        if connection is not None:
            raise InvalidOption("connection", connection, "the disque store has no transactions")
        timeout_ms = int(self.replicate_timeout * 1000)
        requests = []
        for job in jobs:
            ttl = (
                FOREVER
                if job.expires_at is None
                else max(1, _seconds(job.expires_at - job.created_at))
            )
            delay = max(0, _seconds(job.run_at - job.created_at))
            retry = _seconds(job.retry_after)
            request: list[str | bytes | int] = [
                "ADDJOB",
                job.queue,
                encode_body(job),
                timeout_ms,
                "TTL",
                ttl,
                "RETRY",
                retry,
            ]
            if delay:
                request += ["DELAY", min(delay, ttl - 1)]
            if replicate > 0:
                request += ["REPLICATE", replicate + 1]
            elif retry == 0:
                request += ["REPLICATE", 1]  # Disque requires it for at-most-once jobs
            if max_len is not None:
                request += ["MAXLEN", max_len]
            requests.append(tuple(request))
        replies = await self.pool.call(*requests)
        refusal: Exception | None = None
        added = []
        for job, reply in zip(jobs, replies, strict=True):
            if isinstance(reply, hiredis.ReplyError):
                if refusal is None:
                    refusal = self._error(
                        reply, queue=job.queue, max_len=max_len or 0, replicate=replicate
                    )
                continue
            added.append(_text(reply))
            job.id = _text(reply)
        if refusal is not None:
            if added:
                await self._call("DELJOB", *added)  # all or none, as every store
            raise refusal
        self.wakeups.notify({job.queue for job in jobs})

    # -- consuming ---------------------------------------------------------------------------

    async def claim(
        self, queues: Sequence[str], count: int, *, holder: str | None = None
    ) -> list[Job]:
        """GETJOB NOHANG COUNT n WITHCOUNTERS FROM queues (``holder`` is not recorded)."""
        reply = await self._call(
            "GETJOB", "NOHANG", "COUNT", count, "WITHCOUNTERS", "FROM", *queues
        )
        if not reply:
            return []
        now = self.clock.now()
        jobs = []
        for item in reply:
            queue, job_id, body = _text(item[0]), _text(item[1]), item[2]
            counters = dict(zip(map(_text, item[3::2]), item[4::2], strict=False))
            nacks = int(counters.get("nacks", 0))
            more = int(counters.get("additional-deliveries", 0))
            job = Job(job_id, queue, b"", state=JobState.ACTIVE, created_at=now, run_at=now)
            decode_body(job, body)
            job.nacks, job.additional_deliveries = nacks, more
            job.attempts = 1 + nacks + more
            job.retry_after = 0.0
            jobs.append(job)
        # The id's last hex digit is odd when the job can be redelivered. Its RETRY (and so
        # its lease) is only in SHOW: one more round trip, all SHOWs pipelined.
        leased = [job for job in jobs if id_is_leased(job.id)]
        if leased:
            shows = await self.pool.call(*[("SHOW", job.id) for job in leased])
            for job, shown in zip(leased, shows, strict=True):
                if not isinstance(shown, list):  # deleted meanwhile, or an error
                    continue
                fields = show_fields(shown)
                job.retry_after = float(fields.get("retry") or 0)
                requeue = fields.get("next-requeue-within")
                if job.retry_after and isinstance(requeue, int):
                    job.lease_until = now + requeue / 1000
        if self.cycle:
            await self._maybe_cycle(jobs)
        return jobs

    async def _maybe_cycle(self, jobs: list[Job]) -> None:
        """Move toward the node that produced most of the jobs we received (the "cycle" of
        Disque clients: its queues are local there, so GETJOB needs no federation)."""
        self._producers.update(id_node_prefix(job.id) for job in jobs)
        self._received += len(jobs)
        if self._received < self.cycle:
            return
        ((prefix, _),) = self._producers.most_common(1)
        self._producers.clear()
        self._received = 0
        reply = await self._call("HELLO")
        me = _text(reply[1])
        if me.startswith(prefix):
            return
        for entry in reply[2:]:
            node_id, host, port = _text(entry[0]), _text(entry[1]), int(_text(entry[2]))
            if node_id.startswith(prefix) and host:
                self.pool.move_to((host, port))
                return

    async def ack(
        self,
        job_ids: Sequence[str],
        results: Sequence[EncodedResult] | None = None,
        *,
        connection: object = None,
        attempts: Sequence[int | None] | None = None,
    ) -> list[str]:
        """ACKJOB: the server deletes the jobs (``results`` are not kept, see the module);
        by id (``attempts`` are not checked).

        One ACKJOB per id, pipelined: ACKJOB answers a count, and the caller needs to know
        which ids were acked.
        """
        if connection is not None:
            raise InvalidOption("connection", connection, "the disque store has no transactions")
        done = await self._per_id("ACKJOB", job_ids)
        if done:
            self.wakeups.notify([DONE_CHANNEL])
        return done

    async def _per_id(self, command: str, job_ids: Sequence[str]) -> list[str]:
        """One ``command`` per id, pipelined; the ids it counted (answered 1 for)."""
        replies = await self.pool.call(*[(command, job_id) for job_id in job_ids])
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                raise self._error(reply)
        return [job_id for job_id, reply in zip(job_ids, replies, strict=True) if reply]

    async def _requeue(self, command: str, job_ids: Sequence[str]) -> dict[str, str]:
        """``command`` (NACK, ENQUEUE) one id at a time, each followed by a SHOW, all
        pipelined in one round trip: the ids it counted, each with its queue (Disque's
        replies name neither)."""
        replies = await self.pool.call(
            *[(name, job_id) for job_id in job_ids for name in (command, "SHOW")]
        )
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                raise self._error(reply)
        return {
            job_id: show_fields(shown)["queue"].decode()
            for job_id, counted, shown in zip(job_ids, replies[::2], replies[1::2], strict=True)
            if counted and shown is not None
        }

    async def nack(
        self, job_ids: Sequence[str], *, attempts: Sequence[int | None] | None = None
    ) -> dict[str, str]:
        """NACK, one per id (pipelined) to know which were put back; by id."""
        return await self._requeue("NACK", job_ids)

    async def fail(
        self, job_id: str, error: str, retry_at: float | None, *, attempt: int | None = None
    ) -> bool:
        """Disque keeps no errors: the job stays leased and comes back after its RETRY."""
        job = await self.show(job_id)
        return job is not None and job.state is JobState.ACTIVE

    async def working(self, job_id: str, *, attempt: int | None = None) -> float | None:
        """WORKING (by id): the server postpones the next delivery by the job's RETRY."""
        try:
            seconds = int(await self._call("WORKING", job_id))
        except ServerError as exc:
            raise InvalidState(job_id, "unknown", f"working ({exc.reply})") from None
        except JobNotFound:
            raise JobNotFound(job_id) from None
        return self.clock.now() + seconds if seconds else None

    # -- inspecting --------------------------------------------------------------------------

    def _job_from_show(self, reply: Reply) -> Job:
        job = parse_show(reply, self.clock.now())
        return decode_body(job, job.raw_body)

    async def show(self, job_id: str) -> Job | None:
        """SHOW."""
        reply = await self._call("SHOW", job_id)
        return None if reply is None else self._job_from_show(reply)

    async def delete(self, job_ids: Sequence[str]) -> int:
        """DELJOB."""
        return int(await self._call("DELJOB", *job_ids))

    async def qlen(self, queue: str) -> int:
        """QLEN."""
        return int(await self._call("QLEN", queue))

    async def peek(self, queue: str, count: int) -> list[Job]:
        """QPEEK, oldest first."""
        now = self.clock.now()
        jobs = []
        for item in await self._call("QPEEK", queue, count):
            job = Job(_text(item[1]), _text(item[0]), b"", created_at=now, run_at=now)
            jobs.append(decode_body(job, item[2]))
        return jobs

    async def failed(self, queue: str | None, limit: int) -> list[Job]:
        """Disque has no failed state: always empty."""
        return []

    async def retry(self, job_id: str) -> None:
        """No job is ever failed here: ``JobNotFound`` or ``InvalidState``."""
        job = await self.show(job_id)
        if job is None:
            raise JobNotFound(job_id)
        raise InvalidState(job_id, job.state.value, "retry")

    async def pause(self, queue: str, paused: bool) -> None:
        """PAUSE, keeping the ``in`` half."""
        bits = PAUSE_MODES.index(await self.pause_mode(queue))
        await self.set_pause(queue, PAUSE_MODES[(bits | 2) if paused else (bits & 1)])

    async def set_pause(self, queue: str, mode: PauseMode) -> None:
        """PAUSE queue mode."""
        await self._call("PAUSE", queue, mode)

    async def pause_mode(self, queue: str) -> PauseMode:
        """PAUSE queue state."""
        return _pause_mode(await self._call("PAUSE", queue, "state"))

    async def _all_jobs(self) -> list[Job]:
        reply = await self._call("JSCAN", "BUSYLOOP", "REPLY", "all")
        return [self._job_from_show(item) for item in reply[1]]

    async def stats(self) -> Stats:
        """Counted from a full JSCAN (Disque has no such command): for small stores."""
        rows: dict[tuple[str, str | None], dict[str, Any]] = {}
        for job in await self._all_jobs():
            row = rows.setdefault((job.queue, job.type), collections.Counter())
            row[job.state.value] += 1
            if job.state is not JobState.DONE:
                oldest = row.get("oldest_run_at")
                row["oldest_run_at"] = job.run_at if oldest is None else min(oldest, job.run_at)
        paused = frozenset(
            info.name for info in await self.queues() if info.pause in ("out", "all")
        )
        return Stats(
            tuple(
                StatsRow(
                    queue,
                    job_type,
                    scheduled=counts["scheduled"],
                    queued=counts["queued"],
                    active=counts["active"],
                    done=counts["done"],
                    failed=counts["failed"],
                    oldest_run_at=counts.get("oldest_run_at"),
                )
                for (queue, job_type), counts in sorted(
                    rows.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")
                )
            ),
            paused,
        )

    async def recover_stale(self, max_age: float | None) -> int:
        """The server requeues lapsed leases itself; nothing to do from a client."""
        return 0

    async def release_leases(self, holder: str) -> int:
        """Refused: a Disque server knows no holders (it requeues after RETRY)."""
        raise NotSupported(
            "disque", "release a holder's leases", "Disque servers record no lease holders"
        )

    # -- Disque's administrative commands ------------------------------------------------

    async def enqueue(self, job_ids: Sequence[str]) -> dict[str, str]:
        """ENQUEUE, one per id (pipelined) to know which were queued again."""
        return await self._requeue("ENQUEUE", job_ids)

    async def dequeue(self, job_ids: Sequence[str]) -> int:
        """DEQUEUE."""
        return int(await self._call("DEQUEUE", *job_ids))

    async def scan(
        self,
        cursor: int,
        count: int,
        *,
        queue: str | None = None,
        states: Collection[JobState] | None = None,
    ) -> tuple[int, list[Job]]:
        """JSCAN cursor COUNT n [QUEUE q] [STATE s]... REPLY all."""
        request: list[str | bytes | int] = ["JSCAN", cursor, "COUNT", count]
        if queue is not None:
            request += ["QUEUE", queue]
        if states is not None:
            for name in sorted({STATE_NAMES[JobState(state)] for state in states}):
                request += ["STATE", name]
            if not states:
                return 0, []
        request += ["REPLY", "all"]
        reply = await self._call(*request)
        jobs = [self._job_from_show(item) for item in reply[1]]
        if states is not None:
            jobs = [job for job in jobs if job.state in states]
        return int(reply[0]), jobs

    async def queues(self) -> list[QueueInfo]:
        """QSCAN BUSYLOOP, then QLEN and PAUSE state of each queue."""
        reply = await self._call("QSCAN", "BUSYLOOP")
        names = sorted(_text(name) for name in reply[1])
        if not names:
            return []
        requests: list[tuple[str | bytes | int, ...]] = []
        for name in names:
            requests += [("QLEN", name), ("PAUSE", name, "state")]
        replies = await self.pool.call(*requests)
        infos = []
        for index, name in enumerate(names):
            length, mode = replies[2 * index], replies[2 * index + 1]
            if isinstance(length, hiredis.ReplyError) or isinstance(mode, hiredis.ReplyError):
                continue
            pause = _pause_mode(mode)
            infos.append(QueueInfo(name, int(length), pause))
        return infos

    async def flush(self) -> None:
        """DEBUG FLUSHALL."""
        await self._call("DEBUG", "FLUSHALL")

    async def register_node(self, node_id: str, address: str, ttl: float) -> None:
        """Refused: a Disque server registers itself (HELLO lists it); clients cannot."""
        raise NotSupported("disque", "register a node", "Disque servers register themselves")

    async def unregister_node(self, node_id: str) -> None:
        """Refused: see :meth:`register_node`."""
        raise NotSupported("disque", "unregister a node", "Disque servers register themselves")

    async def nodes(self) -> list[NodeInfo]:
        """The nodes HELLO lists (Disque keeps its own registry: no expiry is known)."""
        reply = await self._call("HELLO")
        infos = []
        for entry in reply[2:]:
            host = _text(entry[1]) or self.pool.nodes[self.pool.current][0]
            infos.append(NodeInfo(_text(entry[0]), f"{host}:{_text(entry[2])}", math.inf))
        return sorted(infos, key=lambda info: info.id)

    async def close(self) -> None:
        """Close the pooled connections."""
        await self.pool.close()


def open_url(url: str, clock: Clock) -> AsyncDisqueStore:
    """Open a ``disque://`` store (see the module documentation for the URL forms)."""
    return AsyncDisqueStore(url, clock)
