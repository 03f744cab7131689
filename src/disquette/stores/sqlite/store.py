"""The embedded SQLite store (the default): one file, WAL, safe across processes.

Every operation is one short transaction. A claim is one ``UPDATE`` (``... RETURNING`` for
one job; a read, then the ``UPDATE``, inside a ``BEGIN IMMEDIATE`` for several: see
``claims.py``), so two processes never lease the same job. Other processes' changes
are seen by polling; the poll is a ``PRAGMA data_version`` read while nothing changed and
nothing is due, so idle waiters cost next to nothing.
"""

from __future__ import annotations

import json
import operator
import sqlite3
import time
from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any, Final, TypeVar

from ...errors import (
    InvalidState,
    JobCancelled,
    JobNotFound,
    LeaseLost,
    QueueFull,
    QueuePaused,
    StoreError,
    UniqueKeyTaken,
)
from ...job import Job, JobState
from .._sql import (
    SEQ,
    STATE_CODES,
    STATES,
    row_to_job,
)
from ..store import Store
from ..types import (
    CANCEL_CHANNEL,
    DONE_CHANNEL,
    HOLDER_GONE,
    Delivery,
    EncodedResult,
    refuse_store_powers,
)
from .acks import ACK_DROP, ACK_MANY, DROPPED, ack_batch, ack_statements
from .admin import SqliteAdmin
from .claims import DELIVERIES, JOBS, ClaimRows
from .database import _MIGRATIONS as _MIGRATIONS  # re-exported: the migration tests read them
from .database import _SCHEMA_VERSION as _SCHEMA_VERSION
from .database import _UNKNOWN, INSERTS, LAZY_VERSION_SECONDS
from .database import QUERIES as QUERIES
from .dependencies import Released, ack_parents, admit, channels_of, resolve, resolve_all
from .dependencies import insert as insert_dependants
from .inserts import inserts_of, job_row, next_due_of
from .limits import any_limited
from .observe import SqliteObserve
from .unique import unique_holders

T = TypeVar("T")


class SqliteStore(SqliteObserve, SqliteAdmin, Store):
    """Jobs in one SQLite file, one connection shared by threads under a lock: the job
    moves (the file and transactions are ``database.py``'s, the rest ``admin.py``'s)."""

    #: Disquette's semantics in full; no transactions to join (the store's connection is
    #: its own), no replicas, and the schema is created when opened.
    capabilities = Store.capabilities.replace(
        transactions=False,
        replication=False,
        node_registry=True,
        migrations=False,
        limits=True,
        dependencies=True,
    )

    # -- the interface -------------------------------------------------------------------

    def add(
        self,
        jobs: Sequence[Job],
        max_len: int | None,
        *,
        connection: object = None,
        replicate: int = 0,
    ) -> dict[str, str]:
        """Insert jobs in one transaction; see :meth:`Store.add`."""
        refuse_store_powers("sqlite", connection, replicate)
        now = self.clock.now()
        if len(jobs) == 1 and max_len is None:
            job = jobs[0]
            if job.unique_key is None and not job.depends_on:
                self._add_one(job, now)
                return {}
        # Typed loosely: a unique add appends its key and states mask to each row.
        rows: list[tuple[Any, ...]] = [job_row(job, now) for job in jobs]
        if len(rows) == 1 and max_len is None and not jobs[0].depends_on:
            job = jobs[0]
            row = (*rows[0], job.unique_key, job.unique_states)
            inserted = self._write(QUERIES["insert_unique_one"], row, tracked=True).rowcount
            self._lower_due(next_due_of(rows))
            if inserted:
                self._announce([job.queue])
                return {}
            # Nothing inserted: the transaction below finds out why.
        return self._add_in_transaction(jobs, rows, max_len, now)

    def _add_one(self, job: Job, now: float) -> None:
        """The usual add: one job, no bound, key or parents; one statement."""
        ready = job.run_at <= now
        # NULLs in the statement's text for a job's None columns (see INSERTS).
        sql, params = INSERTS[job.type is None, job.expires_at is None, not job.headers]
        row = params(job_row(job, now))
        with self._held as conn:  # (_connection(), without the call: hot path)
            inserted = conn.execute(sql, row).rowcount
            self._wrote(True)
        if not ready:
            self._lower_due(job.run_at)
        if job.expires_at is not None:
            self._lower_due(job.expires_at)
        if inserted:
            self._announce([job.queue])
            return
        # Nothing inserted: the queue is paused for input, or the id is held.
        with self._connection() as conn:
            if conn.execute(QUERIES["paused_in"], (json.dumps([job.queue]),)).fetchone():
                raise QueuePaused(job.queue)

    def _add_in_transaction(
        self, jobs: Sequence[Job], rows: list[tuple[Any, ...]], max_len: int | None, now: float
    ) -> dict[str, str]:
        """The add of a batch (or of one job with a bound, a key or parents): checks and
        inserts in one transaction."""
        if max_len is not None:
            self._refresh()
        unique = any(job.unique_key is not None for job in jobs)
        dependants = any(job.depends_on for job in jobs)
        existing: dict[str, str] = {}
        released = Released()
        with self._transaction(tracked=True) as conn:
            queues = json.dumps(sorted({row[1] for row in rows}))
            paused = conn.execute(QUERIES["paused_in"], (queues,)).fetchone()
            if paused is not None:
                raise QueuePaused(paused[0])
            if unique or dependants:
                if unique:
                    existing = unique_holders(conn, QUERIES, jobs, now, released)
                kept = [
                    (job, (*row, job.unique_key, job.unique_states))
                    for row, job in zip(rows, jobs, strict=True)
                    if job.id not in existing
                ]
                rows = [row for _, row in kept]
            if max_len is not None:  # a job that is to wait counts too, as on every store
                incoming = Counter(row[1] for row in rows if row[2] == 1)
                for queue, extra in incoming.items():
                    held = conn.execute(QUERIES["count_queued_up_to"], (queue, max_len)).fetchone()
                    if held[0] + extra > max_len:
                        raise QueueFull(queue, max_len)
            if dependants:
                rows, pairs = admit(conn, QUERIES, [job for job, _ in kept], rows, now)
                insert_dependants(conn, QUERIES, rows, pairs)
            else:
                conn.executemany(*inserts_of(rows, unique))
        self._lower_due(next_due_of(rows))
        self._lower_due(released.due_at)
        released.channels.update(channels_of(rows) if dependants else {row[1] for row in rows})
        self._announce(released.channels)
        return existing

    def claim(self, queues: Sequence[str], count: int, *, holder: str | None = None) -> list[Job]:
        """Lease ready jobs; see :meth:`Store.claim`.

        While nothing is due: one statement per queue that holds jobs (with a read first
        when it claims several, in the same transaction), and a ``PRAGMA
        data_version`` read every few milliseconds (or a read of which queues hold jobs when
        they may not); a claim that finds nothing takes no write lock.
        """
        return self._claim(queues, count, holder, JOBS)

    def claim_deliveries(
        self, queues: Sequence[str], count: int, *, holder: str | None = None
    ) -> list[Delivery]:
        """Lease ready jobs as :meth:`claim` does, by the same statements reading six
        columns of each job instead of 28; see :meth:`Store.claim_deliveries`."""
        return self._claim(queues, count, holder, DELIVERIES)

    def _claim(
        self, queues: Sequence[str], count: int, holder: str | None, read: ClaimRows[T]
    ) -> list[T]:
        now = self.clock.now()
        key = tuple(queues)
        with self._held as conn:  # (_connection(), without the call: hot path)
            self._before_claim(conn, now, key)
            return self._claim_in(conn, key, count, holder, now, read)

    def _before_claim(self, conn: sqlite3.Connection, now: float, key: tuple[str, ...]) -> None:
        """Apply what time made due, as a claim on ``key`` does first."""
        lazy = key not in self._idle
        # What _catch_up does when it has nothing to do, without its calls: nothing
        # due, and data_version read less than LAZY_VERSION_SECONDS ago.
        if not (
            lazy
            and now < self._due_at
            and time.monotonic() - self._version_checked < LAZY_VERSION_SECONDS
        ):
            self._catch_up(conn, now, lazy=lazy)

    def _claim_in(
        self,
        conn: sqlite3.Connection,
        queues: tuple[str, ...],
        count: int,
        holder: str | None,
        now: float,
        read: ClaimRows[T],
    ) -> list[T]:
        """Claim on a connection held (in autocommit mode, or in the caller's transaction),
        due changes applied, by ``read``'s statements, returning what it makes of their
        rows. Queues not known to hold jobs are looked at with a read first, so that
        polling empty queues never waits for another process's write lock."""
        if queues in self._idle:
            return []
        busy = self._busy
        candidates = queues if busy.issuperset(queues) else self._holding(conn, queues)
        claimed: list[T] = []
        known = self._claimed
        if len(known) > _MAX_CLAIMED:  # jobs claimed here and acked elsewhere, forgotten
            known.clear()
        anonymous = holder is None
        for queue in candidates:
            wanted = count - len(claimed)
            params = {"now": now, "queue": queue, "count": wanted, "holder": holder}
            # It obeys the queue's limits (issue 16), if any.
            if wanted == 1:  # one statement (autocommit, unless ack_and_claim's transaction)
                rows = conn.execute(read.one[anonymous], params).fetchall()
            else:  # read, then claim, in one transaction (see claims.py)
                rows = self._claim_many(conn, read, anonymous, params)
            if len(rows) < wanted:
                busy.discard(queue)  # emptied (or paused): read before claiming from it again
            else:
                busy.add(queue)
            if not rows:
                continue
            self._leased(rows, read)
            claimed.extend(read.make(rows, queue))
            if len(claimed) >= count:
                break
        # Unless a limit held jobs back: those come out as time passes, no write says so.
        if not claimed and not (candidates and any_limited(conn, candidates)):
            self._idle.add(queues)
        return claimed

    def _leased(self, rows: list[Any], read: ClaimRows[T]) -> None:
        """After a claim of ``rows``: when their leases run out is our next due change; the
        ``seq`` and ``result_ttl`` of each are remembered if ``read`` says so."""
        if read.remembered:
            known, lease_at, seq_at, ttl_at = self._claimed, read.lease, read.seq, read.ttl
            for row in rows:
                lease = row[lease_at]
                if lease is not None and lease < self._due_at:
                    self._due_at = lease
                known[row[0]] = (row[seq_at], row[ttl_at])
            return
        # The earliest, found in C (None: a job without a lease; a lease is never 0).
        lease = min(filter(None, map(read.leases, rows)), default=_NEVER)
        if lease < self._due_at:
            self._due_at = lease

    def _claim_many(
        self,
        conn: sqlite3.Connection,
        read: ClaimRows[T],
        anonymous: bool,
        params: dict[str, Any],
    ) -> list[Any]:
        """The rows of a claim of several jobs from one queue: read in delivery order, then
        claimed, in the caller's transaction or one of its own."""
        with self._atomic(conn):
            rows = conn.execute(read.select, params).fetchall()
            if rows and conn.execute(read.update[anonymous], params).rowcount != len(rows):
                raise StoreError("SQLite", "a claim took other jobs than it read")
            if rows and anonymous:  # its claim fired no token trigger (see CLAIMS)
                spent = {"queue": params["queue"], "now": params["now"], "claimed": len(rows)}
                conn.execute(QUERIES["spend_tokens"], spent)
        return rows

    def _holding(self, conn: sqlite3.Connection, queues: tuple[str, ...]) -> list[str]:
        """Those of ``queues`` that hold a ready job (a read: no write lock), in order."""
        ready = {row[0] for row in conn.execute(QUERIES["ready_queues"], (json.dumps(queues),))}
        return [queue for queue in queues if queue in ready]

    def ack(
        self,
        job_ids: Sequence[str],
        results: Sequence[EncodedResult] | None = None,
        *,
        connection: object = None,
        attempts: Sequence[int | None] | None = None,
    ) -> list[str]:
        """Mark jobs done; see :meth:`Store.ack`."""
        refuse_store_powers("sqlite", connection, 0)
        now = self.clock.now()
        lone = True  # one statement may do: no transaction to open
        if len(job_ids) == 1 and results is None and attempts and attempts[0] is not None:
            claimed = self._claimed.pop(job_ids[0], None)
            if claimed is not None:
                if self._ack_claimed(job_ids[0], attempts[0], claimed, now):
                    return [job_ids[0]]
                lone = False  # that was the lone statement: the transaction finds out why
        statements = ack_statements(job_ids, results, attempts, now)
        rows: list[Any] = []
        if lone and len(job_ids) == 1:
            # The usual ack: one statement, no transaction to open. It leaves parents with
            # waiting children alone, for the transaction below. (A batch takes up to two
            # statements, see _run_acks: never part of it committed before a WouldBlock.)
            sql, params = statements[0]
            # The last acks were of jobs kept for no time (the Disque server's --result-ttl
            # 0): this one is deleted now, as by ack_many_drop, not marked done for the
            # next claim to delete in a transaction of its own.
            dropped = results is None and self._acks_drop
            if dropped and self._write(ACK_DROP, params, tracked=True).rowcount:
                return self._acked([(job_ids[0], DROPPED)], None, now)
            rows = self._write_returning(sql, params, tracked=True)
            if len(rows) == len(job_ids):
                if results is None:  # kept for no time: the next acks try the delete first
                    self._acks_drop = rows[0][1] <= now
                return self._acked(rows, None, now)
            statements = []
        with self._transaction(tracked=True) as conn:
            rows += self._run_acks(conn, statements)
            released = ack_parents(conn, QUERIES, rows, job_ids, results, attempts, now)
        return self._acked(rows, released, now)

    def _ack_claimed(
        self, job_id: str, attempt: int, claimed: tuple[int, float], now: float
    ) -> bool:
        """The usual ack of a job claimed here (its ``seq`` and ``result_ttl`` known): one
        statement without RETURNING, the row found by its rowid. False: not acked (a parent
        with waiting children, a lease lost, ...: the caller's transaction finds out why)."""
        seq, ttl = claimed
        params = {"seq": seq, "id": job_id, "now": now, "attempts": attempt, "ttl": ttl}
        with self._held as conn:  # (_connection(), without the call: hot path)
            if not conn.execute(QUERIES["ack_claimed"], params).rowcount:
                return False
            self._wrote(True)
        if now + ttl < self._due_at:  # the done job's result is kept until then
            self._due_at = now + ttl
        self._announce(_DONE)
        return True

    def ack_and_claim(
        self,
        job_ids: Sequence[str],
        results: Sequence[EncodedResult] | None,
        queues: Sequence[str],
        count: int,
        *,
        attempts: Sequence[int | None] | None = None,
        holder: str | None = None,
    ) -> tuple[list[str], list[Job]]:
        """Ack, then claim, in one transaction (one commit); see :meth:`Store.ack_and_claim`."""
        return self._ack_and_claim(job_ids, results, attempts, queues, count, holder, JOBS, False)

    def ack_and_claim_deliveries(
        self,
        job_ids: Sequence[str],
        queues: Sequence[str],
        count: int,
        *,
        holder: str | None = None,
    ) -> tuple[list[str], list[Delivery]]:
        """Ack by id, then claim deliveries, in one transaction (one commit); see
        :meth:`Store.ack_and_claim_deliveries`."""
        # The server's: one id's ack too goes as a batch's (ack_batch), so that a job kept
        # for no time (its --result-ttl 0) is deleted now.
        return self._ack_and_claim(job_ids, None, None, queues, count, holder, DELIVERIES, True)

    def _ack_and_claim(
        self,
        job_ids: Sequence[str],
        results: Sequence[EncodedResult] | None,
        attempts: Sequence[int | None] | None,
        queues: Sequence[str],
        count: int,
        holder: str | None,
        read: ClaimRows[T],
        batch: bool,
    ) -> tuple[list[str], list[T]]:
        now = self.clock.now()
        # ``batch``: see ack_statements. Not for a worker's one job: its own statement is
        # cheaper than a batch's json_each and savepoint (a worker with prefetch 0 ran at
        # 0.94-0.95x of the build before with them, 0.98x without, bench_sqlite_hot.py).
        statements = ack_statements(job_ids, results, attempts, now, batch=batch)
        key = tuple(queues)
        with self._held as conn:  # (_connection(), without the call: hot path)
            self._before_claim(conn, now, key)
            with self._committed(conn, tracked=True):
                rows = self._run_acks(conn, statements)
                released = ack_parents(conn, QUERIES, rows, job_ids, results, attempts, now)
                claimed = self._claim_in(conn, key, count, holder, now, read)
        return self._acked(rows, released, now), claimed

    #: Whether the last batch of acks (``ack_many``) held jobs kept for no time once done.
    _acks_drop = False

    def _run_acks(self, conn: sqlite3.Connection, statements: list[tuple[str, Any]]) -> list[Any]:
        """Run ack statements in the caller's transaction: the rows (id, expiry; None: its
        ``result_ttl`` from now, not read back) they acked (a batch's: see ``ack_batch``)."""
        rows: list[Any] = []
        for sql, params in statements:
            if sql is ACK_MANY:
                acked, self._acks_drop = ack_batch(conn, params, self._acks_drop)
                rows += acked
            else:
                rows += conn.execute(sql, params)
        return rows

    def _acked(self, rows: list[Any], released: Released | None, now: float) -> list[str]:
        """After acks: the ids done (rows of id and new expiry, see :meth:`_run_acks`),
        their waiters told, and those of the children released (``released``)."""
        if released is not None:
            self._lower_due(released.due_at)
            if released.channels:
                self._announce(released.channels)
        if not rows:
            return []
        known = self._claimed
        if known:
            for job_id, expiry in rows:  # each done job's result is kept until then
                claimed = known.pop(job_id, None)
                if expiry is None:  # its result_ttl from now: known if claimed here
                    expiry = _UNKNOWN if claimed is None else now + claimed[1]
                if expiry < self._due_at:
                    self._due_at = expiry
        else:  # none claimed here (the Disque server's deliveries): the same, in C
            expiries = list(map(_EXPIRY, rows))
            expiry = _UNKNOWN if None in expiries else min(expiries)
            if expiry < self._due_at:
                self._due_at = expiry
        self._announce(_DONE)
        return list(map(_ID, rows))

    def nack(
        self, job_ids: Sequence[str], *, attempts: Sequence[int | None] | None = None
    ) -> dict[str, str]:
        """Requeue active jobs; see :meth:`Store.nack`."""
        params = [
            {"id": job_id, "attempts": attempt}
            for job_id, attempt in zip(job_ids, attempts or [None] * len(job_ids), strict=True)
        ]
        rows: list[Any] = []
        if len(params) == 1:
            rows = self._write_returning(QUERIES["nack"], params[0])
        else:
            with self._transaction() as conn:
                for one in params:
                    rows.extend(conn.execute(QUERIES["nack"], one))
        nacked = {job_id: queue for job_id, queue in rows}
        self._announce(set(nacked.values()))
        return nacked

    def fail(
        self, job_id: str, error: str, retry_at: float | None, *, attempt: int | None = None
    ) -> bool:
        """Record an error; see :meth:`Store.fail`."""
        now = self.clock.now()
        params = {
            "id": job_id,
            "error": error,
            "retry_at": retry_at,
            "now": now,
            "attempts": attempt,
            "alone": 1,  # one statement, unless the job has waiting children (see ack)
        }
        rows = self._write_returning(QUERIES["fail"], params)
        if not rows:
            params["alone"] = 0
            released = Released()
            with self._transaction() as conn:
                rows = conn.execute(QUERIES["fail"], params).fetchall()
                if rows and rows[0][1] == 4 and rows[0][2]:  # failed for good: a parent
                    resolve(conn, QUERIES, job_id, "failed", now, released)
            self._announce(released.channels)
        if not rows:
            return False
        queue, state, _ = rows[0]
        self._announce([DONE_CHANNEL] if state == 4 else [queue])
        return True

    def working(self, job_id: str, *, attempt: int | None = None) -> float | None:
        """Extend a lease; see :meth:`Store.working`."""
        return self._extend("working", {"id": job_id, "attempts": attempt})

    def progress(self, job_id: str, value: str, *, attempt: int | None = None) -> float | None:
        """Record progress, extend the lease; see :meth:`Store.progress`."""
        return self._extend("progress", {"id": job_id, "attempts": attempt, "progress": value})

    def _extend(self, operation: str, params: dict[str, Any]) -> float | None:
        """Run working or progress on a held job; explain a refusal with the typed error."""
        self._refresh()
        params["now"] = self.clock.now()
        job_id, attempt = params["id"], params["attempts"]
        with self._transaction() as conn:
            row = conn.execute(QUERIES[operation], params).fetchone()
            if row is not None:
                return None if row[0] is None else float(row[0])
            found = conn.execute(QUERIES["show"], (job_id,)).fetchone()
        if found is None:
            raise JobNotFound(job_id)
        job = row_to_job(found)
        if attempt is not None and job.attempts != attempt:
            raise LeaseLost(job_id, operation, attempt, job.attempts, job.state)
        if job.cancel_requested and job.state in (JobState.ACTIVE, JobState.QUEUED):
            raise JobCancelled(job_id, requested=True)
        if job.state is not JobState.ACTIVE:
            raise InvalidState(job_id, job.state, "extend the lease of")
        return None

    def cancel(self, job_id: str, *, attempt: int | None = None) -> JobState:
        """Cancel a job, or ask its holder to stop; see :meth:`Store.cancel`."""
        now = self._refresh()
        params = {"id": job_id, "now": now, "attempts": attempt}
        requested = found = None
        released = Released()
        with self._transaction() as conn:
            finished = conn.execute(
                QUERIES["cancel_pending" if attempt is None else "cancel_held"], params
            ).fetchone()
            if finished is not None and finished[0]:  # it had waiting children
                resolve(conn, QUERIES, job_id, "cancelled", now, released)
            if finished is None and attempt is None:
                requested = conn.execute(QUERIES["request_cancel"], params).fetchone()
            if finished is None and requested is None:
                found = conn.execute(QUERIES["show"], (job_id,)).fetchone()
        if finished is not None or requested is not None:
            released.channels.add(DONE_CHANNEL if finished is not None else CANCEL_CHANNEL)
            self._announce(released.channels)
            return JobState.CANCELLED if finished is not None else JobState.ACTIVE
        if found is None:
            raise JobNotFound(job_id)
        job = row_to_job(found)
        if attempt is not None and job.attempts != attempt:
            raise LeaseLost(job_id, "cancel", attempt, job.attempts, job.state)
        raise InvalidState(job_id, job.state, "cancel" if attempt is None else "end as cancelled")

    def show(self, job_id: str) -> Job | None:
        """Return the job; see :meth:`Store.show`."""
        self._refresh(reading=True)
        with self._connection() as conn:
            row = conn.execute(QUERIES["show"], (job_id,)).fetchone()
        return None if row is None else row_to_job(row)

    def delete(self, job_ids: Sequence[str]) -> int:
        """Delete jobs; see :meth:`Store.delete`."""
        now, released, deleted = self._refresh(), Released(), 0
        with self._transaction() as conn:
            for job_id in job_ids:
                for (has_children,) in conn.execute(QUERIES["delete"], (job_id,)).fetchall():
                    deleted += 1
                    if has_children:
                        resolve(conn, QUERIES, job_id, "deleted", now, released)
        if deleted:
            released.channels.add(DONE_CHANNEL)
            self._announce(released.channels)
        return deleted

    def qlen(self, queue: str) -> int:
        """Count ready jobs; see :meth:`Store.qlen`."""
        self._refresh(reading=True)
        with self._connection() as conn:
            return int(conn.execute(QUERIES["qlen"], (queue,)).fetchone()[0])

    def peek(self, queue: str, count: int) -> list[Job]:
        """The next ready jobs; see :meth:`Store.peek`."""
        self._refresh(reading=True)
        with self._connection() as conn:
            return [row_to_job(row) for row in conn.execute(QUERIES["peek"], (queue, count))]

    def failed(self, queue: str | None, limit: int) -> list[Job]:
        """Failed jobs; see :meth:`Store.failed`."""
        self._refresh(reading=True)
        with self._connection() as conn:
            if queue is None:
                rows = conn.execute(QUERIES["failed_all"], (limit,))
            else:
                rows = conn.execute(QUERIES["failed_in_queue"], (queue, limit))
            return [row_to_job(row) for row in rows]

    def retry(self, job_id: str) -> None:
        """Make a failed job ready; see :meth:`Store.retry`."""
        now = self._refresh()
        with self._transaction() as conn:
            try:
                row = conn.execute(QUERIES["retry"], {"id": job_id, "now": now}).fetchone()
            except sqlite3.IntegrityError:
                # jobs_unique: a job of its queue took its unique key while it was failed.
                raise UniqueKeyTaken(job_id) from None
            found = None if row else conn.execute(QUERIES["show"], (job_id,)).fetchone()
        if row is not None:
            self._announce([row[0]])
            return
        if found is None:
            raise JobNotFound(job_id)
        raise InvalidState(job_id, STATES[found[6]], "retry")

    def enqueue(self, job_ids: Sequence[str]) -> dict[str, str]:
        """Make jobs ready now; see :meth:`Store.enqueue`."""
        self._refresh()
        with self._transaction() as conn:
            enqueued = {
                row[0]: row[1] for i in job_ids for row in conn.execute(QUERIES["enqueue"], (i,))
            }
        self._announce(set(enqueued.values()))
        return enqueued

    def dequeue(self, job_ids: Sequence[str]) -> int:
        """Take ready jobs out of their queue; see :meth:`Store.dequeue`."""
        now = self._refresh()
        with self._transaction() as conn:
            return sum(
                conn.execute(QUERIES["dequeue"], {"id": job_id, "now": now}).rowcount
                for job_id in job_ids
            )

    def scan(
        self,
        cursor: int,
        count: int,
        *,
        queue: str | None = None,
        states: Collection[JobState] | None = None,
    ) -> tuple[int, list[Job]]:
        """Walk jobs in enqueue order; see :meth:`Store.scan`."""
        self._refresh()
        params = {
            "after": cursor,
            "queue": queue,
            "states": None if states is None else json.dumps([STATE_CODES[s] for s in states]),
            "count": count,
        }
        with self._connection() as conn:
            rows = conn.execute(QUERIES["scan"], params).fetchall()
        return (rows[-1][SEQ] if len(rows) >= count else 0), [row_to_job(row) for row in rows]

    def recover_stale(self, max_age: float | None) -> int:
        """Requeue jobs whose worker is gone; see :meth:`Store.recover_stale`."""
        now = self.clock.now()
        recovered, more = 0, True
        with self._connection() as conn:
            while more:  # every lapsed lease, a batch per transaction
                requeued, more = self._apply_due(conn, now)
                recovered += requeued
        if max_age is not None:
            before = {"before": now - max_age}
            recovered += self._write(QUERIES["requeue_leased_before"], before).rowcount
        return recovered

    def release_leases(self, holder: str) -> int:
        """Give back a dead holder's jobs; see :meth:`Store.release_leases`."""
        now, released = self.clock.now(), Released()
        with self._transaction() as conn:
            params = {"holder": holder, "error": HOLDER_GONE, "now": now}
            rows = conn.execute(QUERIES["release_holder"], params).fetchall()
            parents = [job_id for _, state, job_id, children in rows if state == 4 and children]
            resolve_all(conn, QUERIES, parents, "failed", now, released)
        # Requeued jobs wake their queue's getters; failed ones (at-most-once) waiters.
        released.channels.update(queue if state == 1 else DONE_CHANNEL for queue, state, *_ in rows)
        self._announce(released.channels)
        return len(rows)


#: The channel an ack announces (waiters of ``wait``).
_DONE: Final = (DONE_CHANNEL,)
#: An acked row's id and new expiry (see ``_acked``).
_ID: Final = operator.itemgetter(0)
_EXPIRY: Final = operator.itemgetter(1)
#: The earliest lease of claimed jobs none of which has one.
_NEVER: Final = float("inf")
#: The most claimed jobs known for their ack (see ``_ack_claimed``); past it they are
#: forgotten (their acks then find the row by id and read the new expiry back).
_MAX_CLAIMED: Final = 10_000
