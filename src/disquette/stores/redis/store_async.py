"""The Redis store: every multi-key step is one Lua script, so a job moves between states
atomically on one server and on a Redis Cluster alike.

This file is the asyncio source (redis-py's ``redis.asyncio``); ``store.py`` beside it is
generated from it by ``scripts/unasync.py``. The package's other modules hold the rest (see
its docstring): the URL (``url.py``, which lists the options), the scripts (``lua/``,
loaded by ``scripts.py``; ``common.lua`` documents the key layout), how jobs are spelled
(``codec.py``), how calls reach Redis (``runner_async.py``), and the wake-ups
(``listener.py``, ``timers.py``).

Wake-ups: a queue that gains ready jobs gets a *marker* (``<prefix>{<queue>}:w``, a
one-member sorted set; a hint, never the truth: the jobs stay in the queue's sets). A
blocked ``get`` writes ``BZPOPMIN <its queues' markers> <timeout>`` and the claim script
at once on a connection of its own (``claim_blocking``, in ``claims_async.py``): one add
wakes one blocked get, and Redis runs its queued claim the moment the pop returns, so the
job comes back in the wake-up's round trip. The claim sets the marker again while the
queue still holds ready jobs (the next blocked get wakes) and clears it when the queue is
empty. The block lasts ``poll_interval`` at most (then the claim runs anyway: the poll
that covers a lost marker), and never past the next delay or lease of its queues to run
out; a reply that does not come ``BLOCK_MARGIN`` seconds after that drops the connection,
and the claim is sent again through the retrying path with the same receipt (a watchdog:
a connection a reconnect left blocked would never answer). Callers that wait on
:attr:`wakeups` instead (a worker's fetcher) are woken by one thread per store blocked on
the markers of their queues (``listener.MarkerWatcher``): one process per add, not every
one; they also look again when the next delay or lease of their queues runs out
(``timers.py``). A ``wait()`` registers in the job it waits on (field ``w``), and only the
end of such a job is published, on ``<prefix>d:<id>``; ``<prefix>cancel`` announces cancel
requests. A wake-up only says "look again": the job stays in Redis until a claim takes it,
so a client that dies between the wake-up and the claim loses nothing.

Time-driven work is bounded: a script call moves at most 1,000 expired, due or lapsed
jobs, all its queues together (``TICK_LIMIT`` in ``common.lua``; each further queue still
moves one of each kind, so every queue makes progress), and leaves the marker set, so a
burst of a million due jobs is promoted over many short calls, even by claims over many
queues. A claim's receipt (which lets a
retried claim return the jobs it leased) lives ``retry_for`` plus a few seconds.

Redis Cluster: each queue's keys share the hash tag ``{<queue>}``, so every script runs
on the one primary that owns the queue, and queues spread over the primaries. Job hashes
live beside their queue's keys; a job id is mapped to its queue by a string key
``<prefix>id:<id>`` (plus a local cache), which costs one extra round trip for an id the
client has not seen, and about 90 bytes per job. A ``get`` over several queues is one
script call per queue there (left to right), not one atomic call. ``replicate`` is
refused on a Cluster, and so is a parent (``depends_on``) in another hash slot than its
child's queue (``InvalidOption``; see ``deps_async.py``). A blocked ``get`` of one queue
there blocks on its marker on the queue's primary; a ``get`` of several queues waits on
the wake-ups the scripts publish (``<prefix>w:<queue>`` when a queue's ready set goes
from empty to not empty), as one BZPOPMIN cannot wait on markers of several slots.

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

from collections.abc import Collection, Sequence
from typing import Any, Final

from ...clock import Clock
from ...errors import (
    InvalidState,
    JobCancelled,
    JobNotFound,
    LeaseLost,
    NotReplicated,
    QueuePaused,
    UniqueKeyTaken,
)
from ...job import Job, JobState, Stats
from ..limits import QueueLimits
from ..store_async import AsyncStore
from ..types import (
    HOLDER_GONE,
    PAUSE_MODES,
    EncodedResult,
    JobCount,
    JobFilter,
    JobPage,
    NodeInfo,
    PauseMode,
    QueueCounts,
    QueueInfo,
    Resolution,
    RollupRow,
    ScheduleInfo,
    WorkerInfo,
    pause_bits,
    refuse_store_powers,
)
from .admin_async import STATS_CHUNK, AsyncAdmin
from .claims_async import AsyncClaims
from .codec import (
    ROW_WIDTH,
    SEQ_AT,
    STATE_LETTERS,
    STATES,
    check_add,
    deliveries_of,
    id_queue_pairs,
    job_args,
    row_to_job,
    rows_to_jobs,
)
from .deps_async import Group, add_groups, cluster_parents, has_parents, slot_calls
from .listener import MarkerWatcher, RedisWakeups, WaiterRegistry, WakeupListener, probe
from .observe_async import AsyncObserve
from .runner_async import AsyncScriptRunner
from .scripts import SCRIPTS
from .timers import DueTimers
from .url import Settings, parse_url

#: Seconds beyond two replicate timeouts a replicated add's jobs stay held at most.
HOLD_MARGIN: Final = 10.0


class AsyncRedisStore(AsyncStore):
    """Jobs in Redis hashes and sorted sets, moved by Lua scripts; see the module doc."""

    #: No transactions to join; WAIT for replicas (``max_replicas`` is 0 on a Cluster).
    capabilities = AsyncStore.capabilities.replace(
        transactions=False,
        replication=True,
        node_registry=True,
        migrations=False,
        limits=True,
        dependencies=True,
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
        self.runner = AsyncScriptRunner(settings, clock, cluster=cluster)
        self._admin = AsyncAdmin(self.runner, self.prefix, clock)
        self._observe = AsyncObserve(self.runner, self.prefix, clock)
        self._waiters = WaiterRegistry(settings.redis_url, self.prefix, cluster=cluster)
        self.wakeups: RedisWakeups = RedisWakeups(
            lambda: WakeupListener(settings.redis_url, self.prefix, self.wakeups),
            # A Cluster publishes wake-ups instead: markers of several slots cannot be
            # waited on by one BZPOPMIN.
            None
            if cluster
            else lambda: MarkerWatcher(
                settings.redis_url, self.prefix, self.wakeups, self.poll_interval
            ),
            self._waiters,
        )
        self.timers = DueTimers(clock, self.wakeups.notify)
        #: The claims, plain and blocked on the queues' markers (``claims_async.py``).
        self.claims = AsyncClaims(self.runner, self.timers)

    # -- the interface ---------------------------------------------------------------------

    async def add(
        self,
        jobs: Sequence[Job],
        max_len: int | None,
        *,
        connection: object = None,
        replicate: int = 0,
    ) -> dict[str, str]:
        """Insert jobs; see :meth:`AsyncStore.add`. With ``replicate``, also wait until that
        many replicas received them (``WAIT``), else raise :class:`NotReplicated`."""
        refuse_store_powers("redis", connection, 0)
        if replicate and self.cluster:
            raise NotReplicated(replicate, 0, "redis cluster")
        if len(jobs) == 1 and max_len is None and not replicate and not self.cluster:
            # The usual one-by-one add: add1.lua when the job is plain (see there).
            job_id, record, run_at, options = job_args(jobs[0])
            if not options or options[0] == 0:  # no option flag: at most a type
                queue = jobs[0].queue
                key = await self.runner.ready_key(queue)
                # add1.lua reads the clock's now only to tell a due job (run_at <= now)
                # from a delayed one: a due job's run_at stands for now, sent once, so one
                # float is spelled, not two (about 8,000 instructions; repr, as the packers
                # spell floats: the hash keeps the same text), and Redis parses one time.
                # The type and run_at are left out when there is none to send.
                now: float | str = self.clock.now()
                args: list[Any] = [queue, job_id, record]
                if run_at <= now:
                    now = repr(run_at)
                    if options:
                        args.append(options[1:])
                else:
                    args += [options[1:], repr(run_at)]
                if await self.runner.call("add1", [key], args, now) < 0:
                    raise QueuePaused(queue)
                return {}  # added, or stored already (a replay)
        dependants = has_parents(jobs)
        groups = add_groups(jobs, dependants)
        await self.runner.register([queue for queue, _ in groups])
        if self.cluster:
            return await self._add_cluster(jobs, groups, dependants, max_len)
        argv: list[Any] = ["" if max_len is None else max_len, "", ""]
        if replicate:
            # Held jobs wait for their release until this deadline at most: a release lost
            # in a failover (the replica got the add, not the release) then only delays
            # them, where a hold without end kept an acknowledged job forever.
            argv[2] = self.clock.now() + 2 * self.settings.replicate_timeout + HOLD_MARGIN
        for queue, members in groups:
            argv += [queue, len(members)]
            for job in members:
                argv += job_args(job)
        first = self.runner.queue_key(groups[0][0], "r")
        if replicate:
            return await self._add_replicated(first, argv, jobs, replicate, max_len)
        return check_add(await self.runner.run("add", [first], argv), max_len)

    async def _add_cluster(
        self, jobs: Sequence[Job], groups: list[Group], dependants: bool, max_len: int | None
    ) -> dict[str, str]:
        """A Cluster's add: the sequence numbers and id lookups first, then one script call
        per hash slot (see ``deps_async.slot_calls``)."""
        existing: dict[str, str] = {}
        parents = await cluster_parents(self.runner, jobs) if dependants else None
        seq = int(await self.runner.command("INCRBY", self.prefix + "seq", len(jobs))) - len(jobs)
        for call in slot_calls(self.runner, groups) if dependants else [[g] for g in groups]:
            members = [job for _, group in call for job in group]
            lookups = [("SET", self.prefix + "id:" + job.id, job.queue) for job in members]
            await self.runner.pipeline(lookups)
            for job in members:
                self.runner.remember(job.id, job.queue)
            argv: list[Any] = ["" if max_len is None else max_len, seq, ""]
            for queue, group in call:
                argv += [queue, len(group)]
                for job in group:
                    argv += job_args(job, parents)
            seq += len(members)
            reply = await self.runner.run("add", [self.runner.queue_key(call[0][0], "r")], argv)
            if reply[0] != b"ok":
                await self.runner.forget([job.id.encode() for job in members])
            found = check_add(reply, max_len)
            if found:  # jobs not created: their id lookups go
                await self.runner.forget([job_id.encode() for job_id in found])
                existing.update(found)
        return existing

    async def _add_replicated(
        self, key: str, argv: list[Any], jobs: Sequence[Job], replicate: int, max_len: int | None
    ) -> dict[str, str]:
        """Add held jobs (deliverable by nobody), ``WAIT`` for the replicas on the same
        connection (WAIT counts that connection's writes), then release the jobs, or delete
        them and raise :class:`NotReplicated`: as in Disque, a refused add adds nothing."""
        info = await self.runner.command("INFO", "replication")  # parsed into a dict by redis-py
        available = int(info.get("connected_slaves", 0))
        if available < replicate:
            raise NotReplicated(replicate, available, "redis")
        full_argv = self.runner.script_argv(argv)
        timeout_ms = max(1, int(self.settings.replicate_timeout * 1000))
        commands = [
            ("EVAL", SCRIPTS["add"].text, 1, key, *full_argv),
            ("WAIT", replicate, timeout_ms),
        ]
        (_removed, reply), acknowledged = await self.runner.pipeline(commands)
        existing = check_add(reply, max_len)
        ids = [job.id for job in jobs if job.id not in existing]
        if int(acknowledged) < replicate:
            await self.runner.run_by_id("delete", ids, [])
            raise NotReplicated(replicate, int(acknowledged), "redis")
        if ids:
            # The release waits for the replicas too: a failover right after add returned
            # would otherwise leave the jobs held (never delivered) on the promoted replica.
            # Retried on a new primary, the release frees them there, whatever WAIT says.
            keys = [self.runner.job_key(job_id, None) for job_id in ids]
            release = self.runner.script_argv([])
            await self.runner.pipeline(
                [
                    ("EVAL", SCRIPTS["release"].text, len(keys), *keys, *release),
                    ("WAIT", replicate, timeout_ms),
                ]
            )
        return existing

    async def claim(
        self, queues: Sequence[str], count: int, *, holder: str | None = None
    ) -> list[Job]:
        """Lease ready jobs; see :meth:`AsyncStore.claim`."""
        return await self.claims.claim(queues, count, holder=holder)

    async def claim_blocking(
        self,
        queues: Sequence[str],
        count: int,
        timeout: float | None,
        *,
        holder: str | None = None,
    ) -> list[Job] | None:
        """Claim, blocking on the queues' markers for up to ``timeout`` seconds; see
        :meth:`AsyncStore.claim_blocking` and ``claims_async.py``."""
        return await self.claims.claim_blocking(queues, count, timeout, holder=holder)

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
        deliveries = deliveries_of(job_ids, attempts)

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

        acked = await self.runner.run_by_id("ack", job_ids, args_for)
        return [job_id.decode() for done in acked for job_id in done]

    async def nack(
        self, job_ids: Sequence[str], *, attempts: Sequence[int | None] | None = None
    ) -> dict[str, str]:
        """Requeue active jobs; see :meth:`AsyncStore.nack`."""
        deliveries = deliveries_of(job_ids, attempts)

        def args_for(ids: Sequence[str]) -> list[Any]:
            if deliveries is None:
                return [""]
            return ["1", *(deliveries[job_id] for job_id in ids)]

        return id_queue_pairs(await self.runner.run_by_id("nack", job_ids, args_for))

    async def fail(
        self, job_id: str, error: str, retry_at: float | None, *, attempt: int | None = None
    ) -> bool:
        """Record an error; see :meth:`AsyncStore.fail`."""
        args = [error, "" if retry_at is None else retry_at, "" if attempt is None else attempt]
        return any(int(n) for n in await self.runner.run_by_id("fail", [job_id], args))

    async def _single(self, name: str, job_id: str, args: Sequence[Any] = ()) -> list[Any]:
        results = await self.runner.run_by_id(name, [job_id], args)
        if not results or results[0][0] == b"missing":
            raise JobNotFound(job_id)
        reply: list[Any] = results[0]
        return reply

    async def working(self, job_id: str, *, attempt: int | None = None) -> float | None:
        """Extend a lease; see :meth:`AsyncStore.working`."""
        return await self._extend("working", job_id, attempt, "")

    async def progress(
        self, job_id: str, value: str, *, attempt: int | None = None
    ) -> float | None:
        """Record progress, extend the lease; see :meth:`AsyncStore.progress`."""
        return await self._extend("progress", job_id, attempt, value)

    async def _extend(
        self, operation: str, job_id: str, attempt: int | None, progress: str
    ) -> float | None:
        """working.lua (which records ``progress`` unless empty), its refusals as errors."""
        args = ["" if attempt is None else attempt, progress]
        reply = await self._single("working", job_id, args)
        if reply[0] == b"lost":
            assert attempt is not None
            raise LeaseLost(job_id, operation, attempt, int(reply[1]), STATES[reply[2]])
        if reply[0] == b"state":
            raise InvalidState(job_id, STATES[reply[1]], "extend the lease of")
        if reply[0] == b"cancel":
            raise JobCancelled(job_id, requested=True)
        return None if reply[0] == b"none" else float(reply[1])

    async def cancel(self, job_id: str, *, attempt: int | None = None) -> JobState:
        """Cancel a job, or ask its holder to stop; see :meth:`AsyncStore.cancel`."""
        reply = await self._single("cancel", job_id, ["" if attempt is None else attempt])
        if reply[0] == b"lost":
            assert attempt is not None
            raise LeaseLost(job_id, "cancel", attempt, int(reply[1]), STATES[reply[2]])
        if reply[0] == b"state":
            operation = "cancel" if attempt is None else "end as cancelled"
            raise InvalidState(job_id, STATES[reply[1]], operation)
        return JobState.ACTIVE if reply[0] == b"requested" else JobState.CANCELLED

    async def show(self, job_id: str) -> Job | None:
        """Return the job; see :meth:`AsyncStore.show`."""
        results = await self.runner.run_by_id("show", [job_id], [])
        return row_to_job(results[0]) if results else None

    async def delete(self, job_ids: Sequence[str]) -> int:
        """Delete jobs; see :meth:`AsyncStore.delete`."""
        return sum(int(n) for n in await self.runner.run_by_id("delete", job_ids, []))

    async def qlen(self, queue: str) -> int:
        """Count ready jobs; see :meth:`AsyncStore.qlen`."""
        return int(await self.runner.run("qlen", [self.runner.queue_key(queue, "r")], [queue]))

    async def peek(self, queue: str, count: int) -> list[Job]:
        """The next ready jobs; see :meth:`AsyncStore.peek`."""
        return rows_to_jobs(
            await self.runner.run("peek", [self.runner.queue_key(queue, "r")], [queue, count])
        )

    async def failed(self, queue: str | None, limit: int) -> list[Job]:
        """Failed jobs; see :meth:`AsyncStore.failed`."""
        queues = [queue] if queue is not None else await self.runner.all_queues()
        found: list[tuple[float, int, Job]] = []
        for names in self.runner.per_call(queues) if queues else []:
            rows = await self.runner.run(
                "failed", [self.runner.queue_key(names[0], "f")], [limit, *names]
            )
            for at in range(0, len(rows), ROW_WIDTH):
                job = row_to_job(rows, at)
                if job is not None:
                    found.append((job.finished_at or 0.0, int(rows[at + SEQ_AT]), job))
        found.sort(key=lambda entry: entry[:2])
        return [job for _, _, job in found[:limit]]

    async def retry(self, job_id: str) -> None:
        """Make a failed job ready; see :meth:`AsyncStore.retry`."""
        reply = await self._single("retry", job_id)
        if reply[0] == b"state":
            raise InvalidState(job_id, STATES[reply[1]], "retry")
        if reply[0] == b"taken":
            raise UniqueKeyTaken(job_id, reply[1].decode())

    async def pause(self, queue: str, paused: bool) -> None:
        """Pause or resume delivery; see :meth:`AsyncStore.pause`."""
        await self.runner.register([queue])
        await self.runner.run(
            "pause", [self.runner.queue_key(queue, "p")], [queue, "out", int(paused)]
        )

    async def set_pause(self, queue: str, mode: PauseMode) -> None:
        """Set a queue's pause mode; see :meth:`AsyncStore.set_pause`."""
        await self.runner.register([queue])
        bits = pause_bits(mode)
        await self.runner.run("pause", [self.runner.queue_key(queue, "p")], [queue, "set", bits])

    async def pause_mode(self, queue: str) -> PauseMode:
        """A queue's pause mode; see :meth:`AsyncStore.pause_mode`."""
        bits = await self.runner.command("GET", self.runner.queue_key(queue, "p"))
        return PAUSE_MODES[int(bits or 0)]

    async def set_limits(self, queue: str, limits: QueueLimits | None) -> None:
        """Set or clear a queue's limits; see :meth:`AsyncStore.set_limits`."""
        await self._admin.set_limits(queue, limits)
        self.wakeups.notify([queue])

    async def limits(self) -> dict[str, QueueLimits]:
        """Every queue's limits; see :meth:`AsyncStore.limits`."""
        return await self._admin.limits()

    async def enqueue(self, job_ids: Sequence[str]) -> dict[str, str]:
        """Make jobs ready now; see :meth:`AsyncStore.enqueue`."""
        return id_queue_pairs(await self.runner.run_by_id("enqueue", job_ids, []))

    async def dequeue(self, job_ids: Sequence[str]) -> int:
        """Take ready jobs out of their queue; see :meth:`AsyncStore.dequeue`."""
        return sum(int(n) for n in await self.runner.run_by_id("dequeue", job_ids, []))

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
        queues = [queue] if queue is not None else await self.runner.all_queues()
        letters = "" if states is None else "".join(STATE_LETTERS[state] for state in states)
        if states is not None and not letters:
            return 0, []
        found: list[tuple[int, Job]] = []
        for names in self.runner.per_call(queues) if queues else []:
            key = self.runner.queue_key(names[0], "r")
            rows = await self.runner.run("scan", [key], [count, cursor, letters, *names])
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
        queues = await self.runner.all_queues()
        for names in self.runner.per_call(queues) if queues else []:
            reply = await self.runner.run("queues", [self.runner.queue_key(names[0], "r")], names)
            for at in range(0, len(reply), 4):
                name, queued, bits, live = reply[at : at + 4]
                if int(live) or int(bits):
                    infos.append(QueueInfo(name.decode(), int(queued), PAUSE_MODES[int(bits)]))
        return sorted(infos, key=lambda info: info.name)

    async def flush(self) -> None:
        """Delete every job and pause mode; see :meth:`AsyncStore.flush`.

        Big queues are emptied in chunks of ``STATS_CHUNK`` jobs per script call."""
        for queue in await self.runner.all_queues():
            while int(
                await self.runner.run(
                    "flush", [self.runner.queue_key(queue, "r")], [queue, STATS_CHUNK]
                )
            ):
                pass
        # The queue registry stays: other clients cache what they registered, and queues()
        # only lists queues that hold jobs or a pause mode.
        self.runner.forget_all()

    async def register_node(self, node_id: str, address: str, ttl: float) -> None:
        """Register or renew a node; see :meth:`AsyncStore.register_node`."""
        await self._admin.register_node(node_id, address, ttl)

    async def unregister_node(self, node_id: str) -> None:
        """Remove a node; see :meth:`AsyncStore.unregister_node`."""
        await self._admin.unregister_node(node_id)

    async def nodes(self) -> list[NodeInfo]:
        """Live nodes; see :meth:`AsyncStore.nodes`."""
        return await self._admin.nodes()

    # -- operations (issue 14) -----------------------------------------------------------

    async def register_worker(self, info: WorkerInfo, ttl: float) -> None:
        """See :meth:`AsyncStore.register_worker`."""
        await self._observe.register_worker(info, ttl)

    async def unregister_worker(self, worker_id: str) -> None:
        """See :meth:`AsyncStore.unregister_worker`."""
        await self._observe.unregister_worker(worker_id)

    async def workers(self) -> list[WorkerInfo]:
        """See :meth:`AsyncStore.workers`."""
        return await self._observe.workers()

    async def count_jobs(self, where: JobFilter, cap: int) -> JobCount:
        """See :meth:`AsyncStore.count_jobs` (a bounded scan: slow, see ``observe_async``)."""
        return await self._observe.count_jobs(where, cap)

    async def queue_counts(self, queue: str | None, cap: int) -> list[QueueCounts]:
        """See :meth:`AsyncStore.queue_counts` (``observe_async``)."""
        return await self._observe.queue_counts(queue, cap)

    async def scan_jobs(self, where: JobFilter, cursor: str | None, limit: int) -> JobPage:
        """See :meth:`AsyncStore.scan_jobs` (a bounded scan: slow, see ``observe_async``)."""
        return await self._observe.scan_jobs(where, cursor, limit)

    async def record_rollups(self, rows: Sequence[RollupRow]) -> None:
        """See :meth:`AsyncStore.record_rollups`."""
        await self._observe.record_rollups(rows)

    async def rollups(
        self, resolution: Resolution, since: float, queue: str | None, type: str | None
    ) -> list[RollupRow]:
        """See :meth:`AsyncStore.rollups`."""
        return await self._observe.rollups(resolution, since, queue, type)

    async def register_schedules(self, schedules: Sequence[ScheduleInfo]) -> None:
        """Record definitions, keeping paused flags; see :meth:`AsyncStore.register_schedules`."""
        await self._admin.register_schedules(schedules)

    async def schedules(self) -> list[ScheduleInfo]:
        """Registered schedules; see :meth:`AsyncStore.schedules`."""
        return await self._admin.schedules()

    async def pause_schedule(self, name: str, paused: bool) -> bool:
        """Pause or resume a schedule; see :meth:`AsyncStore.pause_schedule`."""
        return await self._admin.pause_schedule(name, paused)

    async def stats(self) -> Stats:
        """Counts per queue and type; see :meth:`AsyncStore.stats`."""
        return await self._admin.stats()

    async def recover_stale(self, max_age: float | None) -> int:
        """Requeue jobs whose worker is gone; see :meth:`AsyncStore.recover_stale`."""
        before = "" if max_age is None else self.clock.now() - max_age
        recovered = 0
        queues = await self.runner.all_queues()
        for names in self.runner.per_call(queues) if queues else []:
            key = self.runner.queue_key(names[0], "a")
            recovered += int(await self.runner.run("recover", [key], [before, *names]))
        return recovered

    async def release_leases(self, holder: str) -> int:
        """Give back a dead holder's jobs; see :meth:`AsyncStore.release_leases`.

        Reads the active set of every queue (the jobs in flight, not the backlog), as
        :meth:`recover_stale` does: a lookup kept per holder would cost every claim and ack
        a write, for a call made when a process dies.
        """
        released = 0
        queues = await self.runner.all_queues()
        for names in self.runner.per_call(queues) if queues else []:
            key = self.runner.queue_key(names[0], "a")
            released += int(
                await self.runner.run("release_holder", [key], [holder, HOLDER_GONE, *names])
            )
        return released

    async def close(self) -> None:
        """Stop the wake-up listener and close the connections."""
        if self.runner.closed:
            return
        self.runner.closed = True  # calls retrying now stop at once
        self.timers.close()
        self.wakeups.close()
        self._waiters.close()
        await self.runner.aclose()
        await self.claims.aclose()


def open_url(url: str, clock: Clock) -> AsyncRedisStore:
    """Open the store a ``redis://`` or ``rediss://`` URL names (see ``url.py``)."""
    settings = parse_url(url)
    cluster, replicas = probe(settings)
    return AsyncRedisStore(settings, clock, cluster=cluster, replicas=replicas)
