"""How the Redis store's calls reach Redis: one client (or Cluster client), every call
retried while Redis is away, scripts run by SHA, and job ids routed to their queue's
primary on a Cluster. Single commands go through ``held.py`` (the sync flavour holds a
pool connection per thread for them).

This file is the asyncio source (redis-py's ``redis.asyncio``); ``runner.py`` beside it is
generated from it by ``scripts/unasync.py``.

Redis Cluster: a job id is mapped to its queue by a string key ``<prefix>id:<id>`` (plus a
local cache of ``LOOKUP_CACHE_SIZE`` entries), which costs one extra round trip for an id
this client has not seen. A call on several queues is one script call per queue there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

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

from ..._concurrency import AsyncLock, async_ensure_cluster_ready, async_sleep
from ...clock import Clock
from ...errors import ClientClosed, StoreError, StoreRefused, StoreUnavailable
from .codec import queue_base
from .held import AsyncHeldCommands
from .listener import is_transient, retried
from .scripts import SCRIPTS
from .url import Settings, open_client

#: How many id -> queue entries a Cluster store remembers locally.
LOOKUP_CACHE_SIZE: Final = 100_000


class AsyncScriptRunner:
    """Commands and scripts on one Redis (or Cluster), retried while it is away."""

    def __init__(self, settings: Settings, clock: Clock, *, cluster: bool) -> None:
        self.settings = settings
        self.url = settings.url
        self.clock = clock
        self.cluster = cluster
        self.prefix = settings.prefix
        #: Set when the store closes: calls raise ClientClosed, retries in flight stop.
        self.closed = False
        self._flag = "1" if cluster else ""
        self._queues_key = self.prefix + "queues"
        self._known_queues: set[str] = set()
        #: Registered queues' ready-set keys (``ready_key``).
        self._ready_keys: dict[str, str] = {}
        self._lookup_cache: dict[str, str] = {}
        kwargs: dict[str, Any] = {"retry": redis.asyncio.retry.Retry(NoBackoff(), 0)}
        self._conn: redis.asyncio.Redis | redis.asyncio.RedisCluster
        if cluster:
            self._conn = redis.asyncio.RedisCluster.from_url(settings.redis_url, **kwargs)
        else:
            self._conn = open_client(settings, redis.asyncio, **kwargs)
        #: Single commands go here (the sync flavour holds a connection per thread).
        self._commands = AsyncHeldCommands(self._conn)
        # A Cluster's first call discovers the slots alone (see async_ensure_cluster_ready).
        self._discovered = not cluster
        self._discovering = AsyncLock()

    def queue_key(self, queue: str, kind: str) -> str:
        """One of a queue's keys (``r`` ready, ``s`` scheduled... see ``common.lua``)."""
        return queue_base(self.prefix, queue) + kind

    def job_key(self, job_id: str, queue: str | None) -> str:
        """Where a job's hash lives: beside its queue's keys on a Cluster."""
        if self.cluster:
            assert queue is not None
            return queue_base(self.prefix, queue) + "j:" + job_id
        return self.prefix + "j:" + job_id

    async def _retrying(self, call: Callable[..., Any], *args: Any) -> Any:
        """Run ``call(*args)`` again while Redis is unreachable, loading or failing over, for
        up to ``retry_for`` seconds; then raise :class:`StoreUnavailable`. (Arguments, not a
        closure: one fewer function made and called per call of a one-by-one add.)

        Every script is safe to repeat: an add skips ids it already stored, a claim names
        itself with a receipt so that its retry returns the jobs it leased, acks and
        deletes repeat harmlessly. (A repeated nack or fail by id may, rarely, hit the job's
        next lease: a redelivery, which at-least-once allows; one that names its delivery
        cannot.)
        """
        if self.closed:
            raise ClientClosed("the Redis store is closed")
        if not self._discovered:
            await self._discover()
        started: float | None = None
        pause = 0.0
        while True:
            try:
                return await call(*args)
            except NoScriptError:
                raise  # for run, which sends the script itself
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
                if now - started >= self.settings.retry_for or self.closed:
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
        return await self._retrying(self._commands.execute, *args)

    async def pipeline(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Commands sent together on one connection (not a transaction), retried as one."""
        result: list[Any] = await self._retrying(self._pipelined, commands)
        return result

    async def _pipelined(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        pipe = self._conn.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)  # type: ignore[no-untyped-call,unused-ignore]
        result: list[Any] = await pipe.execute()
        return result

    def script_argv(self, args: Sequence[Any], now: float | str | None = None) -> list[Any]:
        """A script's ARGV: the calling convention of ``common.lua``, then ``args``;
        ``now`` the clock's, unless given (a time read already, or its text)."""
        return [self.prefix, self._flag, self.clock.now() if now is None else now, *args]

    async def call(
        self, name: str, keys: Sequence[str], args: Sequence[Any], now: float | str | None = None
    ) -> Any:
        """Run a script by SHA (loading it again after a SCRIPT FLUSH or a restart); its
        reply as is (``add1.lua``'s integer: see :meth:`run` for the others). ``now``: see
        :meth:`script_argv`."""
        script = SCRIPTS[name]
        numkeys_keys_argv = (len(keys), *keys, *self.script_argv(args, now))  # for both tries
        execute = self._commands.execute
        try:
            return await self._retrying(execute, "EVALSHA", script.sha, *numkeys_keys_argv)
        except NoScriptError:
            # EVAL caches the script on the node that runs it, so later calls find it.
            return await self._retrying(execute, "EVAL", script.text, *numkeys_keys_argv)

    async def run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a script that ends with ``finish`` (``common.lua``): its result, once the
        ids it deleted are forgotten."""
        removed, result = await self.call(name, keys, args)
        if removed:
            await self.forget(removed)
        return result

    async def forget(self, removed: Sequence[bytes]) -> None:
        """On a Cluster, drop the id -> queue lookups of deleted jobs."""
        ids = [job_id.decode() for job_id in removed]
        for job_id in ids:
            self._lookup_cache.pop(job_id, None)
        await self.pipeline([("DEL", self.prefix + "id:" + job_id) for job_id in ids])

    def forget_all(self) -> None:
        """Drop the local id -> queue cache (after a flush)."""
        self._lookup_cache.clear()

    async def register(self, queues: Iterable[str]) -> None:
        """Record queue names in ``<prefix>queues``, for ``stats`` and ``recover_stale``."""
        if self._known_queues.issuperset(queues):
            return  # the usual case, checked without a Python loop (every add asks)
        new = [queue for queue in queues if queue not in self._known_queues]
        if new:
            await self.command("SADD", self._queues_key, *new)
            self._known_queues.update(new)

    async def ready_key(self, queue: str) -> str:
        """A queue's ready-set key, the queue registered (:meth:`register`): the one-by-one
        add's two steps for a queue, from one dict lookup once it is known."""
        key = self._ready_keys.get(queue)
        if key is None:
            await self.register((queue,))
            key = self._ready_keys[queue] = self.queue_key(queue, "r")
        return key

    async def all_queues(self) -> list[str]:
        """Every queue registered, sorted."""
        members = await self.command("SMEMBERS", self._queues_key)
        return sorted(member.decode() for member in members)

    def remember(self, job_id: str, queue: str) -> None:
        """Cache a job's queue (a Cluster store's lookup of ids)."""
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
            found = await self.pipeline([("GET", self.prefix + "id:" + i) for i in unknown])
            for job_id, queue in zip(unknown, found, strict=True):
                if queue is not None:
                    self.remember(job_id, queue.decode())
        for job_id in job_ids:
            queue = self._lookup_cache.get(job_id)
            if queue is not None:
                groups.setdefault(queue, []).append(job_id)
        return groups

    async def queues_of(self, job_ids: Sequence[str]) -> dict[str, str]:
        """The queue of each of these jobs a Cluster holds (its id lookup)."""
        return {
            job_id: queue
            for queue, ids in (await self._locate(job_ids)).items()
            if queue is not None
            for job_id in ids
        }

    async def run_by_id(
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
            results.append(await self.run(name, keys, call_args))
        return results

    def per_call(self, queues: Sequence[str]) -> list[list[str]]:
        """Queues one script call may touch: all on one server, one each on a Cluster."""
        return [[queue] for queue in queues] if self.cluster else [list(queues)]

    async def aclose(self) -> None:
        """Close the connections; later calls raise :class:`ClientClosed`."""
        self.closed = True
        await self._conn.aclose()
