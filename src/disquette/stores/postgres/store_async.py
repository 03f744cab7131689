"""The PostgreSQL store: ``postgresql://user@host/db?schema=disquette``.

psycopg 3 with a psycopg_pool pool. Claims are one call of a server-side function that first
applies what time made due (expiry, scheduled jobs, lapsed leases) and then leases jobs
``FOR UPDATE SKIP LOCKED``, so concurrent workers never wait on each other. Adds (and the
other calls that make jobs ready) send a ``NOTIFY`` naming the queue; acks, failures for good
and deletes send one on a second channel, at most one per statement. A dedicated ``LISTEN``
connection, started the first time a call blocks, turns them into in-process wake-ups, so a
waiting ``get`` starts a job added by another process, and a ``wait`` returns a result acked
by another process, within a round trip; ``poll_interval`` is only the fallback for delays,
leases and TTLs running out. It listens on each channel only once something waits for it: a
worker that never calls ``wait`` receives no NOTIFY per ack.

Store-specific powers, beyond the common interface:

- ``add(..., connection=conn)`` and ``ack(..., connection=conn)`` run inside the caller's own
  transaction (a psycopg connection, or a SQLAlchemy session or connection on the psycopg
  driver): the job appears, or is completed, exactly when that transaction commits.
- ``add(..., replicate=n)`` commits with ``synchronous_commit = remote_apply`` and returns only
  once ``n`` standbys have applied the jobs, or raises ``NotReplicated`` first.
- :meth:`AsyncPostgresStore.migrate` applies the versioned migrations (also run on first
  use unless ``?migrate=false``).

URL parameters (the others go to libpq): ``schema`` (default ``disquette``), ``migrate``
(``true``), ``poll_interval`` (0.25 s), ``pool_min`` (1), ``pool_max`` (10),
``retry_for`` (10 s: how long a call, the first one included, waits for a database that
cannot be reached or restarts before it raises ``StoreUnavailable`` naming the cause; 0 tries
once; the same name as on Redis, ``reconnect_timeout`` is its older name), ``listen``
(``true``), ``vacuum_every`` (50000: run ``VACUUM`` on the jobs table after this many claims
and acks by this store; 0 disables).

Connecting: the first call connects directly (not through the pool, whose connection errors
only reach its log), so a server that refuses the URL (failed authentication, a missing
database or role, no ``pg_hba.conf`` entry) raises ``StoreRefused`` at once, with the
server's reason. The pool's own warnings about failed connection attempts are logged at
DEBUG: the store retries, and raises one error if retrying did not help.

Retries: a call whose connection fails (a restart, a failover, a reply lost on the way) is
run again on another connection. Every operation is safe to repeat: an add skips ids the
store holds, in ``jobs`` or in ``done``, so one whose commit went through is not added
twice, even if a worker finished the job meanwhile; acks, nacks and failures change only
jobs in the state they expect. Other database errors raise ``StoreError``.

Tables (in the schema): ``jobs`` holds pending jobs only (scheduled, queued, active, failed);
an ack moves a job to ``done`` (or deletes it when ``result_ttl`` is 0), where it stays for
``wait`` until its ``result_ttl`` and is then pruned in bounded batches. So the hot table's
live size is the backlog, never the history, and the claim's partial index holds only ready
jobs. Each claim and ack still leaves a dead row version; autovacuum wakes up once a minute
at best, so the store also runs ``VACUUM`` on ``jobs`` every ``vacuum_every`` jobs it moves
(``bench/bench_postgres.py --churn 1000000``: the heap stays ~9 MB through a million jobs).

Replication (``replicate=n``): give the primary ``synchronous_standby_names`` naming the
standbys (``'FIRST 1 (standby_a, standby_b)'`` or ``'ANY 2 (...)'``), start each standby from
``pg_basebackup -R -d application_name=<its name>``, and connect as a role that may read
``pg_stat_replication`` in full (superuser or ``pg_monitor``). An add with ``replicate=n``
counts the streaming standbys in ``sync``/``quorum`` state, raises ``NotReplicated`` before
writing when there are fewer than ``n``, commits with ``synchronous_commit = remote_apply``,
and checks that ``n`` standbys replayed the commit. ``tests/stores/test_postgres.py`` builds
exactly this with a private primary and standby.

This file is the asyncio source; ``disquette/_sync/stores/postgres.py`` is generated from it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import math
import re
import threading
import time
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Sequence,
)
from importlib import resources
from typing import Any, Final, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ..._concurrency import AsyncBackground, AsyncLock, async_sleep
from ...clock import Clock
from ...errors import (
    ClientClosed,
    InvalidOption,
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
from ...job import Job, JobState, Stats, StatsRow
from .._sql import (
    COLUMNS,
    SEQ,
    STATE_CODES,
    STATES,
    load_named_blocks,
    numbered_migrations,
    row_to_job,
)
from .._url import flag, number
from ..store_async import AsyncStore
from ..types import (
    DONE_CHANNEL,
    HOLDER_GONE,
    NO_RESULT,
    PAUSE_MODES,
    PAUSE_OUT,
    EncodedResult,
    NodeInfo,
    PauseMode,
    QueueInfo,
    Wakeups,
    pause_bits,
)

T = TypeVar("T")

#: The SQLSTATE {schema}.accepts() raises for a queue paused for input.
_QUEUE_PAUSED: Final = "DQ001"
_DONE_COLUMNS: Final = (
    "id, queue, body, encoding, type, priority, 3::int2, created_at, run_at, retry_after, "
    "expires_at, max_attempts, result_ttl, attempts, nacks, additional_deliveries, "
    "error_count, last_error, NULL::float8, result, result_encoding, finished_at, seq"
)
#: Claims naming a holder between two prunes of the holders table (see ``_held``).
_PRUNE_HOLDERS_EVERY: Final = 10_000
_SCHEMA_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")
#: Errors after which the same call may succeed: the connection or the server went away
#: (restart, failover, pool exhausted while reconnecting), or a deadlock was broken.
_TRANSIENT: Final = (psycopg.OperationalError, psycopg.errors.TransactionRollback)
#: What a server says, when it is up, to a URL it will never accept: a missing database or
#: role, failed authentication, no pg_hba.conf entry, no CONNECT privilege, a TLS mode it
#: cannot meet. libpq gives connection errors as text only (no SQLSTATE before a session
#: exists), in the server's language: a refusal not recognised here (or translated) is
#: retried for ``reconnect_timeout`` like an outage, and then reported with its text.
_REFUSED: Final = re.compile(
    r"does not exist|authentication failed|no pg_hba\.conf entry|pg_hba\.conf rejects"
    r"|not permitted to log in|permission denied|no password supplied|SSL was required"
    r"|does not support SSL|certificate verify failed"
)
#: How long one wait for a pooled connection lasts (a call that may retry waits again).
#: The pool does not retry a connection attempt that failed: psycopg_pool's own backoff
#: (1, 2, 4... s) would keep a call waiting seconds after the server came back; each new
#: wait makes it try at once. Even a call that may not retry (``reconnect_timeout=0``) gives
#: the pool this long to open a connection.
_POOL_WAIT: Final = 1.0
#: The prefix of our pools' names, by which their log records are recognised.
_POOL_PREFIX: Final = "disquette-"
#: The schema was never migrated (``?migrate=false``) or was dropped.
_MISSING_SCHEMA: Final = (
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedFunction,
    psycopg.errors.InvalidSchemaName,
)
#: How often the sync flavor's listener thread looks up from its socket to see if the store
#: was closed (the asyncio flavor's listener task is cancelled instead).
_LISTEN_TICK: Final = 0.2

_PARAMETERS: Final = {
    "schema",
    "migrate",
    "poll_interval",
    "pool_min",
    "pool_max",
    "reconnect_timeout",
    "retry_for",
    "listen",
    "vacuum_every",
}


def _retry_for(url: str, ours: dict[str, str]) -> float:
    """``retry_for``, the name every store takes; ``reconnect_timeout`` is its older name."""
    given = [name for name in ("retry_for", "reconnect_timeout") if name in ours]
    if len(given) > 1:
        raise InvalidURL(url, "give retry_for or its older name reconnect_timeout, not both")
    return number(url, ours, next(iter(given), "retry_for"), 10, 0, 3600)


def _cause(exc: Exception) -> str:
    """The first line of a psycopg error, without libpq's framing: ``Connection refused``,
    ``database "x" does not exist``."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = text.rpartition(" failed: ")[2] or text
    return re.sub(r"^(FATAL|ERROR):\s+", "", text)


def _store_error(exc: psycopg.Error) -> Exception:
    """The disquette error for a psycopg error no retry cures."""
    if exc.sqlstate == _QUEUE_PAUSED:
        return QueuePaused(exc.diag.message_primary or "")
    return StoreError("PostgreSQL", _cause(exc))


class _ConnectionNoise(logging.Filter):
    """Turns psycopg's warnings about our pools' connections (each failed connection
    attempt, each broken connection dropped, each pipeline cut short by a lost connection)
    into debug records: the store retries those itself and raises one error naming the
    cause when retrying did not help."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if record.levelno == logging.WARNING and any(_ours(arg) for arg in args):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def _ours(arg: object) -> bool:
    """Whether a log record's argument is one of our pools (by name), or a connection or
    pipeline of one of them."""
    if isinstance(arg, str):
        return arg.startswith(_POOL_PREFIX)
    connection = getattr(arg, "_conn", arg)  # a pipeline's connection
    name = getattr(getattr(connection, "_pool", None), "name", None)
    return isinstance(name, str) and name.startswith(_POOL_PREFIX)


for _logger in ("psycopg.pool", "psycopg"):
    logging.getLogger(_logger).addFilter(_ConnectionNoise())


def _sql_dir() -> Any:
    return resources.files(__package__) / "sql"


def _quote(schema: str) -> str:
    return '"' + schema.replace('"', '""') + '"'


@functools.cache
def _migrations() -> tuple[tuple[int, str, str], ...]:
    """(version, name, text) of every migration file, in order."""
    return numbered_migrations(_sql_dir())


@functools.cache
def queries(schema: str) -> dict[str, str]:
    """The named statements of ``queries.sql`` for one schema."""
    return load_named_blocks(
        (_sql_dir() / "queries.sql").read_text(),
        "postgres/queries.sql",
        columns=COLUMNS,
        done_columns=_DONE_COLUMNS,
        schema=_quote(schema),
    )


def channel_name(schema: str, suffix: str = "") -> str:
    """The NOTIFY channel of a schema (at most 63 bytes, PostgreSQL's identifier limit):
    jobs became ready in the queue named by the payload; with ``suffix=".done"``, the
    channel of "a job is done or gone" (a schema name has no dot, so the two never meet)."""
    name = f"disquette.{schema}{suffix}"
    if len(name.encode()) > 63:
        name = f"disquette.{hashlib.sha1(schema.encode()).hexdigest()}{suffix}"
    return name


def _settings(job: Job) -> tuple[object, ...]:
    return (
        job.queue,
        job.type,
        job.priority,
        job.created_at,
        job.run_at,
        job.retry_after,
        job.expires_at,
        job.max_attempts,
        job.result_ttl,
    )


def _uniform(jobs: Sequence[Job]) -> bool:
    """Whether the jobs differ only in id, body and encoding (what ``add_many`` makes)."""
    shared = _settings(jobs[0])
    return all(_settings(job) == shared for job in jobs)


async def _driver_connection(connection: object) -> AsyncConnection[Any]:
    """The psycopg connection behind ``connection``: a psycopg connection itself, or a
    SQLAlchemy session or connection bound to a ``postgresql+psycopg`` engine (for the
    asyncio flavor, an ``AsyncSession`` or ``AsyncConnection``)."""
    if isinstance(connection, AsyncConnection):
        return connection
    wrapper: Any = connection
    driver: object = None
    get_raw = getattr(wrapper, "get_raw_connection", None)
    if get_raw is not None:  # SQLAlchemy's AsyncConnection
        if not wrapper.in_transaction():
            await wrapper.begin()  # so that its commit() commits what we write
        driver = (await get_raw()).driver_connection
    else:
        inner = getattr(wrapper, "connection", None)
        if callable(inner):  # a Session: its connection, inside its transaction
            return await _driver_connection(await inner())
        driver = getattr(inner, "driver_connection", None)  # a Connection's DB-API proxy
        if driver is not None and not wrapper.in_transaction():
            wrapper.begin()  # so that its commit() commits what we write
    if isinstance(driver, AsyncConnection):
        return driver
    raise InvalidOption(
        "connection",
        connection,
        "expected a psycopg 3 connection, or a SQLAlchemy session or connection on the "
        "psycopg driver, of the same flavor (sync or asyncio) as the client",
    )


def migration_script(schema: str) -> str:
    """One SQL script that brings ``schema`` up to date: lock, create what is missing, apply
    each pending migration and record it, in one transaction."""
    quoted = _quote(schema)
    table = f"{quoted}.schema_migrations"
    lock_key = f"disquette migrate {schema}".replace("'", "''")
    parts = [
        "BEGIN;",
        f"SELECT pg_advisory_xact_lock(hashtextextended('{lock_key}', 0));",
        f"CREATE SCHEMA IF NOT EXISTS {quoted};",
        f"CREATE TABLE IF NOT EXISTS {table} (version integer PRIMARY KEY, "
        "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());",
    ]
    for version, name, text in _migrations():
        parts.append(
            f"DO $disquette$ BEGIN\n"
            f"IF NOT EXISTS (SELECT FROM {table} WHERE version = {version}) THEN\n"
            f"EXECUTE $migration${text.replace('{schema}', quoted)}$migration$;\n"
            f"INSERT INTO {table} (version, name) VALUES ({version}, '{name}');\n"
            "END IF;\nEND $disquette$;"
        )
    parts.append("COMMIT;")
    return "\n".join(parts)


async def migrate_connection(conn: AsyncConnection[Any], schema: str) -> list[int]:
    """Bring ``schema`` up to date on ``conn`` (an autocommit connection); return the
    versions that were missing. Safe to run from several processes at once.

    The work is one script, sent in one round trip: the server finishes the transaction on
    its own, so a caller that blocks its event loop (a sync client called inside a
    coroutine) cannot leave the migration lock held while another store waits for it.
    """
    table = f"{_quote(schema)}.schema_migrations"
    try:
        cursor = await conn.execute(f"SELECT coalesce(max(version), 0) FROM {table}")
        row = await cursor.fetchone()
        current = int(row[0]) if row is not None else 0
    except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
        current = 0
    missing = [version for version, _, _ in _migrations() if version > current]
    if missing:
        await conn.execute(migration_script(schema))
    return missing


class AsyncPostgresStore(AsyncStore):
    """Jobs in PostgreSQL tables of one schema, reached through a connection pool."""

    #: Every capability: transactions (``connection=``), synchronous standbys, migrations.
    capabilities = AsyncStore.capabilities.replace(
        transactions=True, replication=True, node_registry=True, migrations=True
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
        if not _SCHEMA_NAME.fullmatch(schema):
            raise InvalidOption("schema", schema, "letters, digits, _ and $, at most 63")
        self.url = url or conninfo
        self.clock = clock
        self.schema = schema
        self.channel = channel_name(schema)
        #: The channel of acks, failures for good and deletes (what ``wait`` waits for).
        self.done_channel = channel_name(schema, ".done")
        self.poll_interval = poll_interval
        self.wakeups = Wakeups(on_subscribe=self._on_subscribe if listen else None)
        self._q = queries(schema)
        self._conninfo = conninfo
        self._application_name = application_name
        self._migrate = migrate
        self._reconnect_timeout = reconnect_timeout
        self._vacuum_every = vacuum_every
        self._holder_rows = 0
        self._churn = 0
        try:
            libpq_settings = conninfo_to_dict(conninfo)
        except psycopg.ProgrammingError as exc:
            raise InvalidURL(self.url, _cause(exc)) from None
        self._explicit_connect_timeout = "connect_timeout" in libpq_settings
        self._pool = AsyncConnectionPool(
            conninfo,
            min_size=pool_min,
            max_size=pool_max,
            open=False,
            timeout=_POOL_WAIT,
            reconnect_timeout=0,  # the store retries (see _POOL_WAIT)
            num_workers=1,
            name=f"{_POOL_PREFIX}{schema}",
            kwargs={"autocommit": True, "application_name": application_name},
        )
        self._lock = threading.Lock()
        #: One first connection at a time: callers that arrive meanwhile wait for its outcome.
        self._starting = AsyncLock()
        self._ready = False
        self._closed = False
        self._listener: AsyncBackground | None = None
        #: The channels the listener should LISTEN on: each once something waits for it.
        self._wanted: frozenset[str] = frozenset()

    # -- plumbing ------------------------------------------------------------------------

    async def _run(
        self, operation: Callable[[AsyncConnection[Any]], Awaitable[T]], *, migrated: bool = True
    ) -> T:
        """Run ``operation`` on a pooled connection, again while the database is briefly
        unreachable, for ``reconnect_timeout`` seconds at most; then raise
        :class:`StoreUnavailable` naming the cause. A server that refuses the URL for good
        (authentication, a missing database or role) raises :class:`StoreRefused` at once.

        Every operation is safe to run again after its reply was lost: an add skips the ids
        the store holds (pending or done), and the others change only jobs still in the
        state they expect. With ``migrated`` (the default), the schema is first brought up
        to date if needed.
        """
        deadline: float | None = None
        delay = 0.02
        while True:
            if self._closed:
                raise ClientClosed(f"the PostgreSQL store {self.url} is closed")
            started = time.monotonic()
            try:
                if not self._ready:
                    async with self._starting:
                        if not self._ready:
                            await self._start(
                                deadline or started + self._reconnect_timeout, migrated
                            )
                async with self._pool.connection() as conn:
                    return await operation(conn)
            except _MISSING_SCHEMA as exc:
                raise StoreUnavailable(
                    f"PostgreSQL {self.url}: schema {self.schema!r} has no disquette tables; "
                    "migrate it (disquette migrate --url ..., or leave migrate=true)"
                ) from exc
            except _TRANSIENT as exc:
                if self._closed:
                    raise ClientClosed(f"the PostgreSQL store {self.url} is closed") from exc
                now = time.monotonic()
                if deadline is None:
                    # A pool that waited in vain was failing since the wait began.
                    failing_since = started if isinstance(exc, PoolTimeout) else now
                    deadline = failing_since + self._reconnect_timeout
                if now >= deadline:
                    raise await self._unreachable(exc) from exc
                await async_sleep(min(delay, deadline - now))
                delay = min(delay * 2, 0.5)
            except psycopg.Error as exc:
                raise _store_error(exc) from exc

    async def _start(self, deadline: float, migrated: bool) -> None:
        """First use: reach the server (waiting for it until ``deadline``), migrate on that
        connection if asked, then open the pool.

        The first connection is made here rather than by the pool, whose connection
        errors only reach its log: this one says at once why a server refuses us.
        """
        conn = await self._connect(deadline)
        try:
            if migrated and self._migrate:
                await migrate_connection(conn, self.schema)
        finally:
            with contextlib.suppress(psycopg.Error):
                await conn.close()
        await self._pool.open()
        if migrated:
            self._ready = True

    async def _connect(self, deadline: float) -> AsyncConnection[Any]:
        """A connection made directly, retried until ``deadline`` while the server cannot
        be reached; :class:`StoreRefused` at once when it answers with a refusal."""
        delay = 0.02
        while True:
            remaining = deadline - time.monotonic()
            try:
                return await AsyncConnection.connect(
                    self._conninfo,
                    autocommit=True,
                    application_name=self._application_name,
                    # libpq would wait forever for a server that does not answer.
                    **self._connect_timeout(remaining),
                )
            except psycopg.OperationalError as exc:
                if _REFUSED.search(str(exc)):
                    raise StoreRefused(f"PostgreSQL {self.url}: {_cause(exc)}") from exc
                if self._closed:
                    raise ClientClosed(f"the PostgreSQL store {self.url} is closed") from exc
                now = time.monotonic()
                if now >= deadline:
                    raise StoreUnavailable(self._after_retries(exc)) from exc
                await async_sleep(min(delay, deadline - now))
                delay = min(delay * 2, 0.5)

    def _connect_timeout(self, remaining: float) -> dict[str, Any]:
        if self._explicit_connect_timeout:
            return {}
        return {"connect_timeout": max(2, math.ceil(remaining))}  # libpq takes whole seconds

    async def _unreachable(self, exc: Exception) -> StoreUnavailable:
        """The error to raise once retries ran out. A pool timeout says only that no
        connection came: a direct attempt tells a refusal, an unreachable server and a
        pool whose connections are all busy apart."""
        if not isinstance(exc, PoolTimeout):
            return StoreUnavailable(self._after_retries(exc))
        try:
            conn = await self._connect(time.monotonic())
        except StoreUnavailable as diagnosis:
            return diagnosis
        await conn.close()
        return StoreUnavailable(
            f"PostgreSQL {self.url}: no free connection in the pool (pool_max="
            f"{self._pool.max_size}): every one was in use"
        )

    def _after_retries(self, exc: Exception) -> str:
        retried = f" (retried for {self._reconnect_timeout:g} s)" if self._reconnect_timeout else ""
        return f"PostgreSQL {self.url}: {_cause(exc)}{retried}"

    async def _on_caller_connection(
        self,
        connection: object,
        operation: Callable[[AsyncConnection[Any]], Awaitable[T]],
    ) -> T:
        """Run ``operation`` inside the caller's transaction: never retried, since the
        transaction is the caller's to repeat."""
        if not self._ready:  # the schema must exist before the caller's statement uses it

            async def nothing(conn: AsyncConnection[Any]) -> None:
                return None

            await self._run(nothing)
        if self._closed:
            raise ClientClosed(f"the PostgreSQL store {self.url} is closed")
        conn = await _driver_connection(connection)
        try:
            return await operation(conn)
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"PostgreSQL (caller's connection): {_cause(exc)}") from exc
        except psycopg.Error as exc:
            raise _store_error(exc) from exc

    async def _maintain(self, conn: AsyncConnection[Any], now: float) -> int:
        cursor = conn.cursor(row_factory=tuple_row)
        await cursor.execute(self._q["maintain"], {"now": now})
        row = await cursor.fetchone()
        return int(row[0]) if row is not None else 0

    async def _churned(self, jobs: int) -> None:
        """Count row versions left behind; VACUUM the jobs table every ``vacuum_every``.

        Autovacuum wakes up once a minute at best, and a busy queue leaves a dead row
        version per claim and per ack: vacuuming on a count keeps the heap the size of the
        backlog instead of the size of the last minute's traffic.
        """
        if not self._vacuum_every:
            return
        self._churn += jobs
        if self._churn < self._vacuum_every:
            return
        self._churn = 0

        async def vacuum(conn: AsyncConnection[Any]) -> None:
            await conn.execute(self._q["vacuum"])

        # Housekeeping must never fail the call that happened to trigger it.
        with contextlib.suppress(psycopg.Error, StoreUnavailable):
            await self._run(vacuum)

    async def _held(self, jobs: int) -> None:
        """Count claims that wrote a holder row; prune the rows of deliveries that are over
        every :data:`_PRUNE_HOLDERS_EVERY` of them, so the holders table stays the size of
        the held jobs (ack, nack and fail leave their row alone: they cost nothing more)."""
        self._holder_rows += jobs
        if self._holder_rows < _PRUNE_HOLDERS_EVERY:
            return
        self._holder_rows = 0

        async def prune(conn: AsyncConnection[Any]) -> None:
            await conn.execute(self._q["prune_holders"])

        # Housekeeping must never fail the call that happened to trigger it.
        with contextlib.suppress(psycopg.Error, StoreUnavailable):
            await self._run(prune)

    def _on_subscribe(self, channels: list[str]) -> None:
        # A blocked get needs the NOTIFYs of adds, a wait those of acks, failures, deletes.
        # Each channel is listened to only once needed: a process that only gets (a worker)
        # is not sent a NOTIFY per ack, which costs it ~0.1 ms of CPU each.
        wanted = {self.done_channel if name == DONE_CHANNEL else self.channel for name in channels}
        if self._listener is not None and wanted <= self._wanted:
            return
        with self._lock:
            self._wanted = self._wanted | wanted
            if self._listener is None and not self._closed:
                self._listener = AsyncBackground(self._listen, name="disquette-listen")

    async def _listen(self) -> None:
        """Turn NOTIFYs into wake-ups; reconnect when the connection is lost."""
        delay = 0.02
        while not self._closed:
            try:
                conn = await AsyncConnection.connect(
                    self._conninfo,
                    autocommit=True,
                    application_name=f"{self._application_name} listener",
                )
            except psycopg.OperationalError:
                await async_sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            try:
                listening: frozenset[str] = frozenset()
                while not self._closed:
                    wanted = self._wanted
                    if wanted != listening:
                        for name in sorted(wanted - listening):
                            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(name)))
                        listening = wanted
                        delay = 0.02
                        # What changed while no LISTEN was active sent its NOTIFY to nobody:
                        # every waiter claims, or reads its job, once more now. (A channel
                        # wanted while listening on another is listened to within a tick.)
                        self.wakeups.notify_all()
                    # Returns after _LISTEN_TICK even while NOTIFYs keep coming.
                    async for notify in conn.notifies(timeout=_LISTEN_TICK):
                        if notify.channel == self.done_channel:
                            self.wakeups.notify([DONE_CHANNEL])
                        else:
                            self.wakeups.notify([notify.payload])
            except psycopg.Error:  # lost connection (or anything else): start over
                await async_sleep(delay)
                delay = min(delay * 2, 1.0)
            finally:
                with contextlib.suppress(psycopg.Error):
                    await conn.close()

    # -- store-specific ------------------------------------------------------------------

    async def migrate(self) -> list[int]:
        """Apply the migrations this schema lacks; return the versions applied."""

        async def run(conn: AsyncConnection[Any]) -> list[int]:
            return await migrate_connection(conn, self.schema)

        applied = await self._run(run, migrated=False)
        self._ready = True
        return applied

    # -- the interface -------------------------------------------------------------------

    async def add(
        self,
        jobs: Sequence[Job],
        max_len: int | None,
        *,
        connection: object = None,
        replicate: int = 0,
    ) -> None:
        """Insert jobs in one transaction; see :meth:`AsyncStore.add`.

        With ``connection``, inside the caller's transaction. With ``replicate``, the
        commit waits for synchronous standbys to apply it (``remote_apply``), and
        ``NotReplicated`` is raised first if fewer than ``replicate`` are connected.
        """
        now = self.clock.now()
        if len(jobs) == 1:
            job = jobs[0]
            statement = self._q["insert_one"]
            params: dict[str, Any] = {
                "id": job.id,
                "queue": job.queue,
                "body": job.raw_body,
                "encoding": int(job.encoding),
                "type": job.type,
                "priority": job.priority,
                "state": 1 if job.run_at <= now else 0,
                "created_at": job.created_at,
                "run_at": job.run_at,
                "retry_after": job.retry_after,
                "expires_at": job.expires_at,
                "max_attempts": job.max_attempts,
                "result_ttl": job.result_ttl,
                "channel": self.channel,
            }
        elif _uniform(jobs):
            job = jobs[0]
            statement = self._q["insert_uniform"]
            params = {
                "ids": [job.id for job in jobs],
                "bodies": [job.raw_body for job in jobs],
                "encodings": [int(job.encoding) for job in jobs],
                "queue": job.queue,
                "type": job.type,
                "priority": job.priority,
                "state": 1 if job.run_at <= now else 0,
                "created_at": job.created_at,
                "run_at": job.run_at,
                "retry_after": job.retry_after,
                "expires_at": job.expires_at,
                "max_attempts": job.max_attempts,
                "result_ttl": job.result_ttl,
                "channel": self.channel,
            }
        else:
            statement = self._q["insert"]
            params = {
                "ids": [job.id for job in jobs],
                "queues": [job.queue for job in jobs],
                "bodies": [job.raw_body for job in jobs],
                "encodings": [int(job.encoding) for job in jobs],
                "types": [job.type for job in jobs],
                "priorities": [job.priority for job in jobs],
                "states": [1 if job.run_at <= now else 0 for job in jobs],
                "created_at": [job.created_at for job in jobs],
                "run_at": [job.run_at for job in jobs],
                "retry_after": [job.retry_after for job in jobs],
                "expires_at": [job.expires_at for job in jobs],
                "max_attempts": [job.max_attempts for job in jobs],
                "result_ttl": [job.result_ttl for job in jobs],
                "channel": self.channel,
            }
        ready = {job.queue for job in jobs if job.run_at <= now}
        runs = 0

        async def insert(conn: AsyncConnection[Any]) -> None:
            nonlocal runs
            runs += 1
            # Run again (its reply lost), the add may meet its own jobs, finished meanwhile:
            # the statement skips ids in the done table, but an ack that commits while it
            # runs is not in its snapshot. A second statement, with a later snapshot, takes
            # back what it added for such ids (all in one transaction).
            again = runs > 1
            if max_len is None and not replicate and not again:
                await conn.execute(statement, params)
                return
            lsn = None
            async with conn.transaction():
                if replicate:
                    await self._require_standbys(conn, replicate)
                if max_len is not None:
                    await self._check_room(conn, jobs, ready, max_len, now)
                await conn.execute(statement, params)
                if again:
                    ids = [job.id for job in jobs]
                    await conn.execute(self._q["take_back_finished"], {"ids": ids})
                if replicate:
                    # The commit record comes after this point of the WAL: a standby that
                    # replayed past it has applied the jobs.
                    cursor = await conn.execute("SELECT pg_current_wal_insert_lsn()::text")
                    row = await cursor.fetchone()
                    lsn = None if row is None else str(row[0])
            if lsn is not None:
                await self._await_standbys(conn, replicate, lsn)

        if connection is not None:
            if replicate:
                raise InvalidOption("replicate", replicate, "not with the caller's connection")
            await self._on_caller_connection(connection, insert)
        else:
            await self._run(insert)
        self.wakeups.notify(ready)

    async def _check_room(
        self,
        conn: AsyncConnection[Any],
        jobs: Sequence[Job],
        ready: set[str],
        max_len: int,
        now: float,
    ) -> None:
        await self._maintain(conn, now)
        incoming = {queue: 0 for queue in sorted(ready)}  # sorted: locks in one order
        for job in jobs:
            if job.queue in incoming and job.run_at <= now:
                incoming[job.queue] += 1
        for queue, extra in incoming.items():
            cursor = conn.cursor(row_factory=tuple_row)
            await cursor.execute(self._q["lock_queue"], {"key": f"{self.schema}\x1f{queue}"})
            await cursor.execute(self._q["count_queued_up_to"], {"queue": queue, "limit": max_len})
            row = await cursor.fetchone()
            if (row[0] if row is not None else 0) + extra > max_len:
                raise QueueFull(queue, max_len)

    async def _require_standbys(self, conn: AsyncConnection[Any], wanted: int) -> None:
        await conn.execute("SET LOCAL synchronous_commit = remote_apply")
        cursor = await conn.execute(self._q["synchronous_standbys"])
        row = await cursor.fetchone()
        available = int(row[0]) if row is not None else 0
        if available < wanted:
            raise NotReplicated(wanted, available, "postgresql")

    async def _await_standbys(self, conn: AsyncConnection[Any], wanted: int, lsn: str) -> None:
        """After a ``remote_apply`` commit: check that ``wanted`` standbys replayed past it
        (with quorum commit, the server may have waited for fewer)."""
        deadline = time.monotonic() + self._reconnect_timeout
        while True:
            cursor = await conn.execute(self._q["standbys_applied"], {"lsn": lsn})
            row = await cursor.fetchone()
            applied = int(row[0]) if row is not None else 0
            if applied >= wanted:
                return
            if time.monotonic() >= deadline:
                raise NotReplicated(wanted, applied, "postgresql")
            await async_sleep(0.005)

    async def claim(
        self, queues: Sequence[str], count: int, *, holder: str | None = None
    ) -> list[Job]:
        """Lease ready jobs; see :meth:`AsyncStore.claim`."""
        params = {"queues": list(queues), "count": count, "now": self.clock.now(), "holder": holder}

        async def claim(conn: AsyncConnection[Any]) -> list[Any]:
            cursor = await conn.execute(self._q["claim"], params, binary=True)
            return await cursor.fetchall()

        rows = await self._run(claim)
        if not rows:
            return []
        if len(rows) > 1:
            # The function returns each queue's jobs in turn, each block in no set order.
            position = {queue: index for index, queue in enumerate(queues)}
            rows.sort(key=lambda row: (position[row[1]], row[5], row[8], row[22]))
        await self._churned(len(rows))
        if holder is not None:
            await self._held(len(rows))
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

        async def ack(conn: AsyncConnection[Any]) -> list[str]:
            cursor = conn.cursor(row_factory=tuple_row)
            await cursor.execute(self._q["ack"], params)
            return [row[0] for row in await cursor.fetchall()]

        if connection is not None:
            done = await self._on_caller_connection(connection, ack)
        else:
            done = await self._run(ack)
        if done:
            self.wakeups.notify([DONE_CHANNEL])
            await self._churned(len(done))
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

        nacked = dict(await self._run(nack))
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

        async def fail(conn: AsyncConnection[Any]) -> tuple[str, int] | None:
            cursor = await conn.execute(self._q["fail"], params)
            row = await cursor.fetchone()
            return None if row is None else (row[0], row[1])

        found = await self._run(fail)
        if found is None:
            return False
        queue, state = found
        self.wakeups.notify([DONE_CHANNEL] if state == 4 else [queue] if state == 1 else [])
        return True

    async def working(self, job_id: str, *, attempt: int | None = None) -> float | None:
        """Extend a lease; see :meth:`AsyncStore.working`."""
        now = self.clock.now()
        params = {"id": job_id, "now": now, "attempts": attempt}

        async def working(conn: AsyncConnection[Any]) -> tuple[float | None, Job | None]:
            await self._maintain(conn, now)
            cursor = await conn.execute(self._q["working"], params)
            row = await cursor.fetchone()
            if row is not None:
                return float(row[0]), None
            return None, await self._show(conn, job_id, now)

        lease_until, job = await self._run(working)
        if lease_until is not None:
            return lease_until
        if job is None:
            raise JobNotFound(job_id)
        if attempt is not None and job.attempts != attempt:
            raise LeaseLost(job_id, "working", attempt, job.attempts, job.state)
        if job.state is not JobState.ACTIVE:
            raise InvalidState(job_id, job.state, "extend the lease of")
        return None

    async def _after_maintenance(
        self,
        conn: AsyncConnection[Any],
        now: float,
        statement: str,
        params: dict[str, Any],
        binary: bool = False,
    ) -> list[Any]:
        """The maintenance, then ``statement``: sent together in one round trip (a psycopg
        pipeline); in autocommit each is its own transaction, so the read sees the result."""
        async with conn.pipeline():
            await conn.execute(self._q["maintain"], {"now": now})
            cursor = await conn.execute(statement, params, binary=binary)
        return await cursor.fetchall()

    async def _show(self, conn: AsyncConnection[Any], job_id: str, now: float) -> Job | None:
        cursor = await conn.execute(self._q["show"], {"id": job_id, "now": now}, binary=True)
        row = await cursor.fetchone()
        return None if row is None else row_to_job(row)

    async def show(self, job_id: str) -> Job | None:
        """Return the job; see :meth:`AsyncStore.show`."""
        now = self.clock.now()

        async def show(conn: AsyncConnection[Any]) -> Job | None:
            params = {"id": job_id, "now": now}
            rows = await self._after_maintenance(conn, now, self._q["show"], params, True)
            return row_to_job(rows[0]) if rows else None

        return await self._run(show)

    async def delete(self, job_ids: Sequence[str]) -> int:
        """Delete jobs; see :meth:`AsyncStore.delete`."""
        now = self.clock.now()

        async def delete(conn: AsyncConnection[Any]) -> int:
            params = {"ids": list(job_ids), "now": now, "done_channel": self.done_channel}
            rows = await self._after_maintenance(conn, now, self._q["delete"], params)
            return int(rows[0][0])

        deleted = await self._run(delete)
        if deleted:
            self.wakeups.notify([DONE_CHANNEL])
        return deleted

    async def qlen(self, queue: str) -> int:
        """Count ready jobs; see :meth:`AsyncStore.qlen`."""
        now = self.clock.now()

        async def qlen(conn: AsyncConnection[Any]) -> int:
            rows = await self._after_maintenance(conn, now, self._q["qlen"], {"queue": queue})
            return int(rows[0][0])

        return await self._run(qlen)

    async def _select_jobs(self, statement: str, params: dict[str, Any]) -> list[Job]:
        now = self.clock.now()

        async def select(conn: AsyncConnection[Any]) -> list[Job]:
            rows = await self._after_maintenance(conn, now, statement, params, True)
            return [row_to_job(row) for row in rows]

        return await self._run(select)

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
            await self._maintain(conn, now)
            cursor = await conn.execute(
                self._q["retry"], {"id": job_id, "now": now, "channel": self.channel}
            )
            row = await cursor.fetchone()
            if row is not None:
                return row[0], None
            return None, await self._show(conn, job_id, now)

        queue, job = await self._run(retry)
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

        await self._run(pause)
        if not paused:
            self.wakeups.notify([queue])

    async def set_pause(self, queue: str, mode: PauseMode) -> None:
        """Set a queue's pause mode; see :meth:`AsyncStore.set_pause`."""
        params = {"queue": queue, "mode": pause_bits(mode), "channel": self.channel}

        async def set_pause(conn: AsyncConnection[Any]) -> None:
            await conn.execute(self._q["set_pause"], params)

        await self._run(set_pause)
        if not pause_bits(mode) & PAUSE_OUT:
            self.wakeups.notify([queue])

    async def pause_mode(self, queue: str) -> PauseMode:
        """A queue's pause mode; see :meth:`AsyncStore.pause_mode`."""

        async def pause_mode(conn: AsyncConnection[Any]) -> int:
            cursor = await conn.execute(self._q["pause_mode"], {"queue": queue})
            row = await cursor.fetchone()
            return int(row[0]) if row is not None else 0

        return PAUSE_MODES[await self._run(pause_mode)]

    async def enqueue(self, job_ids: Sequence[str]) -> dict[str, str]:
        """Make jobs ready now; see :meth:`AsyncStore.enqueue`."""
        now = self.clock.now()
        params = {"ids": list(job_ids), "channel": self.channel}

        async def enqueue(conn: AsyncConnection[Any]) -> dict[str, str]:
            rows = await self._after_maintenance(conn, now, self._q["enqueue"], params)
            return {row[0]: row[1] for row in rows}

        enqueued = await self._run(enqueue)
        self.wakeups.notify(set(enqueued.values()))
        return enqueued

    async def dequeue(self, job_ids: Sequence[str]) -> int:
        """Take ready jobs out of their queue; see :meth:`AsyncStore.dequeue`."""
        now = self.clock.now()
        params = {"ids": list(job_ids), "now": now}

        async def dequeue(conn: AsyncConnection[Any]) -> int:
            rows = await self._after_maintenance(conn, now, self._q["dequeue"], params)
            return int(rows[0][0])

        return await self._run(dequeue)

    async def scan(
        self,
        cursor: int,
        count: int,
        *,
        queue: str | None = None,
        states: Collection[JobState] | None = None,
    ) -> tuple[int, list[Job]]:
        """Walk jobs in enqueue order; see :meth:`AsyncStore.scan`."""
        now = self.clock.now()
        params = {
            "after": cursor,
            "now": now,
            "queue": queue,
            "states": None if states is None else [STATE_CODES[state] for state in states],
            "count": count,
        }

        async def scan(conn: AsyncConnection[Any]) -> list[Any]:
            return await self._after_maintenance(conn, now, self._q["scan"], params, True)

        rows = await self._run(scan)
        return (int(rows[-1][SEQ]) if len(rows) >= count else 0), [row_to_job(r) for r in rows]

    async def queues(self) -> list[QueueInfo]:
        """Queues with jobs or a pause mode; see :meth:`AsyncStore.queues`."""
        now = self.clock.now()

        async def queues(conn: AsyncConnection[Any]) -> tuple[list[Any], list[Any]]:
            counts = await self._after_maintenance(conn, now, self._q["queues"], {"now": now})
            modes = await (await conn.execute(self._q["pause_modes"])).fetchall()
            return counts, modes

        counts, modes = await self._run(queues)
        queued = {name: int(n) for name, n in counts}
        mode_of = {name: int(bits) for name, bits in modes}
        return [
            QueueInfo(name, queued.get(name, 0), PAUSE_MODES[mode_of.get(name, 0)])
            for name in sorted(queued.keys() | mode_of.keys())
        ]

    async def flush(self) -> None:
        """Delete every job and pause mode; see :meth:`AsyncStore.flush`."""

        async def flush(conn: AsyncConnection[Any]) -> None:
            async with conn.transaction():
                await conn.execute(self._q["flush_jobs"])
                await conn.execute(self._q["flush_pauses"])
                await conn.execute(self._q["notify_done"], {"done_channel": self.done_channel})

        await self._run(flush)
        self.wakeups.notify([DONE_CHANNEL])

    async def register_node(self, node_id: str, address: str, ttl: float) -> None:
        """Register or renew a node; see :meth:`AsyncStore.register_node`."""
        now = self.clock.now()
        params = {"id": node_id, "address": address, "expires_at": now + ttl, "now": now}

        async def register(conn: AsyncConnection[Any]) -> None:
            await conn.execute(self._q["forget_lapsed_nodes"], params)
            await conn.execute(self._q["register_node"], params)

        await self._run(register)

    async def unregister_node(self, node_id: str) -> None:
        """Remove a node; see :meth:`AsyncStore.unregister_node`."""

        async def unregister(conn: AsyncConnection[Any]) -> None:
            await conn.execute(self._q["unregister_node"], {"id": node_id})

        await self._run(unregister)

    async def nodes(self) -> list[NodeInfo]:
        """Live nodes; see :meth:`AsyncStore.nodes`."""
        now = self.clock.now()

        async def nodes(conn: AsyncConnection[Any]) -> list[Any]:
            return await (await conn.execute(self._q["nodes"], {"now": now})).fetchall()

        return [NodeInfo(str(i), str(a), float(e)) for i, a, e in await self._run(nodes)]

    async def stats(self) -> Stats:
        """Counts per queue and type; see :meth:`AsyncStore.stats`."""
        now = self.clock.now()

        async def stats(conn: AsyncConnection[Any]) -> tuple[list[Any], list[Any]]:
            await self._maintain(conn, now)
            grouped = await (await conn.execute(self._q["stats"], {"now": now})).fetchall()
            paused = await (await conn.execute(self._q["paused"])).fetchall()
            return grouped, paused

        grouped, paused = await self._run(stats)
        merged: dict[tuple[str, str | None], dict[str, Any]] = {}
        for queue, type_, state, count, max_errors, oldest in grouped:
            row = merged.setdefault((queue, type_), {"max_error_count": 0, "oldest_run_at": None})
            row[STATES[state].value] = int(count)
            row["max_error_count"] = max(row["max_error_count"], max_errors or 0)
            if oldest is not None:
                row["oldest_run_at"] = min(oldest, row["oldest_run_at"] or oldest)
        ordered = sorted(merged.items(), key=lambda item: (item[0][0], item[0][1] or ""))
        rows = tuple(StatsRow(queue=q, type=t, **fields) for (q, t), fields in ordered)
        return Stats(rows=rows, paused=frozenset(row[0] for row in paused))

    async def recover_stale(self, max_age: float | None) -> int:
        """Requeue jobs whose worker is gone; see :meth:`AsyncStore.recover_stale`."""
        now = self.clock.now()
        params = {"before": now - (max_age or 0.0), "channel": self.channel}

        async def recover(conn: AsyncConnection[Any]) -> tuple[int, list[str]]:
            recovered = await self._maintain(conn, now)
            if max_age is None:
                return recovered, []
            cursor = await conn.execute(self._q["requeue_leased_before"], params)
            queues = [row[0] for row in await cursor.fetchall()]
            return recovered + len(queues), queues

        recovered, queues = await self._run(recover)
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
            return await self._after_maintenance(conn, now, self._q["release_holder"], params)

        rows = await self._run(release)
        self.wakeups.notify({queue if state == 1 else DONE_CHANNEL for queue, state in rows})
        return len(rows)

    async def close(self) -> None:
        """Stop the listener and close the pool."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            listener, self._listener = self._listener, None
        if listener is not None:
            await listener.stop(timeout=5 * _LISTEN_TICK)
        await self._pool.close()


def open_url(url: str, clock: Clock) -> AsyncPostgresStore:
    """Open ``postgresql://...`` (or ``postgres://``); see the module doc for parameters."""
    try:
        parts = urlsplit(url)
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise InvalidURL(url, str(exc)) from None
    ours = {name: value for name, value in pairs if name in _PARAMETERS}
    libpq = [(name, value) for name, value in pairs if name not in _PARAMETERS]
    conninfo = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(libpq), ""))
    netloc = parts.netloc.rpartition("@")
    shown_user = netloc[0].partition(":")[0]
    shown = urlunsplit(
        (
            parts.scheme,
            f"{shown_user}@{netloc[2]}" if netloc[1] else netloc[2],
            parts.path,
            parts.query,
            "",
        )
    )
    schema = ours.get("schema", "disquette")
    if not _SCHEMA_NAME.fullmatch(schema):
        raise InvalidURL(url, "schema is letters, digits, _ and $, at most 63 characters")
    pool_min = int(number(url, ours, "pool_min", 1, 0, 1000))
    pool_max = int(number(url, ours, "pool_max", 10, 1, 1000))
    if pool_max < max(pool_min, 1):
        raise InvalidURL(url, "pool_max must be at least pool_min")
    application_name = dict(libpq).get("application_name", "disquette")
    return AsyncPostgresStore(
        conninfo,
        clock,
        url=shown,
        schema=schema,
        migrate=flag(url, ours, "migrate", True),
        poll_interval=number(url, ours, "poll_interval", 0.25, 0.001, 60),
        pool_min=pool_min,
        pool_max=pool_max,
        reconnect_timeout=_retry_for(url, ours),
        listen=flag(url, ours, "listen", True),
        vacuum_every=int(number(url, ours, "vacuum_every", 50000, 0, 1e12)),
        application_name=application_name,
    )
