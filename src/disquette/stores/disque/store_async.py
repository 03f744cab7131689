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

Failover: commands go to the current node and move on to the next one when it cannot be
reached (see :mod:`.pool_async`). Bodies: a job's bytes, or a JSON envelope when it needs
more (a ``str`` or JSON body, a ``type``, a non-default ``priority``...; see :mod:`.codec`).

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
- A claimed job's ``retry_after`` and ``lease_until`` come without a SHOW per job: the
  RETRY is learned once per queue and TTL (the id's last digits), from the jobs this store
  added or one SHOW, and the lease is estimated as that RETRY from the claim. Jobs of one
  queue and TTL added elsewhere with another RETRY get the learned one (approximate);
  ``created_at``/``run_at`` of a claimed job are the claim's time, as before.
- ACKJOB, NACK and WORKING act by id: a late ``ack``/``nack``/``working`` of an older
  delivery applies to the job whatever delivery holds it now (the ``attempts`` a client
  passes along are not checked, and :class:`~disquette.errors.LeaseLost` is never raised).
  Claims record no holder, and ``release_leases`` is refused (``NotSupported``): the
  server requeues a dead consumer's jobs after their RETRY.
- No transactions (``connection=``), no node registry (``register_node``) and no schedule
  registry (``register_schedules``): refused.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Collection, Sequence
from typing import Any

import hiredis

from ...clock import Clock
from ...disque import (
    STATE_NAMES,
    addjob_request,
    error_for,
    id_is_leased,
    id_node_prefix,
    parse_show,
    show_fields,
    whole_seconds,
)
from ...errors import (
    InvalidOption,
    InvalidState,
    JobNotFound,
    NotSupported,
    ServerError,
)
from ...job import Job, JobState, Stats, StatsRow
from .._url import number
from ..store_async import AsyncStore
from ..types import (
    DONE_CHANNEL,
    PAUSE_MODES,
    EncodedResult,
    NodeInfo,
    PauseMode,
    QueueInfo,
    ScheduleInfo,
    Wakeups,
)
from .codec import decode_body, encode_body
from .pool_async import AsyncPool, Reply
from .url import parse_url

#: Past this many (queue, id suffix) keys, the learned RETRYs are forgotten (and relearned).
_MAX_LEARNED = 10_000


def _text(value: Reply) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pause_mode(reply: Reply) -> PauseMode:
    name = _text(reply)
    for mode in PAUSE_MODES:
        if mode == name:
            return mode
    raise ServerError(f"unexpected pause state {name!r}")


class AsyncDisqueStore(AsyncStore):
    """Jobs kept by Disque-protocol servers (see the module documentation)."""

    #: Disque's semantics where they differ from disquette's (see the module documentation).
    capabilities = AsyncStore.capabilities.replace(
        # Disque's commands cannot express these: no worker registry, filters or rollups.
        workers=False,
        job_filter=False,
        queue_counts=False,
        rollups=False,
        unique=False,
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
        schedules=False,
        cancellation=False,
        progress=False,
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
        #: (queue, id suffix) -> the RETRY its jobs were seen with (see _fill_leases).
        self._retries: dict[tuple[str, str], float] = {}

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
    ) -> dict[str, str]:
        """ADDJOB each job (pipelined); on a refusal, delete those added and raise."""
        if connection is not None:
            raise InvalidOption("connection", connection, "the disque store has no transactions")
        if any(job.unique_key is not None for job in jobs):
            raise NotSupported("disque", "add a unique job", "ADDJOB cannot carry a unique key")
        if any(job.depends_on for job in jobs):
            raise NotSupported("disque", "add a dependent job", "ADDJOB cannot carry parents")
        timeout_ms = int(self.replicate_timeout * 1000)
        requests = [
            addjob_request(job, encode_body(job), timeout_ms, max_len=max_len, replicate=replicate)
            for job in jobs
        ]
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
            # The RETRY its claims will report (see _fill_leases): known, no SHOW needed.
            self._retries[job.queue, job.id[-4:]] = float(whole_seconds(job.retry_after))
        if refusal is not None:
            if added:
                await self._call("DELJOB", *added)  # all or none, as every store
            raise refusal
        self.wakeups.notify({job.queue for job in jobs})
        return {}

    # -- consuming ---------------------------------------------------------------------------

    async def claim(
        self, queues: Sequence[str], count: int, *, holder: str | None = None
    ) -> list[Job]:
        """GETJOB NOHANG COUNT n WITHCOUNTERS FROM queues (``holder`` is not recorded)."""
        # Taken before asking: the leases (estimated from it) end no later than said.
        now = self.clock.now()
        reply = await self._call(
            "GETJOB", "NOHANG", "COUNT", count, "WITHCOUNTERS", "FROM", *queues
        )
        if not reply:
            return []
        jobs = []
        for item in reply:
            queue, job_id, body = _text(item[0]), _text(item[1]), item[2]
            counters = dict(zip(map(_text, item[3::2]), item[4::2], strict=False))
            nacks = int(counters.get("nacks", 0))
            more = int(counters.get("additional-deliveries", 0))
            job = Job(
                id=job_id,
                queue=queue,
                raw_body=b"",
                state=JobState.ACTIVE,
                created_at=now,
                run_at=now,
                # A leased job's RETRY and lease: see _fill_leases.
                retry_after=0.0,
                attempts=1 + nacks + more,
                nacks=nacks,
                additional_deliveries=more,
            )
            jobs.append(decode_body(job, body))
        await self._fill_leases([job for job in jobs if id_is_leased(job.id)], now)
        if self.cycle:
            await self._maybe_cycle(jobs)
        return jobs

    async def _fill_leases(self, leased: list[Job], now: float) -> None:
        """Set ``retry_after`` and ``lease_until`` of jobs just delivered that can be
        redelivered (odd ids), without a SHOW per job.

        A job's RETRY is only in SHOW; jobs of one queue with one id suffix (the TTL
        minutes) almost always share it, so one SHOW per unseen (queue, suffix), all
        pipelined, teaches it for the next claims too. The lease is estimated as the
        RETRY from ``now``, taken before GETJOB was sent (the server started it on
        delivery, after that).
        """
        unseen = {
            key: job for job in leased if (key := (job.queue, job.id[-4:])) not in self._retries
        }
        if unseen:
            if len(self._retries) > _MAX_LEARNED:
                self._retries.clear()
            shows = await self.pool.call(*[("SHOW", job.id) for job in unseen.values()])
            for key, shown in zip(unseen, shows, strict=True):
                if isinstance(shown, list):  # not deleted meanwhile, nor an error
                    self._retries[key] = float(show_fields(shown).get("retry") or 0)
        for job in leased:
            retry = self._retries.get((job.queue, job.id[-4:]), 0.0)
            if retry:
                job.retry_after = retry
                job.lease_until = now + retry

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

        One ACKJOB per id, pipelined (one round trip): a single ACKJOB of many ids answers
        only how many it acked, and callers need to know which (the server tells each
        connection of a gathered batch its own count; the conformance suite checks the ids).
        """
        if connection is not None:
            raise InvalidOption("connection", connection, "the disque store has no transactions")
        done = await self._per_id("ACKJOB", job_ids)
        if done:
            self.wakeups.notify([DONE_CHANNEL])
        return done

    async def ack_count(
        self,
        job_ids: Sequence[str],
        results: Sequence[EncodedResult] | None = None,
        *,
        connection: object = None,
    ) -> int:
        """One ACKJOB for the batch, which answers how many it acked (an id given twice
        counts once, as in :meth:`ack`)."""
        if connection is not None:
            raise InvalidOption("connection", connection, "the disque store has no transactions")
        distinct = list(dict.fromkeys(job_ids))
        if not distinct:
            return 0
        count = int(await self._call("ACKJOB", *distinct))
        if count:
            self.wakeups.notify([DONE_CHANNEL])
        return count

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
            job = Job(
                id=_text(item[1]), queue=_text(item[0]), raw_body=b"", created_at=now, run_at=now
            )
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

    async def cancel(self, job_id: str, *, attempt: int | None = None) -> JobState:
        """Refused: the Disque protocol has no cancellation (our server's CANCEL is no
        Disque command, and a Disque server does not know it)."""
        raise NotSupported("disque", "cancel a job", "the Disque protocol has no cancellation")

    async def progress(
        self, job_id: str, value: str, *, attempt: int | None = None
    ) -> float | None:
        """Refused: the Disque protocol carries no progress."""
        raise NotSupported("disque", "record progress", "the Disque protocol carries no progress")

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

    async def register_schedules(self, schedules: Sequence[ScheduleInfo]) -> None:
        """Refused: the protocol has nowhere to keep a schedule."""
        raise NotSupported("disque", "register schedules", "the protocol keeps no schedules")

    async def schedules(self) -> list[ScheduleInfo]:
        """Refused: see :meth:`register_schedules`."""
        raise NotSupported("disque", "list schedules", "the protocol keeps no schedules")

    async def pause_schedule(self, name: str, paused: bool) -> bool:
        """Refused: see :meth:`register_schedules`."""
        raise NotSupported("disque", "pause a schedule", "the protocol keeps no schedules")

    async def close(self) -> None:
        """Close the pooled connections."""
        await self.pool.close()


def open_url(url: str, clock: Clock) -> AsyncDisqueStore:
    """Open a ``disque://`` store (see the module documentation for the URL forms)."""
    return AsyncDisqueStore(url, clock)
