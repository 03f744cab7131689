"""How the PostgreSQL store reaches its database: a psycopg_pool pool, the first connection
(which migrates), the retry loop every call runs in, and the caller's own transaction.

Connecting: the first call connects directly (not through the pool, whose connection errors
only reach its log), so a server that refuses the URL (failed authentication, a missing
database or role, no ``pg_hba.conf`` entry) raises ``StoreRefused`` at once, with the
server's reason.

Retries: a call whose connection fails (a restart, a failover, a reply lost on the way) is
run again on another connection. Every operation is safe to repeat: an add skips ids the
store holds, in ``jobs`` or in ``done``, so one whose commit went through is not added
twice, even if a worker finished the job meanwhile; acks, nacks and failures change only
jobs in the state they expect. Other database errors raise ``StoreError``.

This file is the asyncio source; ``database.py`` beside it is generated from it.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ..._concurrency import AsyncLock, async_sleep
from ...errors import (
    ClientClosed,
    InvalidOption,
    InvalidURL,
    StoreRefused,
    StoreUnavailable,
)
from .errors import MISSING_SCHEMA, POOL_PREFIX, REFUSED, TRANSIENT, cause, store_error
from .statements import migration_script, migrations, quote

T = TypeVar("T")

#: How long one wait for a pooled connection lasts (a call that may retry waits again).
#: The pool does not retry a connection attempt that failed: psycopg_pool's own backoff
#: (1, 2, 4... s) would keep a call waiting seconds after the server came back; each new
#: wait makes it try at once. Even a call that may not retry (``reconnect_timeout=0``) gives
#: the pool this long to open a connection.
_POOL_WAIT: Final = 1.0


class AsyncDatabase:
    """The pool of one store, and the calls run on it: retried while the database is
    briefly unreachable, the schema migrated on first use."""

    def __init__(
        self,
        conninfo: str,
        *,
        url: str,
        schema: str,
        migrate: bool,
        pool_min: int,
        pool_max: int,
        reconnect_timeout: float,
        application_name: str,
    ) -> None:
        self.url = url
        self.schema = schema
        #: How long a call waits for an unreachable database (the URL's ``retry_for``).
        self.reconnect_timeout = reconnect_timeout
        self._conninfo = conninfo
        self._application_name = application_name
        self._migrate = migrate
        try:
            libpq_settings = conninfo_to_dict(conninfo)
        except psycopg.ProgrammingError as exc:
            raise InvalidURL(url, cause(exc)) from None
        self._explicit_connect_timeout = "connect_timeout" in libpq_settings
        self._pool = AsyncConnectionPool(
            conninfo,
            min_size=pool_min,
            max_size=pool_max,
            open=False,
            timeout=_POOL_WAIT,
            reconnect_timeout=0,  # the store retries (see _POOL_WAIT)
            num_workers=1,
            name=f"{POOL_PREFIX}{schema}",
            kwargs={"autocommit": True, "application_name": application_name},
        )
        self._lock = threading.Lock()
        #: One first connection at a time: callers that arrive meanwhile wait for its outcome.
        self._starting = AsyncLock()
        self._ready = False
        self.closed = False

    async def run(
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
            if self.closed:
                raise ClientClosed(f"the PostgreSQL store {self.url} is closed")
            started = time.monotonic()
            try:
                if not self._ready:
                    async with self._starting:
                        if not self._ready:
                            await self._start(
                                deadline or started + self.reconnect_timeout, migrated
                            )
                async with self._pool.connection() as conn:
                    return await operation(conn)
            except MISSING_SCHEMA as exc:
                raise StoreUnavailable(
                    f"PostgreSQL {self.url}: schema {self.schema!r} has no disquette tables; "
                    "migrate it (disquette migrate --url ..., or leave migrate=true)"
                ) from exc
            except TRANSIENT as exc:
                if self.closed:
                    raise ClientClosed(f"the PostgreSQL store {self.url} is closed") from exc
                now = time.monotonic()
                if deadline is None:
                    # A pool that waited in vain was failing since the wait began.
                    failing_since = started if isinstance(exc, PoolTimeout) else now
                    deadline = failing_since + self.reconnect_timeout
                if now >= deadline:
                    raise await self._unreachable(exc) from exc
                await async_sleep(min(delay, deadline - now))
                delay = min(delay * 2, 0.5)
            except psycopg.Error as exc:
                raise store_error(exc) from exc

    async def migrate(self) -> list[int]:
        """Apply the migrations the schema lacks; return the versions applied."""

        async def run(conn: AsyncConnection[Any]) -> list[int]:
            return await migrate_connection(conn, self.schema)

        applied = await self.run(run, migrated=False)
        self._ready = True
        return applied

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
                if REFUSED.search(str(exc)):
                    raise StoreRefused(f"PostgreSQL {self.url}: {cause(exc)}") from exc
                if self.closed:
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
        retried = f" (retried for {self.reconnect_timeout:g} s)" if self.reconnect_timeout else ""
        return f"PostgreSQL {self.url}: {cause(exc)}{retried}"

    async def on_caller_connection(
        self,
        connection: object,
        operation: Callable[[AsyncConnection[Any]], Awaitable[T]],
    ) -> T:
        """Run ``operation`` inside the caller's transaction: never retried, since the
        transaction is the caller's to repeat."""
        if not self._ready:  # the schema must exist before the caller's statement uses it

            async def nothing(conn: AsyncConnection[Any]) -> None:
                return None

            await self.run(nothing)
        if self.closed:
            raise ClientClosed(f"the PostgreSQL store {self.url} is closed")
        conn = await driver_connection(connection)
        try:
            return await operation(conn)
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"PostgreSQL (caller's connection): {cause(exc)}") from exc
        except psycopg.Error as exc:
            raise store_error(exc) from exc

    async def close(self) -> None:
        """Refuse further calls and close the pool (once)."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
        await self._pool.close()


async def driver_connection(connection: object) -> AsyncConnection[Any]:
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
            return await driver_connection(await inner())
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


async def migrate_connection(conn: AsyncConnection[Any], schema: str) -> list[int]:
    """Bring ``schema`` up to date on ``conn`` (an autocommit connection); return the
    versions that were missing. Safe to run from several processes at once.

    The work is one script, sent in one round trip: the server finishes the transaction on
    its own, so a caller that blocks its event loop (a sync client called inside a
    coroutine) cannot leave the migration lock held while another store waits for it.
    """
    table = f"{quote(schema)}.schema_migrations"
    try:
        cursor = await conn.execute(f"SELECT coalesce(max(version), 0) FROM {table}")
        row = await cursor.fetchone()
        current = int(row[0]) if row is not None else 0
    except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
        current = 0
    missing = [version for version, _, _ in migrations() if version > current]
    if missing:
        await conn.execute(migration_script(schema))
    return missing
