"""The Redis store: every multi-key step is one Lua script, so a job moves between states
atomically on one server and on a Redis Cluster alike.

This file is the asyncio source (redis-py's ``redis.asyncio``); ``disquette/_sync/stores/
redis.py`` is generated from it by ``scripts/unasync.py``. The scripts live in
``disquette/stores/redis/*.lua``; ``common.lua`` documents the key layout.

URL: ``redis://[[user]:password@]host[:port][/db][?options]`` (``rediss://`` for TLS), with
redis-py's own options plus:

===================  ==========================================================
``prefix``           key prefix, default ``disquette`` (no ``{`` or ``}``)
``poll_interval``    seconds between re-checks of a blocked ``get`` (default 1): only
                     delays and lapsed leases need it, adds wake waiters at once
``retry_for``        seconds to retry a call, opening the store included, while Redis
                     is unreachable or loading (default 10; 0 tries once), then
                     :class:`~disquette.errors.StoreUnavailable`
``replicate_timeout``  seconds ``WAIT`` waits for replicas (default 1)
``cluster``          ``auto`` (default: ask the server), ``yes`` or ``no``
===================  ==========================================================

Wake-ups: a script publishes ``<prefix>w:<queue>`` when a queue's ready set goes from
empty to not empty, and ``<prefix>done`` when jobs finish. One listener thread per store
subscribes to the channels its blocked callers wait on and calls ``wakeups.notify``. A
message only says "look again": the job stays in Redis until a claim takes it, so a client
that dies between the wake-up and the claim loses nothing.

A blocked ``get`` also looks again when the next delay or lease of its queues runs out
(a timer armed by the claim that found nothing), so ``poll_interval`` is only a safety net.

Redis Cluster: each queue's keys share the hash tag ``{<queue>}``, so every script runs
on the one primary that owns the queue, and queues spread over the primaries. Job hashes
live beside their queue's keys; a job id is mapped to its queue by a string key
``<prefix>id:<id>`` (plus a local cache), which costs one extra round trip for an id the
client has not seen, and about 90 bytes per job. A ``get`` over several queues is one
script call per queue there (left to right), not one atomic call. ``replicate`` is
refused on a Cluster.

Memory: a queued no-op job (16-byte body, default options) costs about 375 bytes of
``used_memory`` on one server (measured over 1M jobs with ``bench/bench_redis.py
--memory``; ``tests/stores/test_redis.py`` holds it under 400): its hash (about 200) and
its entry in the ready set (about 165). A done job keeps its hash for ``result_ttl``
(default one hour) plus an entry in the expiry set.

Restarts: a call that meets a dropped connection, a loading or read-only server is
retried for ``retry_for`` seconds, then raises :class:`~disquette.errors.StoreUnavailable`
(``retryable``); so does opening the store, which asks the server what it is (a worker
may start before its Redis). A server that refuses us (failed authentication, a database
index it does not have) raises :class:`~disquette.errors.StoreRefused` at once, and other
error replies :class:`~disquette.errors.StoreError`. Retries are safe: an add skips ids it
already stored (done jobs included, until their ``result_ttl``), and a claim names itself,
so a retried claim whose reply was lost returns the jobs it leased. Scripts are
loaded again after a restart or a ``SCRIPT FLUSH``. With ``appendfsync always`` nothing
that ``add`` acknowledged is lost by a crash.

Replication: ``add(..., replicate=N)`` first checks that the primary has N replicas
connected, then adds the jobs *held* (stored, deliverable by nobody), runs ``WAIT N`` on
the same connection, and releases them; when fewer replicas acknowledged within
``replicate_timeout`` it deletes them and raises :class:`~disquette.errors.NotReplicated`,
so that, as in Disque, a refused add adds nothing. ``WAIT`` proves that N replicas
*received* the write; it does not make Redis strongly consistent: a failover may still
promote a replica that missed it, and a replica that acknowledged may lose it if it
restarts without persistence.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import struct
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from importlib import resources
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio
import redis.asyncio.retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    NoScriptError,
    RedisClusterException,
    RedisError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)

from ... import defaults
from ..._concurrency import AsyncLock, async_ensure_cluster_ready, async_sleep
from ...clock import Clock
from ...errors import (
    ClientClosed,
    InvalidState,
    InvalidURL,
    JobNotFound,
    LeaseLost,
    NotReplicated,
    QueueFull,
    QueuePaused,
    StoreError,
    StoreRefused,
    StoreUnavailable,
)
from ...job import Encoding, Job, JobState, Stats, StatsRow
from .._url import number
from ..store_async import AsyncStore
from ..types import (
    HOLDER_GONE,
    PAUSE_MODES,
    PAUSE_OUT,
    EncodedResult,
    NodeInfo,
    PauseMode,
    QueueInfo,
    pause_bits,
    refuse_store_powers,
)
from .listener import RedisWakeups, WakeupListener, is_transient, probe, retried

SCRIPT_NAMES: Final = (
    "add",
    "claim",
    "ack",
    "nack",
    "fail",
    "working",
    "show",
    "delete",
    "qlen",
    "peek",
    "failed",
    "retry",
    "pause",
    "recover",
    "stats",
    "release",
    "enqueue",
    "dequeue",
    "queues",
    "flush",
    "scan",
    "release_holder",
)
#: Fields of a job hash, in the order the reading scripts return them after the id.
FIELDS: Final = (
    "q", "m", "t", "st", "r", "n", "k", "ad", "ec", "le", "lu", "res", "re", "fa", "sq", "nx",
)  # fmt: skip
ROW_WIDTH: Final = len(FIELDS) + 1
#: A claimed job: queue index, id, m t r n k ad ec le lu nx (see claim.lua).
CLAIM_ROW_WIDTH: Final = 12
#: Values a job hash leaves out (``DEFAULTS`` in ``common.lua``), so that a job with the
#: usual options costs fewer bytes.
DEFAULT_PRIORITY: Final = defaults.PRIORITY
DEFAULT_RETRY_AFTER: Final = defaults.RETRY_AFTER
DEFAULT_MAX_ATTEMPTS: Final = defaults.MAX_ATTEMPTS
DEFAULT_RESULT_TTL: Final = defaults.RESULT_TTL
_STATE_LETTERS: Final = {
    JobState.SCHEDULED: "s",
    JobState.QUEUED: "q",
    JobState.ACTIVE: "a",
    JobState.DONE: "d",
    JobState.FAILED: "f",
}
_STATES: Final = {
    b"s": JobState.SCHEDULED,
    b"q": JobState.QUEUED,
    b"a": JobState.ACTIVE,
    b"d": JobState.DONE,
    b"f": JobState.FAILED,
}
#: Jobs read by ``stats`` per script call: bounds how long one call holds Redis.
STATS_CHUNK: Final = 2000
#: Longest wait (s) for which a blocked ``get`` is woken when a delay or lease runs out;
#: later ones are found by the poll.
MAX_TIMER: Final = 3600.0
#: How many id -> queue entries a Cluster store remembers locally.
LOOKUP_CACHE_SIZE: Final = 100_000


@dataclasses.dataclass(frozen=True)
class Script:
    """One Lua script: the shared prelude plus the operation, and its SHA1 for EVALSHA."""

    name: str
    text: str
    sha: str


def load_scripts() -> dict[str, Script]:
    """Read the scripts shipped in ``disquette/stores/redis/``."""
    folder = resources.files(__package__).joinpath("lua")
    common = folder.joinpath("common.lua").read_text()
    scripts = {}
    for name in SCRIPT_NAMES:
        text = common + "\n" + folder.joinpath(f"{name}.lua").read_text()
        sha = hashlib.sha1(text.encode()).hexdigest()
        scripts[name] = Script(name, text, sha)
    return scripts


SCRIPTS: Final = load_scripts()


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a ``redis://`` URL says, split into redis-py's part and ours."""

    url: str
    redis_url: str
    prefix: str
    poll_interval: float
    retry_for: float
    replicate_timeout: float
    cluster: bool | None


def parse_url(url: str) -> Settings:
    """Split a store URL into redis-py's URL and the store's own options."""
    try:
        parts = urlsplit(url)
        params = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError as exc:
        raise InvalidURL(url, str(exc)) from None
    ours = {"prefix", "poll_interval", "retry_for", "replicate_timeout", "cluster"}
    options = {key: value for key, value in params if key in ours}
    rest = [(key, value) for key, value in params if key not in ours]
    redis_url = urlunsplit(parts._replace(query=urlencode(rest)))
    prefix = options.get("prefix", "disquette")
    if not prefix or "{" in prefix or "}" in prefix:
        raise InvalidURL(url, "prefix is a non-empty string without { or }")
    poll_interval = number(url, options, "poll_interval", 1, 0.001, 60)
    retry_for = number(url, options, "retry_for", 10, 0, 3600)
    replicate_timeout = number(url, options, "replicate_timeout", 1, 0.001, 3600)
    cluster_option = options.get("cluster", "auto").lower()
    if cluster_option not in ("auto", "yes", "no"):
        raise InvalidURL(url, "cluster is auto, yes or no")
    cluster = None if cluster_option == "auto" else cluster_option == "yes"
    safe_url = url
    if parts.password:
        safe_url = urlunsplit(parts._replace(netloc=parts.netloc.replace(parts.password, "***")))
    return Settings(
        url=safe_url,
        redis_url=redis_url,
        prefix=prefix + ":",
        poll_interval=poll_interval,
        retry_for=retry_for,
        replicate_timeout=replicate_timeout,
        cluster=cluster,
    )


def _pairs(replies: list[Any]) -> dict[str, str]:
    """id -> queue from scripts' replies of ids and queues in turn (nack, enqueue)."""
    return {
        job_id.decode(): queue.decode()
        for reply in replies
        for job_id, queue in zip(reply[::2], reply[1::2], strict=True)
    }


def queue_base(prefix: str, queue: str) -> str:
    """The common start of a queue's keys: ``<prefix>{<queue>}:``, the tag that keeps them
    in one Cluster slot (``%`` and ``}`` escaped, as ``common.lua`` does)."""
    return prefix + "{" + queue.replace("%", "%25").replace("}", "%7D") + "}:"


_HEAD: Final = struct.Struct(">BBd")
_INT: Final = struct.Struct(">i")
_FLOAT: Final = struct.Struct(">d")
# Which optional values follow the head of a packed record (in this order).
_HAS_PRIORITY, _HAS_RETRY_AFTER, _HAS_EXPIRES_AT, _HAS_MAX_ATTEMPTS, _HAS_RESULT_TTL = (
    1, 2, 4, 8, 16,
)  # fmt: skip


def pack_record(job: Job) -> bytes:
    """What never changes in a job, as the ``m`` field: flags, encoding, created_at, the
    options that differ from the defaults, then the body."""
    flags = 0
    tail = []
    if job.priority != DEFAULT_PRIORITY:
        flags |= _HAS_PRIORITY
        tail.append(_INT.pack(job.priority))
    if job.retry_after != DEFAULT_RETRY_AFTER:
        flags |= _HAS_RETRY_AFTER
        tail.append(_FLOAT.pack(job.retry_after))
    if job.expires_at is not None:
        flags |= _HAS_EXPIRES_AT
        tail.append(_FLOAT.pack(job.expires_at))
    if job.max_attempts != DEFAULT_MAX_ATTEMPTS:
        flags |= _HAS_MAX_ATTEMPTS
        tail.append(_INT.pack(job.max_attempts))
    if job.result_ttl != DEFAULT_RESULT_TTL:
        flags |= _HAS_RESULT_TTL
        tail.append(_FLOAT.pack(job.result_ttl))
    return _HEAD.pack(flags, int(job.encoding), job.created_at) + b"".join(tail) + job.raw_body


_ENCODINGS: Final = tuple(Encoding)  # by value: faster than Encoding(value)
#: An unpacked ``m`` field: encoding, created_at, priority, retry_after, expires_at,
#: max_attempts, result_ttl, body.
Record = tuple[Encoding, float, int, float, float | None, int, float, bytes]


def unpack_record(data: bytes) -> Record:
    """Invert :func:`pack_record`."""
    flags, encoding, created_at = _HEAD.unpack_from(data)
    at = _HEAD.size
    if not flags:  # the usual job: default options, no TTL
        return (
            _ENCODINGS[encoding], created_at, DEFAULT_PRIORITY, DEFAULT_RETRY_AFTER, None,
            DEFAULT_MAX_ATTEMPTS, DEFAULT_RESULT_TTL, data[at:],
        )  # fmt: skip
    priority, retry_after, expires_at = DEFAULT_PRIORITY, DEFAULT_RETRY_AFTER, None
    max_attempts, result_ttl = DEFAULT_MAX_ATTEMPTS, DEFAULT_RESULT_TTL
    if flags & _HAS_PRIORITY:
        (priority,) = _INT.unpack_from(data, at)
        at += 4
    if flags & _HAS_RETRY_AFTER:
        (retry_after,) = _FLOAT.unpack_from(data, at)
        at += 8
    if flags & _HAS_EXPIRES_AT:
        (expires_at,) = _FLOAT.unpack_from(data, at)
        at += 8
    if flags & _HAS_MAX_ATTEMPTS:
        (max_attempts,) = _INT.unpack_from(data, at)
        at += 4
    if flags & _HAS_RESULT_TTL:
        (result_ttl,) = _FLOAT.unpack_from(data, at)
        at += 8
    return (
        _ENCODINGS[encoding], created_at, priority, retry_after, expires_at, max_attempts,
        result_ttl, data[at:],
    )  # fmt: skip


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def _float(value: bytes | None) -> float | None:
    return None if value is None else float(value)


def row_to_job(row: Sequence[Any], at: int = 0) -> Job | None:
    """The job in ``row[at:at + ROW_WIDTH]`` (id, then FIELDS), or None if it is missing."""
    (
        job_id, queue, packed, type_, state, run_at, attempts, nacks, additional_deliveries,
        error_count, last_error, lease_until, result, result_encoding, finished_at, _seq,
        no_expiry,
    ) = row[at : at + ROW_WIDTH]  # fmt: skip
    if queue is None:
        return None
    encoding, created_at, priority, retry_after, ttl_expiry, max_attempts, result_ttl, body = (
        unpack_record(packed)
    )
    job_state = _STATES[state]
    if job_state is JobState.DONE:
        expires_at = float(finished_at) + result_ttl
    elif job_state is JobState.FAILED or no_expiry is not None:
        expires_at = None
    else:
        expires_at = ttl_expiry
    return Job(
        id=job_id.decode(),
        queue=queue.decode(),
        raw_body=body,
        encoding=encoding,
        type=_text(type_),
        priority=priority,
        state=job_state,
        created_at=created_at,
        run_at=float(run_at),
        retry_after=retry_after,
        expires_at=expires_at,
        max_attempts=max_attempts,
        result_ttl=result_ttl,
        attempts=int(attempts or 0),
        nacks=int(nacks or 0),
        additional_deliveries=int(additional_deliveries or 0),
        error_count=int(error_count or 0),
        last_error=_text(last_error),
        # Kept in the hash after the lease ends; +inf marks an at-most-once lease.
        lease_until=(
            float(lease_until)
            if job_state is JobState.ACTIVE and lease_until not in (None, b"+inf")
            else None
        ),
        raw_result=result,
        result_encoding=_ENCODINGS[int(result_encoding or 0)],
        finished_at=_float(finished_at),
    )


def rows_to_jobs(rows: Sequence[Any]) -> list[Job]:
    """Every job present in a flat list of rows."""
    jobs = []
    for at in range(0, len(rows), ROW_WIDTH):
        job = row_to_job(rows, at)
        if job is not None:
            jobs.append(job)
    return jobs


def claimed_jobs(rows: Sequence[Any], queues: Sequence[str]) -> list[Job]:
    """The jobs of claim.lua's reply (rows of CLAIM_ROW_WIDTH). The hot path of a worker:
    positional ``Job`` arguments, in the dataclass's field order."""
    jobs = []
    active = JobState.ACTIVE
    for at in range(0, len(rows), CLAIM_ROW_WIDTH):
        (
            index, job_id, packed, type_, run_at, attempts, nacks, additional_deliveries,
            error_count, last_error, lease_until, no_expiry,
        ) = rows[at : at + CLAIM_ROW_WIDTH]  # fmt: skip
        encoding, created_at, priority, retry_after, expires_at, max_attempts, result_ttl, body = (
            unpack_record(packed)
        )
        jobs.append(
            Job(
                job_id.decode(),
                queues[index - 1],
                body,
                encoding,
                None if type_ is None else type_.decode(),
                priority,
                active,
                created_at,
                float(run_at),
                retry_after,
                None if no_expiry is not None else expires_at,
                max_attempts,
                result_ttl,
                int(attempts),  # a number, or text when a retried claim reads it back
                int(nacks) if nacks else 0,
                int(additional_deliveries) if additional_deliveries else 0,
                int(error_count) if error_count else 0,
                None if last_error is None else last_error.decode(),
                None if lease_until == b"+inf" else float(lease_until),
            )
        )
    return jobs


class AsyncRedisStore(AsyncStore):
    """Jobs in Redis hashes and sorted sets, moved by Lua scripts; see the module doc."""

    #: No transactions to join; WAIT for replicas (``max_replicas`` is 0 on a Cluster).
    capabilities = AsyncStore.capabilities.replace(
        transactions=False, replication=True, node_registry=True, migrations=False
    )

    def __init__(
        self, settings: Settings, clock: Clock, *, cluster: bool = False, replicas: int = 0
    ) -> None:
        self.url = settings.url
        self.clock = clock
        self.settings = settings
        self.poll_interval = settings.poll_interval
        self.cluster = cluster
        # WAIT needs the write and the WAIT on one connection to one primary; on a Cluster
        # the write's node is only known to redis-py's router, so replication is refused.
        self.max_replicas = 0 if cluster else replicas
        self.prefix = settings.prefix
        self._flag = "1" if cluster else ""
        self._queues_key = self.prefix + "queues"
        self._nodes_key = self.prefix + "nodes"
        self._known_queues: set[str] = set()
        self._lookup_cache: dict[str, str] = {}
        self._timers: dict[tuple[str, ...], tuple[float, threading.Timer]] = {}
        self._timers_lock = threading.Lock()
        self._closed = False
        kwargs: dict[str, Any] = {"retry": redis.asyncio.retry.Retry(NoBackoff(), 0)}
        self._conn: redis.asyncio.Redis | redis.asyncio.RedisCluster
        if cluster:
            self._conn = redis.asyncio.RedisCluster.from_url(settings.redis_url, **kwargs)
        else:
            self._conn = redis.asyncio.Redis.from_url(settings.redis_url, **kwargs)
        # A Cluster's first call discovers the slots alone (see async_ensure_cluster_ready).
        self._discovered = not cluster
        self._discovering = AsyncLock()
        self.wakeups: RedisWakeups = RedisWakeups(
            lambda: WakeupListener(settings.redis_url, self.prefix, self.wakeups)
        )

    # -- plumbing --------------------------------------------------------------------------

    def queue_key(self, queue: str, kind: str) -> str:
        """One of a queue's keys (``r`` ready, ``s`` scheduled... see ``common.lua``)."""
        return queue_base(self.prefix, queue) + kind

    def job_key(self, job_id: str, queue: str | None) -> str:
        """Where a job's hash lives: beside its queue's keys on a Cluster."""
        if self.cluster:
            assert queue is not None
            return queue_base(self.prefix, queue) + "j:" + job_id
        return self.prefix + "j:" + job_id

    async def _retrying(self, call: Callable[[], Any]) -> Any:
        """Run ``call`` again while Redis is unreachable, loading or failing over, for up to
        ``retry_for`` seconds; then raise :class:`StoreUnavailable`.

        Every script is safe to repeat: an add skips ids it already stored, a claim names
        itself with a receipt so that its retry returns the jobs it leased, acks and
        deletes repeat harmlessly. (A repeated nack or fail by id may, rarely, hit the job's
        next lease: a redelivery, which at-least-once allows; one that names its delivery
        cannot.)
        """
        if self._closed:
            raise ClientClosed("the Redis store is closed")
        if not self._discovered:
            await self._discover()
        started: float | None = None
        pause = 0.0
        while True:
            try:
                return await call()
            except NoScriptError:
                raise  # for _run, which sends the script itself
            except AuthenticationError as exc:
                raise StoreRefused(f"Redis at {self.url}: {exc}") from exc
            except (RedisError, RedisClusterException) as exc:
                if not is_transient(exc):
                    if isinstance(exc, RedisClusterException | RedisConnectionError):
                        raise StoreUnavailable(f"Redis at {self.url}: {exc}") from exc
                    raise StoreError("Redis", f"{self.url}: {exc}") from exc
                now = time.monotonic()
                if started is None:
                    started = now
                if now - started >= self.settings.retry_for or self._closed:
                    raise StoreUnavailable(
                        f"Redis at {self.url}: {exc}{retried(self.settings)}"
                    ) from exc
            await async_sleep(pause)
            pause = min(max(pause * 2, 0.02), 0.5)

    async def _discover(self) -> None:
        async with self._discovering:
            if not self._discovered:
                await async_ensure_cluster_ready(self._conn)
            self._discovered = True

    async def command(self, *args: Any) -> Any:
        """One Redis command, retried while Redis is away."""
        call = self._conn.execute_command
        return await self._retrying(lambda: call(*args))  # type: ignore[no-untyped-call,unused-ignore]

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a script by SHA (loading it again after a SCRIPT FLUSH or a restart)."""
        script = SCRIPTS[name]
        argv = [self.prefix, self._flag, self.clock.now(), *args]
        try:
            reply = await self.command("EVALSHA", script.sha, len(keys), *keys, *argv)
        except NoScriptError:
            # EVAL caches the script on the node that runs it, so later calls find it.
            reply = await self.command("EVAL", script.text, len(keys), *keys, *argv)
        removed, result = reply
        if removed:
            await self._forget(removed)
        return result

    async def _forget(self, removed: Sequence[bytes]) -> None:
        """On a Cluster, drop the id -> queue lookups of deleted jobs."""
        ids = [job_id.decode() for job_id in removed]
        for job_id in ids:
            self._lookup_cache.pop(job_id, None)
        keys = [self.prefix + "id:" + job_id for job_id in ids]
        await self._retrying(lambda: self._pipelined([("DEL", key) for key in keys]))

    async def _pipelined(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        pipe = self._conn.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)  # type: ignore[no-untyped-call,unused-ignore]
        result: list[Any] = await pipe.execute()
        return result

    async def _register(self, queues: Iterable[str]) -> None:
        """Record queue names in ``<prefix>queues``, for ``stats`` and ``recover_stale``."""
        new = [queue for queue in queues if queue not in self._known_queues]
        if new:
            await self.command("SADD", self._queues_key, *new)
            self._known_queues.update(new)

    async def _all_queues(self) -> list[str]:
        members = await self.command("SMEMBERS", self._queues_key)
        return sorted(member.decode() for member in members)

    def _remember(self, job_id: str, queue: str) -> None:
        if len(self._lookup_cache) >= LOOKUP_CACHE_SIZE:
            self._lookup_cache.clear()
        self._lookup_cache[job_id] = queue

    async def _locate(self, job_ids: Sequence[str]) -> dict[str | None, list[str]]:
        """Group job ids by queue (on one server, all under ``None``: no lookup needed)."""
        if not self.cluster:
            return {None: list(job_ids)}
        groups: dict[str | None, list[str]] = {}
        unknown = [job_id for job_id in job_ids if job_id not in self._lookup_cache]
        if unknown:
            found = await self._retrying(
                lambda: self._pipelined([("GET", self.prefix + "id:" + i) for i in unknown])
            )
            for job_id, queue in zip(unknown, found, strict=True):
                if queue is not None:
                    self._remember(job_id, queue.decode())
        for job_id in job_ids:
            queue = self._lookup_cache.get(job_id)
            if queue is not None:
                groups.setdefault(queue, []).append(job_id)
        return groups

    async def _run_by_id(
        self,
        name: str,
        job_ids: Sequence[str],
        args: Sequence[Any] | Callable[[Sequence[str]], Sequence[Any]],
    ) -> list[Any]:
        """Run a script on jobs by id: once on one server, once per queue on a Cluster.

        ``args``: the script's arguments, or a function of the ids of one call (for
        arguments per job, in the order of its keys).
        """
        results = []
        for queue, ids in (await self._locate(job_ids)).items():
            keys = [self.job_key(job_id, queue) for job_id in ids]
            call_args = args(ids) if callable(args) else args
            results.append(await self._run(name, keys, call_args))
        return results

    def _per_call(self, queues: Sequence[str]) -> list[list[str]]:
        """Queues one script call may touch: all on one server, one each on a Cluster."""
        return [[queue] for queue in queues] if self.cluster else [list(queues)]

    # -- the interface ---------------------------------------------------------------------

    async def add(
        self,
        jobs: Sequence[Job],
        max_len: int | None,
        *,
        connection: object = None,
        replicate: int = 0,
    ) -> None:
        """Insert jobs; see :meth:`AsyncStore.add`. With ``replicate``, also wait until that
        many replicas received them (``WAIT``), else raise :class:`NotReplicated`."""
        refuse_store_powers("redis", connection, 0)
        if replicate and self.cluster:
            raise NotReplicated(replicate, 0, "redis cluster")
        groups: dict[str, list[Job]] = {}
        for job in jobs:
            groups.setdefault(job.queue, []).append(job)
        await self._register(groups)
        head = ["" if max_len is None else max_len]
        if not self.cluster:
            argv: list[Any] = [*head, "", "1" if replicate else ""]
            for queue, members in groups.items():
                argv += [queue, len(members)]
                for job in members:
                    argv += _job_args(job)
            first = self.queue_key(next(iter(groups)), "r")
            if replicate:
                await self._add_replicated(first, argv, jobs, replicate, max_len)
                return
            _check_add(await self._run("add", [first], argv), max_len)
            return
        seq = int(await self.command("INCRBY", self.prefix + "seq", len(jobs))) - len(jobs)
        for queue, members in groups.items():
            lookups = [("SET", self.prefix + "id:" + job.id, queue) for job in members]
            await self._retrying(functools.partial(self._pipelined, lookups))
            for job in members:
                self._remember(job.id, queue)
            argv = [*head, seq, "", queue, len(members)]
            for job in members:
                argv += _job_args(job)
            seq += len(members)
            reply = await self._run("add", [self.queue_key(queue, "r")], argv)
            if reply[0] != b"ok":
                await self._forget([job.id.encode() for job in members])
                _check_add(reply, max_len)

    async def _add_replicated(
        self, key: str, argv: list[Any], jobs: Sequence[Job], replicate: int, max_len: int | None
    ) -> None:
        """Add held jobs (deliverable by nobody), ``WAIT`` for the replicas on the same
        connection (WAIT counts that connection's writes), then release the jobs, or delete
        them and raise :class:`NotReplicated`: as in Disque, a refused add adds nothing."""
        info = await self.command("INFO", "replication")  # parsed into a dict by redis-py
        available = int(info.get("connected_slaves", 0))
        if available < replicate:
            raise NotReplicated(replicate, available, "redis")
        script = SCRIPTS["add"]
        full_argv = [self.prefix, self._flag, self.clock.now(), *argv]
        timeout_ms = max(1, int(self.settings.replicate_timeout * 1000))
        commands = [("EVAL", script.text, 1, key, *full_argv), ("WAIT", replicate, timeout_ms)]
        (_removed, reply), acknowledged = await self._retrying(lambda: self._pipelined(commands))
        _check_add(reply, max_len)
        ids = [job.id for job in jobs]
        if int(acknowledged) < replicate:
            await self._run_by_id("delete", ids, [])
            raise NotReplicated(replicate, int(acknowledged), "redis")
        await self._run_by_id("release", ids, [])

    async def claim(
        self, queues: Sequence[str], count: int, *, holder: str | None = None
    ) -> list[Job]:
        """Lease ready jobs; see :meth:`AsyncStore.claim`."""
        claimed: list[Job] = []
        for names in self._per_call(queues):
            receipt = os.urandom(8).hex()
            key = self.queue_key(names[0], "r")
            rows = await self._run("claim", [key], [receipt, count, holder or "", *names])
            if len(rows) == 1:  # nothing leased: when the next job of these queues is due
                self._wake_when_due(names, float(rows[0]))
                continue
            jobs = claimed_jobs(rows, names)
            if self.cluster:
                for job in jobs:
                    self._remember(job.id, job.queue)
            claimed += jobs
            count -= len(jobs)
            if count <= 0:
                break
        return claimed

    def _wake_when_due(self, queues: list[str], due: float) -> None:
        """Notify ``queues`` when a delay or a lease runs out, so that a blocked ``get``
        does not wait for its poll: nothing publishes those."""
        delay = due - self.clock.now()
        key = tuple(queues)
        with self._timers_lock:
            if not 0 < delay <= MAX_TIMER or self._closed:
                return
            pending = self._timers.get(key)
            if pending is not None and pending[0] <= due:
                return
            # Plus a little: the claim must see the clock at or after the due time.
            timer = threading.Timer(delay + 0.001, self._timer_fired, (key, due))
            timer.daemon = True
            self._timers[key] = (due, timer)
        timer.start()

    def _timer_fired(self, key: tuple[str, ...], due: float) -> None:
        with self._timers_lock:
            pending = self._timers.get(key)
            if pending is not None and pending[0] == due:
                del self._timers[key]
        self.wakeups.notify(key)

    async def ack(
        self,
        job_ids: Sequence[str],
        results: Sequence[EncodedResult] | None = None,
        *,
        connection: object = None,
        attempts: Sequence[int | None] | None = None,
    ) -> list[str]:
        """Mark jobs done; see :meth:`AsyncStore.ack`."""
        refuse_store_powers("redis", connection, 0)
        by_id: dict[str, EncodedResult] | None = None
        if results is not None:
            by_id = {}
            for job_id, result in zip(job_ids, results, strict=True):
                by_id.setdefault(job_id, result)  # an id given twice keeps its first result
        deliveries = _deliveries(job_ids, attempts)

        def args_for(ids: Sequence[str]) -> list[Any]:
            flat: list[Any] = ["" if by_id is None else "1", "" if deliveries is None else "1"]
            if by_id is None and deliveries is None:
                return flat
            for job_id in ids:
                if deliveries is not None:
                    flat.append(deliveries[job_id])
                if by_id is not None:
                    raw, encoding = by_id[job_id]
                    flat += ["" if raw is None else "1", raw or b"", int(encoding)]
            return flat

        acked = await self._run_by_id("ack", job_ids, args_for)
        return [job_id.decode() for done in acked for job_id in done]

    async def nack(
        self, job_ids: Sequence[str], *, attempts: Sequence[int | None] | None = None
    ) -> dict[str, str]:
        """Requeue active jobs; see :meth:`AsyncStore.nack`."""
        deliveries = _deliveries(job_ids, attempts)

        def args_for(ids: Sequence[str]) -> list[Any]:
            if deliveries is None:
                return [""]
            return ["1", *(deliveries[job_id] for job_id in ids)]

        return _pairs(await self._run_by_id("nack", job_ids, args_for))

    async def fail(
        self, job_id: str, error: str, retry_at: float | None, *, attempt: int | None = None
    ) -> bool:
        """Record an error; see :meth:`AsyncStore.fail`."""
        args = [error, "" if retry_at is None else retry_at, "" if attempt is None else attempt]
        return any(int(n) for n in await self._run_by_id("fail", [job_id], args))

    async def _single(self, name: str, job_id: str, args: Sequence[Any] = ()) -> list[Any]:
        results = await self._run_by_id(name, [job_id], args)
        if not results or results[0][0] == b"missing":
            raise JobNotFound(job_id)
        reply: list[Any] = results[0]
        return reply

    async def working(self, job_id: str, *, attempt: int | None = None) -> float | None:
        """Extend a lease; see :meth:`AsyncStore.working`."""
        reply = await self._single("working", job_id, ["" if attempt is None else attempt])
        if reply[0] == b"lost":
            assert attempt is not None
            raise LeaseLost(job_id, "working", attempt, int(reply[1]), _STATES[reply[2]])
        if reply[0] == b"state":
            raise InvalidState(job_id, _STATES[reply[1]], "extend the lease of")
        return None if reply[0] == b"none" else float(reply[1])

    async def show(self, job_id: str) -> Job | None:
        """Return the job; see :meth:`AsyncStore.show`."""
        results = await self._run_by_id("show", [job_id], [])
        return row_to_job(results[0]) if results else None

    async def delete(self, job_ids: Sequence[str]) -> int:
        """Delete jobs; see :meth:`AsyncStore.delete`."""
        return sum(int(n) for n in await self._run_by_id("delete", job_ids, []))

    async def qlen(self, queue: str) -> int:
        """Count ready jobs; see :meth:`AsyncStore.qlen`."""
        return int(await self._run("qlen", [self.queue_key(queue, "r")], [queue]))

    async def peek(self, queue: str, count: int) -> list[Job]:
        """The next ready jobs; see :meth:`AsyncStore.peek`."""
        return rows_to_jobs(await self._run("peek", [self.queue_key(queue, "r")], [queue, count]))

    async def failed(self, queue: str | None, limit: int) -> list[Job]:
        """Failed jobs; see :meth:`AsyncStore.failed`."""
        queues = [queue] if queue is not None else await self._all_queues()
        found: list[tuple[float, int, Job]] = []
        for names in self._per_call(queues) if queues else []:
            rows = await self._run("failed", [self.queue_key(names[0], "f")], [limit, *names])
            for at in range(0, len(rows), ROW_WIDTH):
                job = row_to_job(rows, at)
                if job is not None:
                    found.append((job.finished_at or 0.0, int(rows[at + ROW_WIDTH - 1]), job))
        found.sort(key=lambda entry: entry[:2])
        return [job for _, _, job in found[:limit]]

    async def retry(self, job_id: str) -> None:
        """Make a failed job ready; see :meth:`AsyncStore.retry`."""
        reply = await self._single("retry", job_id)
        if reply[0] == b"state":
            raise InvalidState(job_id, _STATES[reply[1]], "retry")

    async def pause(self, queue: str, paused: bool) -> None:
        """Pause or resume delivery; see :meth:`AsyncStore.pause`."""
        await self._register([queue])
        await self._run("pause", [self.queue_key(queue, "p")], [queue, "out", int(paused)])

    async def set_pause(self, queue: str, mode: PauseMode) -> None:
        """Set a queue's pause mode; see :meth:`AsyncStore.set_pause`."""
        await self._register([queue])
        bits = pause_bits(mode)
        await self._run("pause", [self.queue_key(queue, "p")], [queue, "set", bits])

    async def pause_mode(self, queue: str) -> PauseMode:
        """A queue's pause mode; see :meth:`AsyncStore.pause_mode`."""
        bits = await self.command("GET", self.queue_key(queue, "p"))
        return PAUSE_MODES[int(bits or 0)]

    async def enqueue(self, job_ids: Sequence[str]) -> dict[str, str]:
        """Make jobs ready now; see :meth:`AsyncStore.enqueue`."""
        return _pairs(await self._run_by_id("enqueue", job_ids, []))

    async def dequeue(self, job_ids: Sequence[str]) -> int:
        """Take ready jobs out of their queue; see :meth:`AsyncStore.dequeue`."""
        return sum(int(n) for n in await self._run_by_id("dequeue", job_ids, []))

    async def scan(
        self,
        cursor: int,
        count: int,
        *,
        queue: str | None = None,
        states: Collection[JobState] | None = None,
    ) -> tuple[int, list[Job]]:
        """Walk jobs in enqueue order; see :meth:`AsyncStore.scan`.

        Cursors are enqueue sequence numbers; each call reads every job of the queues it
        walks (a walk is for administration, not a hot path).
        """
        queues = [queue] if queue is not None else await self._all_queues()
        letters = "" if states is None else "".join(_STATE_LETTERS[state] for state in states)
        if states is not None and not letters:
            return 0, []
        found: list[tuple[int, Job]] = []
        for names in self._per_call(queues) if queues else []:
            key = self.queue_key(names[0], "r")
            rows = await self._run("scan", [key], [count, cursor, letters, *names])
            for at in range(0, len(rows), ROW_WIDTH + 1):
                job = row_to_job(rows, at)
                if job is not None:
                    found.append((int(rows[at + ROW_WIDTH]), job))
        found.sort(key=lambda entry: entry[0])
        page = found[:count]
        next_cursor = page[-1][0] + 1 if len(found) >= count else 0
        return next_cursor, [job for _, job in page]

    async def queues(self) -> list[QueueInfo]:
        """Queues with jobs or a pause mode; see :meth:`AsyncStore.queues`."""
        infos = []
        queues = await self._all_queues()
        for names in self._per_call(queues) if queues else []:
            reply = await self._run("queues", [self.queue_key(names[0], "r")], names)
            for at in range(0, len(reply), 4):
                name, queued, bits, live = reply[at : at + 4]
                if int(live) or int(bits):
                    infos.append(QueueInfo(name.decode(), int(queued), PAUSE_MODES[int(bits)]))
        return sorted(infos, key=lambda info: info.name)

    async def flush(self) -> None:
        """Delete every job and pause mode; see :meth:`AsyncStore.flush`.

        Big queues are emptied in chunks of ``STATS_CHUNK`` jobs per script call."""
        for queue in await self._all_queues():
            while int(await self._run("flush", [self.queue_key(queue, "r")], [queue, STATS_CHUNK])):
                pass
        # The queue registry stays: other clients cache what they registered, and queues()
        # only lists queues that hold jobs or a pause mode.
        self._lookup_cache.clear()

    async def register_node(self, node_id: str, address: str, ttl: float) -> None:
        """Register or renew a node; see :meth:`AsyncStore.register_node`."""
        expires_at = repr(self.clock.now() + ttl)
        await self.command("HSET", self._nodes_key, node_id, f"{expires_at} {address}")

    async def unregister_node(self, node_id: str) -> None:
        """Remove a node; see :meth:`AsyncStore.unregister_node`."""
        await self.command("HDEL", self._nodes_key, node_id)

    async def nodes(self) -> list[NodeInfo]:
        """Live nodes; see :meth:`AsyncStore.nodes`."""
        now = self.clock.now()
        registered = await self.command("HGETALL", self._nodes_key)
        live, lapsed = [], []
        for node_id, value in registered.items():
            expires_at, _, address = value.decode().partition(" ")
            if float(expires_at) > now:
                live.append(NodeInfo(node_id.decode(), address, float(expires_at)))
            else:
                lapsed.append(node_id)
        if lapsed:
            await self.command("HDEL", self._nodes_key, *lapsed)
        return sorted(live, key=lambda node: node.id)

    async def stats(self) -> Stats:
        """Counts per queue and type; see :meth:`AsyncStore.stats`.

        A queue is read in chunks of ``STATS_CHUNK`` jobs, one script call each, so the
        figures of a big queue are not one atomic snapshot.
        """
        rows: list[StatsRow] = []
        paused: set[str] = set()
        for queue in await self._all_queues():
            merged: dict[str | None, list[Any]] = {}
            position = [1, 0]
            while position[0]:
                reply = await self._run(
                    "stats", [self.queue_key(queue, "r")], [queue, *position, STATS_CHUNK]
                )
                if int(reply[0]) & PAUSE_OUT:
                    paused.add(queue)
                position = [int(reply[1]), int(reply[2])]
                for at in range(3, len(reply), 8):
                    type_, *counts, max_errors, oldest = reply[at : at + 8]
                    name = _text(type_)
                    row = merged.setdefault(name, [0, 0, 0, 0, 0, 0, None])
                    for column, value in enumerate(counts):
                        row[column] += int(value)
                    row[5] = max(row[5], int(max_errors))
                    if oldest is not None and (row[6] is None or float(oldest) < row[6]):
                        row[6] = float(oldest)
            for name in sorted(merged, key=lambda name: name or ""):
                scheduled, queued, active, done, failed, max_errors, oldest = merged[name]
                rows.append(
                    StatsRow(
                        queue=queue,
                        type=name,
                        scheduled=scheduled,
                        queued=queued,
                        active=active,
                        done=done,
                        failed=failed,
                        max_error_count=max_errors,
                        oldest_run_at=oldest,
                    )
                )
        return Stats(rows=tuple(rows), paused=frozenset(paused))

    async def recover_stale(self, max_age: float | None) -> int:
        """Requeue jobs whose worker is gone; see :meth:`AsyncStore.recover_stale`."""
        before = "" if max_age is None else self.clock.now() - max_age
        recovered = 0
        queues = await self._all_queues()
        for names in self._per_call(queues) if queues else []:
            key = self.queue_key(names[0], "a")
            recovered += int(await self._run("recover", [key], [before, *names]))
        return recovered

    async def release_leases(self, holder: str) -> int:
        """Give back a dead holder's jobs; see :meth:`AsyncStore.release_leases`.

        Reads the active set of every queue (the jobs in flight, not the backlog), as
        :meth:`recover_stale` does: a lookup kept per holder would cost every claim and ack
        a write, for a call made when a process dies.
        """
        released = 0
        queues = await self._all_queues()
        for names in self._per_call(queues) if queues else []:
            key = self.queue_key(names[0], "a")
            released += int(await self._run("release_holder", [key], [holder, HOLDER_GONE, *names]))
        return released

    async def close(self) -> None:
        """Stop the wake-up listener and close the connections."""
        if self._closed:
            return
        self._closed = True
        with self._timers_lock:
            timers, self._timers = self._timers, {}
        for _, timer in timers.values():
            timer.cancel()
        self.wakeups.close()
        await self._conn.aclose()


def _deliveries(
    job_ids: Sequence[str], attempts: Sequence[int | None] | None
) -> dict[str, int | str] | None:
    """The callers' delivery of each id as a script argument ("" acts by id), or None when
    every id acts by id. An id given twice keeps its first delivery."""
    if attempts is None:
        return None
    deliveries: dict[str, int | str] = {}
    for job_id, attempt in zip(job_ids, attempts, strict=True):
        deliveries.setdefault(job_id, "" if attempt is None else attempt)
    return deliveries


def _check_add(reply: Sequence[Any], max_len: int | None) -> None:
    """Raise what add.lua refused the batch for."""
    if reply[0] == b"full":
        raise QueueFull(reply[1].decode(), max_len or 0)
    if reply[0] == b"paused":
        raise QueuePaused(reply[1].decode())


def _job_args(job: Job) -> tuple[Any, ...]:
    """A job's values in the order ``add.lua`` reads them: id, m, run_at, options."""
    flags = 0
    options = []
    if job.priority != DEFAULT_PRIORITY:
        flags |= 1
        options.append(_INT.pack(job.priority))
    if job.expires_at is not None:
        flags |= 2
        options.append(_FLOAT.pack(job.expires_at))
    if job.retry_after != DEFAULT_RETRY_AFTER:
        flags |= 4
        options.append(_FLOAT.pack(job.retry_after))
    if job.result_ttl != DEFAULT_RESULT_TTL:
        flags |= 8
        options.append(_FLOAT.pack(job.result_ttl))
    if flags or job.type is not None:
        packed = bytes((flags,)) + b"".join(options) + (job.type or "").encode()
    else:
        packed = b""
    return job.id, pack_record(job), job.run_at, packed


def open_url(url: str, clock: Clock) -> AsyncRedisStore:
    """Open the store a ``redis://`` or ``rediss://`` URL names (see the module doc)."""
    settings = parse_url(url)
    cluster, replicas = probe(settings)
    return AsyncRedisStore(settings, clock, cluster=cluster, replicas=replicas)
