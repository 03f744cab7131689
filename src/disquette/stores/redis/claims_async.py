"""The Redis store's claims: the plain claim script call, and the blocked claim (a
``BZPOPMIN`` on the queues' markers and the claim script written at once on a connection
of its own, with its watchdog).

This file is the asyncio source (redis-py's ``redis.asyncio``); ``claims.py`` beside it is
generated from it by ``scripts/unasync.py``. The store's module doc (``store_async.py``)
describes the wake-ups these claims serve; ``claim.lua`` the script.

A blocked claim writes ``BZPOPMIN <markers> <block>`` then ``EVALSHA claim``: Redis runs
the queued claim the moment the pop returns, so the job comes back in the wake-up's round
trip. The connection's socket timeout is the longest block plus ``BLOCK_MARGIN``: a reply
that does not come by then drops the connection (the watchdog: a connection a reconnect
left blocked would never answer), and the claim is sent again through the retrying path
with the same receipt, which returns what the first one leased if it ran.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

import redis.asyncio
import redis.asyncio.retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..._concurrency import AsyncLock, async_ensure_cluster_ready
from ...clock import SystemClock
from ...errors import ClientClosed
from ...job import Job
from .codec import claimed_jobs
from .held import AsyncHeldCommands
from .runner_async import AsyncScriptRunner
from .scripts import SCRIPTS
from .timers import DueTimers
from .tokens import CLAIM_TOKENS
from .url import open_client

#: How long a blocked get's stamp lives (ms; see claim.lua): longer than any block.
STAMP_MS: Final = 600_000
#: Seconds a claim receipt outlives the retry window (``retry_for``) it serves.
RECEIPT_SLACK: Final = 5
#: Sets of queues whose next due time a store remembers for its blocked gets.
DUE_CACHE_SIZE: Final = 10_000
#: How much longer than its BZPOPMIN timeout a blocked get waits for the reply before it
#: drops the connection (the watchdog: a connection left blocked on a server that lost it
#: in a reconnect would otherwise never answer).
BLOCK_MARGIN: Final = 2.0


class AsyncClaims:
    """A store's claims: by one script call, or blocked on the queues' markers."""

    def __init__(self, runner: AsyncScriptRunner, timers: DueTimers) -> None:
        self.runner = runner
        self.timers = timers
        settings = runner.settings
        self.poll_interval = settings.poll_interval
        # A claim's receipt serves the retries of that call: it lives as long as they may.
        self.receipt_ttl = math.ceil(settings.retry_for) + RECEIPT_SLACK
        # A blocked claim runs when its BZPOPMIN returns: on the real clock, the time the
        # block took is added to the now it was sent with (see claim.lua); a test's manual
        # clock stands still instead.
        self._stamped = isinstance(runner.clock, SystemClock)
        #: False once the server refused the blocked get's commands (an ACL, a proxy):
        #: blocked gets wait on the store's wake-ups instead.
        self.can_block = True
        #: The next due time (store clock) of each set of queues a claim found empty.
        self._next_due: dict[tuple[str, ...], float | None] = {}
        #: Blocked gets' client (one connection each while blocked; the sync flavour holds
        #: one per thread, see held.py), made on first use.
        self._blocking: AsyncHeldCommands | None = None
        self._opening = AsyncLock()

    async def claim(
        self, queues: Sequence[str], count: int, *, holder: str | None = None
    ) -> list[Job]:
        """Lease ready jobs, one script call per call the queues need (see ``per_call``)."""
        claimed: list[Job] = []
        for names in self.runner.per_call(queues):
            args = self._claim_args(names, count, holder, stamped=False)
            rows = await self.runner.run("claim", self._claim_keys(names, args[0]), args)
            jobs = self._claimed(names, rows)
            claimed += jobs
            count -= len(jobs)
            if count <= 0:
                break
        return claimed

    async def claim_blocking(
        self,
        queues: Sequence[str],
        count: int,
        timeout: float | None,
        *,
        holder: str | None = None,
    ) -> list[Job] | None:
        """Claim, blocking on the queues' markers for up to ``timeout`` seconds (at most
        ``poll_interval``, and never past the next due time of the queues); see
        :meth:`AsyncStore.claim_blocking`.

        One write on a connection of its own: ``BZPOPMIN <markers> <block>`` then the claim
        script, which Redis runs the moment the pop returns, so the job comes back in the
        wake-up's round trip. One marker wakes one blocked get; the claim sets it again
        while jobs remain. A marker is a hint: the claim runs after a timeout too (the
        poll), so a lost marker delays a job by ``poll_interval`` at most. On a Cluster a
        get over one queue blocks on its primary; over several it returns None and the
        client waits on the wake-ups scripts publish there (one BZPOPMIN cannot wait on
        keys of several slots).
        """
        names = list(queues)
        if not self.can_block or (self.runner.cluster and len(names) > 1):
            return None
        block = self.poll_interval if timeout is None else min(timeout, self.poll_interval)
        due = self._next_due.get(tuple(names))
        if due is not None:
            block = min(block, due - self.runner.clock.now())
        if block < 0.001:  # BZPOPMIN 0 would block for ever: just claim
            return await self.claim(names, count, holder=holder)
        args = self._claim_args(names, count, holder, stamped=self._stamped)
        keys = self._claim_keys(names, args[0])
        commands: list[tuple[Any, ...]] = []
        if self._stamped:
            commands.append(("SET", keys[1], "", "PX", STAMP_MS))
        markers = [self.runner.queue_key(name, "w") for name in names]
        commands.append(("BZPOPMIN", *markers, round(block, 3)))
        commands.append(("EVALSHA", SCRIPTS["claim"].sha, 2, *keys, *self.runner.script_argv(args)))
        try:
            replies = await self._blocking_pipeline(commands)
            refused = [reply for reply in replies if isinstance(reply, Exception)]
            if refused:
                raise refused[-1]
        except (NoScriptError, RedisConnectionError, RedisTimeoutError, OSError):
            # The watchdog fired, the connection dropped, or the script was not loaded: the
            # same call through the retrying path (its receipt returns what it leased).
            return await self._claim_again(names, keys, args)
        except RedisError:
            self.can_block = False  # refused for good: a loop of failing blocks would spin
            return await self._claim_again(names, keys, args)
        removed, rows = replies[-1]
        if removed:
            await self.runner.forget(removed)
        return self._claimed(names, rows)

    async def _blocking_pipeline(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Commands written at once on a connection of their own, for a blocking command
        followed by what must run the moment it returns (on a Cluster, every key of them in
        one slot: the commands go to its primary together). Not retried: a reply missing
        ``BLOCK_MARGIN`` seconds past ``poll_interval`` (the longest block) drops the
        connection and raises (the caller falls back to a call that is retried)."""
        if self.runner.closed:
            raise ClientClosed("the Redis store is closed")
        if self._blocking is None:
            async with self._opening:
                if self._blocking is None:
                    self._blocking = AsyncHeldCommands(await self._blocking_client())
        return await self._blocking.execute_many(commands)

    async def _blocking_client(self) -> redis.asyncio.Redis | redis.asyncio.RedisCluster:
        settings = self.runner.settings
        kwargs: dict[str, Any] = {
            "retry": redis.asyncio.retry.Retry(NoBackoff(), 0),
            "socket_timeout": settings.poll_interval + BLOCK_MARGIN,
        }
        if not self.runner.cluster:
            plain: redis.asyncio.Redis = open_client(settings, redis.asyncio, **kwargs)
            return plain
        client = redis.asyncio.RedisCluster.from_url(settings.redis_url, **kwargs)
        await async_ensure_cluster_ready(client)
        return client

    async def _claim_again(
        self, names: Sequence[str], keys: Sequence[str], args: list[Any]
    ) -> list[Job]:
        """A blocked claim whose reply did not come, sent again through the retrying path:
        its receipt returns what it leased, if it ran."""
        args[4] = ""  # no stamp: this claim runs now
        return self._claimed(names, await self.runner.run("claim", keys, args))

    def _claim_args(
        self, names: Sequence[str], count: int, holder: str | None, *, stamped: bool
    ) -> list[Any]:
        """claim.lua's arguments (see its header); the receipt comes first."""
        return [
            CLAIM_TOKENS.next(),
            count,
            holder or "",
            self.receipt_ttl,
            "1" if stamped else "",
            *names,
        ]

    def _claim_keys(self, names: Sequence[str], receipt: str) -> list[str]:
        """claim.lua's keys: the first queue's ready set, and the key of the call's token
        (a blocked get's stamp, then the receipt of what the call leased)."""
        return [
            self.runner.queue_key(names[0], "r"),
            self.runner.queue_key(names[0], "t:" + receipt),
        ]

    def _claimed(self, names: Sequence[str], rows: list[Any]) -> list[Job]:
        """The jobs a claim leased; when none, note when the queues' next job is due."""
        if len(rows) <= 1:  # nothing leased: when the next job of these queues is due
            due = float(rows[0]) if rows else None
            if len(self._next_due) >= DUE_CACHE_SIZE:
                self._next_due.clear()
            self._next_due[tuple(names)] = due
            if due is not None:
                self.timers.wake_when_due(names, due)
            return []
        jobs = claimed_jobs(rows, names)
        if self.runner.cluster:
            for job in jobs:
                self.runner.remember(job.id, job.queue)
        return jobs

    async def aclose(self) -> None:
        """Close the blocked gets' connection."""
        if self._blocking is not None:
            await self._blocking.aclose()
