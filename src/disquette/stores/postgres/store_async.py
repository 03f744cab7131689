"""The PostgreSQL store: ``postgresql://user@host/db?schema=disquette``.

psycopg 3 with a psycopg_pool pool. Claims are one call of a server-side function that
leases jobs ``FOR UPDATE SKIP LOCKED``, so concurrent workers never wait on each other. What
time made due (expiry, scheduled jobs, lapsed leases) is applied by one process at a time in
the background (``maintainer_async.py``); a claim it does not cover applies a bounded batch
first (``upkeep_async.py``). Adds (and the other calls that
make jobs ready) send a ``NOTIFY`` naming the queue when some process registered a blocked
get on it, which its ``LISTEN`` connection turns into wake-ups (see ``listener_async.py``).

Store-specific powers, beyond the common interface:

- ``add(..., connection=conn)`` and ``ack(..., connection=conn)`` run inside the caller's own
  transaction (a psycopg connection, or a SQLAlchemy session or connection on the psycopg
  driver): the job appears, or is completed, exactly when that transaction commits.
- ``add(..., replicate=n)`` commits with ``synchronous_commit = remote_apply`` and returns only
  once ``n`` standbys have applied the jobs, or raises ``NotReplicated`` first (see
  ``inserts_async.py``).
- :meth:`AsyncPostgresStore.migrate` applies the versioned migrations (also run on first
  use unless ``?migrate=false``).

Its other parts (the URL, connections and retries, SQL, upkeep, adds, the operator's calls,
the listener) each have a module beside this one: the package's docstring lists them.

This file is the asyncio source; ``store.py`` beside it is generated from it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from psycopg import AsyncConnection
from psycopg.errors import UniqueViolation
from psycopg.rows import tuple_row

from ...clock import Clock, SystemClock
from ...errors import (
    InvalidOption,
    InvalidState,
    JobCancelled,
    JobNotFound,
    LeaseLost,
    UniqueKeyTaken,
)
from ...job import Job, JobState, Stats
from .._sql import row_to_job
from ..limits import QueueLimits
from ..store_async import AsyncStore
from ..types import (
    DONE_CHANNEL,
    HOLDER_GONE,
    NO_RESULT,
    PAUSE_MODES,
    PAUSE_OUT,
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
)
from .admin_async import AsyncAdmin
from .database_async import AsyncDatabase
from .inserts_async import AsyncInserts
from .listener_async import AsyncListener
from .maintainer_async import AsyncMaintainer
from .observe_async import AsyncObserve
from .statements import queries, quote
from .upkeep_async import AsyncUpkeep, after_maintenance, maintain
from .url import SCHEMA_NAME, parse_url


class AsyncPostgresStore(AsyncStore):
    """Jobs in PostgreSQL tables of one schema, reached through a connection pool."""

    #: Every capability: transactions (``connection=``), synchronous standbys, migrations.
    capabilities = AsyncStore.capabilities.replace(
        transactions=True,
        replication=True,
        node_registry=True,
        migrations=True,
        limits=True,
        dependencies=True,
    )

    def __init__(
        self,
        conninfo: str,
        clock: Clock,
        *,
        url: str | None = None,
        schema: str = "disquette",
        migrate: bool = True,
        poll_interval: float = 0.25,
        pool_min: int = 1,
        pool_max: int = 10,
        reconnect_timeout: float = 10.0,
        listen: bool = True,
        vacuum_every: int = 50_000,
        application_name: str = "disquette",
    ) -> None:
        if not SCHEMA_NAME.fullmatch(schema):
            raise InvalidOption("schema", schema, "letters, digits, _ and $, at most 63")
        self.url = url or conninfo
        self.clock = clock
        self.schema = schema
        self.poll_interval = poll_interval
        self._q = queries(schema)
        self._db = AsyncDatabase(
            conninfo,
            url=self.url,
            schema=schema,
            migrate=migrate,
            pool_min=pool_min,
            pool_max=pool_max,
            reconnect_timeout=reconnect_timeout,
            application_name=application_name,
        )
        self._listener = AsyncListener(conninfo, schema, application_name, self._q, enabled=listen)
        self.wakeups = self._listener.wakeups
        self.channel = self._listener.channel
        #: The channel of acks, failures for good and deletes (what ``wait`` waits for).
        self.done_channel = self._listener.done_channel
        self._upkeep = AsyncUpkeep(self._db, self._q, clock, vacuum_every)
        # Started by the first claim; its sleeps need a clock that moves on its own.
        self._maintainer = AsyncMaintainer(
            conninfo, application_name, self._q, clock, enabled=isinstance(clock, SystemClock)
        )
        self._inserts = AsyncInserts(self._db, self._q, self.channel)
        self._admin = AsyncAdmin(self._db, self._q, clock, self.done_channel)
        self._observe = AsyncObserve(self._db, self._q, clock, quote(schema))

    # -- store-specific ------------------------------------------------------------------

    async def migrate(self) -> list[int]:
        """Apply the migrations this schema lacks; return the versions applied."""
        return await self._db.migrate()

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
        """See :meth:`AsyncStore.count_jobs`."""
        return await self._observe.count_jobs(where, cap)

    async def queue_counts(self, queue: str | None, cap: int) -> list[QueueCounts]:
        """See :meth:`AsyncStore.queue_counts` (``observe_async``)."""
        return await self._observe.queue_counts(queue, cap)

    async def scan_jobs(self, where: JobFilter, cursor: str | None, limit: int) -> JobPage:
        """See :meth:`AsyncStore.scan_jobs`."""
        return await self._observe.scan_jobs(where, cursor, limit)

    async def record_rollups(self, rows: Sequence[RollupRow]) -> None:
        """See :meth:`AsyncStore.record_rollups`."""
        await self._observe.record_rollups(rows)

    async def rollups(
        self, resolution: Resolution, since: float, queue: str | None, type: str | None
    ) -> list[RollupRow]:
        """See :meth:`AsyncStore.rollups`."""
        return await self._observe.rollups(resolution, since, queue, type)

    # -- the interface -------------------------------------------------------------------

    async def add(
        self,
        jobs: Sequence[Job],
        max_len: int | None,
        *,
        connection: object = None,
        replicate: int = 0,
    ) -> dict[str, str]:
        """Insert jobs in one transaction; see :meth:`AsyncStore.add`.

        With ``connection``, inside the caller's transaction. With ``replicate``, the
        commit waits for synchronous standbys to apply it (``remote_apply``), and
        ``NotReplicated`` is raised first if fewer than ``replicate`` are connected.
        """
        now = self.clock.now()
        ready, existing = await self._inserts.add(
            jobs, max_len, now, connection=connection, replicate=replicate
        )
        self.wakeups.notify(ready)
        if self._maintainer.leading:  # it may sleep past a job due sooner than it knew
            self._maintainer.scheduled([job.run_at for job in jobs if job.run_at > now])
        return existing

    async def claim(
        self, queues: Sequence[str], count: int, *, holder: str | None = None
    ) -> list[Job]:
        """Lease ready jobs; see :meth:`AsyncStore.claim`."""
        self._maintainer.start()
        params = {"queues": list(queues), "count": count, "now": self.clock.now(), "holder": holder}

        async def claim(conn: AsyncConnection[Any]) -> list[Any]:
            cursor = await conn.execute(self._q["claim"], params, binary=True)
            return await cursor.fetchall()

        rows = await self._db.run(claim)
        if not rows:
            return []
        if len(rows) > 1:
            # The function returns each queue's jobs in turn, each block in no set order.
            position = {queue: index for index, queue in enumerate(queues)}
            rows.sort(key=lambda row: (position[row[1]], row[5], row[8], row[22]))
        await self._upkeep.churned(len(rows))
        if holder is not None:
            await self._upkeep.held(len(rows))
        return [row_to_job(row) for row in rows]

    async def ack(
        self,
        job_ids: Sequence[str],
        results: Sequence[EncodedResult] | None = None,
        *,
        connection: object = None,
        attempts: Sequence[int | None] | None = None,
    ) -> list[str]:
        """Mark jobs done; see :meth:`AsyncStore.ack`.

        With ``connection``, inside the caller's transaction: the job is done exactly when
        the work the caller did in that transaction commits, and a crash before the commit
        leaves it leased (it is redelivered when its lease runs out).
        """
        kept = results or [NO_RESULT] * len(job_ids)
        params = {
            "ids": list(job_ids),
            "results": [raw for raw, _ in kept],
            "encodings": [int(encoding) for _, encoding in kept],
            "attempts": list(attempts) if attempts is not None else [None] * len(job_ids),
            "now": self.clock.now(),
            "done_channel": self.done_channel,
        }

        async def ack(conn: AsyncConnection[Any]) -> list[Any]:
            cursor = conn.cursor(row_factory=tuple_row)
            await cursor.execute(self._q["ack"], params)
            return await cursor.fetchall()

        if connection is not None:
            rows = await self._db.on_caller_connection(connection, ack)
        else:
            rows = await self._db.run(ack)
        done = [row[0] for row in rows]
        if done:
            # The second column: the queues the ack released children in (rarely any).
            self.wakeups.notify({DONE_CHANNEL}.union(*(released(row[1]) for row in rows)))
            await self._upkeep.churned(len(done))
            await self._upkeep.acked(len(done))
        return done

    async def nack(
        self, job_ids: Sequence[str], *, attempts: Sequence[int | None] | None = None
    ) -> dict[str, str]:
        """Requeue active jobs; see :meth:`AsyncStore.nack`."""
        params = {
            "ids": list(job_ids),
            "attempts": list(attempts) if attempts is not None else [None] * len(job_ids),
            "now": self.clock.now(),
            "channel": self.channel,
        }

        async def nack(conn: AsyncConnection[Any]) -> list[tuple[str, str]]:
            cursor = await conn.execute(self._q["nack"], params)
            return [(row[0], row[1]) for row in await cursor.fetchall()]

        nacked = dict(await self._db.run(nack))
        self.wakeups.notify(set(nacked.values()))
        return nacked

    async def fail(
        self, job_id: str, error: str, retry_at: float | None, *, attempt: int | None = None
    ) -> bool:
        """Record an error; see :meth:`AsyncStore.fail`."""
        params = {
            "id": job_id,
            "error": error,
            "retry_at": retry_at,
            "attempts": attempt,
            "now": self.clock.now(),
            "channel": self.channel,
            "done_channel": self.done_channel,
        }

        async def fail(conn: AsyncConnection[Any]) -> tuple[str, int, list[str] | None] | None:
            cursor = await conn.execute(self._q["fail"], params)
            row = await cursor.fetchone()
            return None if row is None else (row[0], row[1], row[2])

        found = await self._db.run(fail)
        if found is None:
            return False
        queue, state, children = found
        if state == 4:
            self.wakeups.notify({DONE_CHANNEL, *released(children)})
        elif state == 1:
            self.wakeups.notify([queue])
        return True

    async def working(self, job_id: str, *, attempt: int | None = None) -> float | None:
        """Extend a lease; see :meth:`AsyncStore.working`."""
        return await self._extend("working", {"id": job_id, "attempts": attempt})

    async def progress(
        self, job_id: str, value: str, *, attempt: int | None = None
    ) -> float | None:
        """Record progress, extend the lease; see :meth:`AsyncStore.progress`."""
        params = {"id": job_id, "attempts": attempt, "progress": value}
        return await self._extend("progress", params)

    async def _extend(self, operation: str, params: dict[str, Any]) -> float | None:
        """Run working or progress on a held job; explain a refusal with the typed error."""
        now = params["now"] = self.clock.now()
        job_id, attempt = params["id"], params["attempts"]

        async def extend(conn: AsyncConnection[Any]) -> tuple[bool, float | None, Job | None]:
            await maintain(conn, self._q, now)
            cursor = await conn.execute(self._q[operation], params)
            row = await cursor.fetchone()
            if row is not None:
                return True, None if row[0] is None else float(row[0]), None
            return False, None, await self._show(conn, job_id, now)

        extended, lease_until, job = await self._db.run(extend)
        if extended:
            return lease_until
        if job is None:
            raise JobNotFound(job_id)
        if attempt is not None and job.attempts != attempt:
            raise LeaseLost(job_id, operation, attempt, job.attempts, job.state)
        if job.cancel_requested and job.state in (JobState.ACTIVE, JobState.QUEUED):
            raise JobCancelled(job_id, requested=True)
        if job.state is not JobState.ACTIVE:
            raise InvalidState(job_id, job.state, "extend the lease of")
        return None

    async def cancel(self, job_id: str, *, attempt: int | None = None) -> JobState:
        """Cancel a job, or ask its holder to stop; see :meth:`AsyncStore.cancel`."""
        now = self.clock.now()
        params = {
            "id": job_id,
            "now": now,
            "attempts": attempt,
            "done_channel": self.done_channel,
            "cancel_channel": self._listener.cancel_channel,
        }

        async def cancel(conn: AsyncConnection[Any]) -> tuple[JobState | None, Job | None]:
            await maintain(conn, self._q, now)
            steps = ["cancel_pending", "request_cancel"] if attempt is None else ["cancel_held"]
            for step in steps:
                cursor = await conn.execute(self._q[step], params)
                row = await cursor.fetchone()
                if row is not None:
                    if step == "request_cancel":
                        return JobState.ACTIVE, None
                    children.update(released(row[1]))
                    return JobState.CANCELLED, None
            return None, await self._show(conn, job_id, now)

        children: set[str] = set()
        state, job = await self._db.run(cancel)
        if state is not None:
            self.wakeups.notify(children)
            return state
        if job is None:
            raise JobNotFound(job_id)
        if attempt is not None and job.attempts != attempt:
            raise LeaseLost(job_id, "cancel", attempt, job.attempts, job.state)
        raise InvalidState(job_id, job.state, "cancel" if attempt is None else "end as cancelled")

    async def _show(self, conn: AsyncConnection[Any], job_id: str, now: float) -> Job | None:
        cursor = await conn.execute(self._q["show"], {"id": job_id, "now": now}, binary=True)
        row = await cursor.fetchone()
        return None if row is None else row_to_job(row)

    async def show(self, job_id: str) -> Job | None:
        """Return the job; see :meth:`AsyncStore.show`."""
        now = self.clock.now()

        # Jobs that waits began on since the last read (a wait's first read is this call):
        # registered first, in the same round trip, so that their ends are sent to us.
        waited = self._listener.take_jobs()

        async def show(conn: AsyncConnection[Any]) -> Job | None:
            params = {"id": job_id, "now": now}
            if waited is not None:
                (pid, started), ids = waited
                register = {"pid": pid, "started": started, "ids": ids}
                async with conn.pipeline():
                    await conn.execute(self._q["register_job_waiters"], register)
                    rows = await after_maintenance(
                        conn, self._q, now, self._q["show"], params, True
                    )
                self._listener.registered(waited[0], ids)
            else:
                rows = await after_maintenance(conn, self._q, now, self._q["show"], params, True)
            return row_to_job(rows[0]) if rows else None

        try:
            return await self._db.run(show)
        except BaseException:
            if waited is not None:  # not registered: the next read registers them
                self._listener.untake_jobs(waited[1])
            raise

    async def delete(self, job_ids: Sequence[str]) -> int:
        """Delete jobs; see :meth:`AsyncStore.delete`."""
        now = self.clock.now()

        async def delete(conn: AsyncConnection[Any]) -> tuple[int, list[str] | None]:
            params = {"ids": list(job_ids), "now": now, "done_channel": self.done_channel}
            rows = await after_maintenance(conn, self._q, now, self._q["delete"], params)
            return int(rows[0][0]), rows[0][1]

        deleted, children = await self._db.run(delete)
        if deleted:
            self.wakeups.notify({DONE_CHANNEL, *released(children)})
        return deleted

    async def qlen(self, queue: str) -> int:
        """Count ready jobs; see :meth:`AsyncStore.qlen`."""
        now = self.clock.now()

        async def qlen(conn: AsyncConnection[Any]) -> int:
            rows = await after_maintenance(conn, self._q, now, self._q["qlen"], {"queue": queue})
            return int(rows[0][0])

        return await self._db.run(qlen)

    async def _select_jobs(self, statement: str, params: dict[str, Any]) -> list[Job]:
        now = self.clock.now()

        async def select(conn: AsyncConnection[Any]) -> list[Job]:
            rows = await after_maintenance(conn, self._q, now, statement, params, True)
            return [row_to_job(row) for row in rows]

        return await self._db.run(select)

    async def peek(self, queue: str, count: int) -> list[Job]:
        """The next ready jobs; see :meth:`AsyncStore.peek`."""
        return await self._select_jobs(self._q["peek"], {"queue": queue, "count": count})

    async def failed(self, queue: str | None, limit: int) -> list[Job]:
        """Failed jobs; see :meth:`AsyncStore.failed`."""
        if queue is None:
            return await self._select_jobs(self._q["failed_all"], {"limit": limit})
        return await self._select_jobs(self._q["failed_in_queue"], {"queue": queue, "limit": limit})

    async def retry(self, job_id: str) -> None:
        """Make a failed job ready; see :meth:`AsyncStore.retry`."""
        now = self.clock.now()

        async def retry(conn: AsyncConnection[Any]) -> tuple[str | None, Job | None]:
            await maintain(conn, self._q, now)
            try:
                cursor = await conn.execute(
                    self._q["retry"], {"id": job_id, "now": now, "channel": self.channel}
                )
            except UniqueViolation:
                # jobs_unique: a job of its queue took its unique key while it was failed.
                raise UniqueKeyTaken(job_id) from None
            row = await cursor.fetchone()
            if row is not None:
                return row[0], None
            return None, await self._show(conn, job_id, now)

        queue, job = await self._db.run(retry)
        if queue is not None:
            self.wakeups.notify([queue])
            return
        if job is None:
            raise JobNotFound(job_id)
        raise InvalidState(job_id, job.state, "retry")

    async def pause(self, queue: str, paused: bool) -> None:
        """Pause or resume delivery; see :meth:`AsyncStore.pause`."""
        params = {"queue": queue, "channel": self.channel}

        async def pause(conn: AsyncConnection[Any]) -> None:
            await conn.execute(self._q["pause" if paused else "resume"], params)

        await self._db.run(pause)
        if not paused:
            self.wakeups.notify([queue])

    async def set_pause(self, queue: str, mode: PauseMode) -> None:
        """Set a queue's pause mode; see :meth:`AsyncStore.set_pause`."""
        params = {"queue": queue, "mode": pause_bits(mode), "channel": self.channel}

        async def set_pause(conn: AsyncConnection[Any]) -> None:
            await conn.execute(self._q["set_pause"], params)

        await self._db.run(set_pause)
        if not pause_bits(mode) & PAUSE_OUT:
            self.wakeups.notify([queue])

    async def pause_mode(self, queue: str) -> PauseMode:
        """A queue's pause mode; see :meth:`AsyncStore.pause_mode`."""

        async def pause_mode(conn: AsyncConnection[Any]) -> int:
            cursor = await conn.execute(self._q["pause_mode"], {"queue": queue})
            row = await cursor.fetchone()
            return int(row[0]) if row is not None else 0

        return PAUSE_MODES[await self._db.run(pause_mode)]

    async def set_limits(self, queue: str, limits: QueueLimits | None) -> None:
        """Set or clear a queue's limits; see :meth:`AsyncStore.set_limits`."""
        params: dict[str, object] = {"queue": queue}
        if limits is None or limits.empty:
            query = self._q["clear_limits"]
        else:
            count, per = limits.rate if limits.rate is not None else (None, None)
            query = self._q["set_limits"]
            params.update(
                concurrency=limits.concurrency, rate_count=count, rate_per=per, now=self.clock.now()
            )

        async def set_limits(conn: AsyncConnection[Any]) -> None:
            await conn.execute(query, params)

        await self._db.run(set_limits)
        self.wakeups.notify([queue])

    async def limits(self) -> dict[str, QueueLimits]:
        """Every queue's limits; see :meth:`AsyncStore.limits`."""

        async def limits(conn: AsyncConnection[Any]) -> list[Any]:
            cursor = await conn.execute(self._q["all_limits"])
            return await cursor.fetchall()

        return {
            queue: QueueLimits(concurrency, None if count is None else (count, per))
            for queue, concurrency, count, per in await self._db.run(limits)
        }

    async def enqueue(self, job_ids: Sequence[str]) -> dict[str, str]:
        """Make jobs ready now; see :meth:`AsyncStore.enqueue`."""
        now = self.clock.now()
        params = {"ids": list(job_ids), "channel": self.channel}

        async def enqueue(conn: AsyncConnection[Any]) -> dict[str, str]:
            rows = await after_maintenance(conn, self._q, now, self._q["enqueue"], params)
            return {row[0]: row[1] for row in rows}

        enqueued = await self._db.run(enqueue)
        self.wakeups.notify(set(enqueued.values()))
        return enqueued

    async def dequeue(self, job_ids: Sequence[str]) -> int:
        """Take ready jobs out of their queue; see :meth:`AsyncStore.dequeue`."""
        now = self.clock.now()
        params = {"ids": list(job_ids), "now": now}

        async def dequeue(conn: AsyncConnection[Any]) -> int:
            rows = await after_maintenance(conn, self._q, now, self._q["dequeue"], params)
            return int(rows[0][0])

        return await self._db.run(dequeue)

    async def scan(
        self,
        cursor: int,
        count: int,
        *,
        queue: str | None = None,
        states: Collection[JobState] | None = None,
    ) -> tuple[int, list[Job]]:
        """Walk jobs in enqueue order; see :meth:`AsyncStore.scan`."""
        return await self._admin.scan(cursor, count, queue, states)

    async def queues(self) -> list[QueueInfo]:
        """Queues with jobs or a pause mode; see :meth:`AsyncStore.queues`."""
        return await self._admin.queues()

    async def flush(self) -> None:
        """Delete every job and pause mode; see :meth:`AsyncStore.flush`."""
        await self._admin.flush()
        self.wakeups.notify([DONE_CHANNEL])

    async def register_node(self, node_id: str, address: str, ttl: float) -> None:
        """Register or renew a node; see :meth:`AsyncStore.register_node`."""
        await self._admin.register_node(node_id, address, ttl)

    async def unregister_node(self, node_id: str) -> None:
        """Remove a node; see :meth:`AsyncStore.unregister_node`."""
        await self._admin.unregister_node(node_id)

    async def nodes(self) -> list[NodeInfo]:
        """Live nodes; see :meth:`AsyncStore.nodes`."""
        return await self._admin.nodes()

    async def register_schedules(self, schedules: Sequence[ScheduleInfo]) -> None:
        """Record definitions; see :meth:`AsyncStore.register_schedules`."""
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
        now = self.clock.now()
        params = {"before": now - (max_age or 0.0), "channel": self.channel}

        async def recover(conn: AsyncConnection[Any]) -> tuple[int, list[str]]:
            recovered = await maintain(conn, self._q, now, everything=True)
            if max_age is None:
                return recovered, []
            cursor = await conn.execute(self._q["requeue_leased_before"], params)
            queues = [row[0] for row in await cursor.fetchall()]
            return recovered + len(queues), queues

        recovered, queues = await self._db.run(recover)
        self.wakeups.notify(set(queues))
        return recovered

    async def release_leases(self, holder: str) -> int:
        """Give back a dead holder's jobs; see :meth:`AsyncStore.release_leases`."""
        now = self.clock.now()
        params = {
            "holder": holder,
            "error": HOLDER_GONE,
            "now": now,
            "channel": self.channel,
            "done_channel": self.done_channel,
        }

        async def release(conn: AsyncConnection[Any]) -> list[Any]:
            return await after_maintenance(conn, self._q, now, self._q["release_holder"], params)

        rows = await self._db.run(release)
        woken = {queue if state == 1 else DONE_CHANNEL for queue, state, _ in rows}
        self.wakeups.notify(woken | released(rows[0][2] if rows else None))
        return len(rows)

    async def close(self) -> None:
        """Close the pool, stop the listener and the maintainer."""
        await self._db.close()
        await self._listener.close()
        await self._maintainer.close()


def released(queues: list[str] | None) -> set[str]:
    """The queues a statement that ended jobs made their children ready in (its
    ``resolve_children`` column: NULL when no ended job had any)."""
    return set(queues) if queues else set()


def open_url(url: str, clock: Clock) -> AsyncPostgresStore:
    """Open ``postgresql://...`` (or ``postgres://``); see :mod:`.url` for parameters."""
    settings = parse_url(url)
    return AsyncPostgresStore(
        settings.conninfo,
        clock,
        url=settings.url,
        schema=settings.schema,
        migrate=settings.migrate,
        poll_interval=settings.poll_interval,
        pool_min=settings.pool_min,
        pool_max=settings.pool_max,
        reconnect_timeout=settings.reconnect_timeout,
        listen=settings.listen,
        vacuum_every=settings.vacuum_every,
        application_name=settings.application_name,
    )
