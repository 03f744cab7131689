"""The SQLite store's database: opening the file (pragmas, migrations to the current schema),
the one connection shared under a lock, transactions, applying what time made due, and the
wake-ups announced to this process and to the others sharing the file.

:class:`~disquette.stores.sqlite.store.SqliteStore` is built on it (as the PostgreSQL
store's ``database_async.py`` holds its pool and migrations).
"""

from __future__ import annotations

import operator
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from importlib import resources
from types import TracebackType
from typing import Any, Final, Literal

from ...clock import Clock
from ...errors import (
    ClientClosed,
    StoreError,
    StoreRefused,
    StoreUnavailable,
)
from .._sql import (
    COLUMNS,
    DEPENDENCY_COLUMNS,
    load_named_blocks,
)
from ..types import (
    Wakeups,
    WouldBlock,
)
from .dependencies import expire_parents
from .peers import PeerWakeups

#: The named blocks that bring a file from the version before to each version.
_MIGRATIONS: Final = {
    1: "schema",
    2: "migrate_2",
    3: "migrate_3",
    4: "migrate_4",
    5: "migrate_5",
    6: "migrate_limits",
    7: "migrate_dependencies",
    8: "migrate_limits_spend",
}
_SCHEMA_VERSION: Final = max(_MIGRATIONS)
_BUSY_CODES: Final = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
#: How long a read waits for the write lock to apply due changes before reading as is.
_READER_WAIT_MS: Final = 1000
#: At most this many jobs per time-driven change (expire, promote, requeue) and transaction.
DUE_BATCH: Final = 1000
#: How often a busy claim looks for other connections' commits (see ``_catch_up``).
LAZY_VERSION_SECONDS: Final = 0.005
#: "Something may be due now": the next claim reads when time next changes something.
_UNKNOWN: Final = float("-inf")
Synchronous = Literal["normal", "full"]


QUERIES: Final = load_named_blocks(
    resources.files(__package__).joinpath("schema.sql").read_text(),
    "schema.sql",
    columns=COLUMNS,
    dependency_columns=DEPENDENCY_COLUMNS,
)


def _derived(base: str, *edits: tuple[str, str]) -> str:
    """The statement ``QUERIES[base]`` with each ``(old, new)`` edit made; each ``old`` must
    occur once (a statement edited out of step with its variants fails at import)."""
    sql = QUERIES[base]
    for old, new in edits:
        if sql.count(old) != 1:
            raise StoreError("schema.sql", f"block {base!r} should hold {old!r} once")
        sql = sql.replace(old, new)
    return sql


# Variants of the hot statements, made once here (sqlite3 caches prepared statements by
# their text), each cheaper for a common case:
# - one job: a scalar subquery (seq = (...)) instead of seq IN (...), which costs two
#   ephemeral tables (the IN list, and the rowids of a two-pass UPDATE) per claim;
# - no holder (no type, TTL or headers): NULL in the text (sqlite3 adapts a None
#   parameter in Python, not in C);
# - the ack without a result of a job claimed here (its seq and result_ttl known): found
#   by rowid (not through the id index), and no RETURNING, whose buffer is another
#   ephemeral table (result_ttl never changes: the store knows the new expiry).
# - several jobs, no holder: holder_attempts left alone, so that the token trigger does not
#   run once per job (the claim's transaction spends them at once: see spend_tokens).
_ONE: Final = ("WHERE seq IN (", "WHERE seq = (")
_ANONYMOUS: Final = ("holder = :holder", "holder = NULL")
_UNSPENT: Final = (
    "holder = :holder,\n    holder_attempts = attempts + 1,",
    "holder = NULL,",
)
#: The claim statement by (one job, no holder).
CLAIMS: Final = {
    (False, False): QUERIES["claim_limited"],
    (False, True): _derived("claim_limited", _UNSPENT),
    (True, False): _derived("claim_limited", _ONE),
    (True, True): _derived("claim_limited", _ONE, _ANONYMOUS),
}


def _insert_without(nulls: tuple[bool, bool, bool]) -> tuple[str, Callable[[Any], Any]]:
    """``insert`` with NULL in its text for the columns ``nulls`` says are (type,
    expires_at, headers: parameters 9, 11 and 14), and what takes its parameters out of
    a row of all 14 (sqlite3 adapts a None parameter in Python, about a microsecond)."""
    kept = [i for i in range(14) if not (i in _NULLABLE and nulls[_NULLABLE.index(i)])]
    values = [f"?{kept.index(i) + 1}" if i in kept else "NULL" for i in range(14)]
    sql = _derived("insert", (f"SELECT {_ALL_VALUES}\n", f"SELECT {', '.join(values)}\n"))
    return sql, operator.itemgetter(*kept)


#: Where ``insert``'s often NULL parameters are in its row (type, expires_at, headers).
_NULLABLE: Final = (8, 10, 13)
_ALL_VALUES: Final = ", ".join(f"?{i}" for i in range(1, 15))
#: ``insert`` by which of its often NULL columns are (``nulls`` of
#: :func:`_insert_without`), with what takes its parameters out of a row of 14.
INSERTS: Final = {
    (t, e, h): _insert_without((t, e, h))
    for t in (False, True)
    for e in (False, True)
    for h in (False, True)
}
QUERIES["ack_claimed"] = _derived(
    "ack",
    ("WHERE id = :id AND", "WHERE seq = :seq AND id = :id AND"),
    ("result = :result, result_encoding = :encoding", "result = NULL, result_encoding = 0"),
    ("(:attempts IS NULL OR attempts = :attempts)", "attempts = :attempts"),
    ("\nRETURNING id, expires_at", "\n  AND result_ttl >= :ttl"),
)


def _open_error(path: str, exc: sqlite3.Error) -> StoreUnavailable:
    """Why a file cannot be opened. Only a lock is worth waiting for, and opening waited
    ``busy_timeout`` for it already: a missing directory, a file that is not a database or
    one we may not write is refused at once (waiting would not create or fix it)."""
    if getattr(exc, "sqlite_errorcode", None) in _BUSY_CODES:
        return StoreUnavailable(f"cannot open SQLite file {path!r}: {exc}")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        return StoreRefused(f"cannot open SQLite file {path!r}: no directory {directory!r}")
    return StoreRefused(f"cannot open SQLite file {path!r}: {exc}")


class _Held:
    """``with db._connection() as conn``: the connection under the lock (re-entrant, so one
    instance serves every use)."""

    __slots__ = ("_db",)

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    def __enter__(self) -> sqlite3.Connection:
        db = self._db
        db._lock.acquire()
        conn = db._conn
        if conn is None:
            db._lock.release()
            raise ClientClosed("the SQLite store is closed")
        return conn

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        db = self._db
        db._lock.release()
        if exc is None:
            return
        if isinstance(exc, sqlite3.OperationalError):
            if db._fail_fast and exc.sqlite_errorcode in _BUSY_CODES:
                raise WouldBlock from exc
            raise StoreUnavailable(f"SQLite {db.path!r}: {exc}") from exc
        if isinstance(exc, sqlite3.Error):
            raise StoreError("SQLite", f"{db.path!r}: {exc}") from exc


class SqliteDatabase:
    """One SQLite file, opened and brought to the current schema, behind one connection
    shared by threads under a lock."""

    def __init__(
        self,
        path: str,
        clock: Clock,
        *,
        synchronous: Synchronous = "normal",
        poll_interval: float = 0.05,
        busy_timeout: float = 30.0,
    ) -> None:
        self.url = f"sqlite:///{path}"
        self.path = path
        self.clock = clock
        self._peers = PeerWakeups(path, self._delivered)
        self.wakeups = Wakeups(on_subscribe=self._peers.listen)
        self.poll_interval = poll_interval
        # Re-entrant: ``nonblocking`` holds it around calls that take it again.
        self._lock = threading.RLock()
        self._held = _Held(self)
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._fail_fast = False
        # What this connection knows while no other connection commits (``PRAGMA
        # data_version`` unchanged): the next time a time-driven change is due (a lower
        # bound: our own writes lower it, any write it cannot follow resets it), the claims
        # (by queues) that found nothing since our last write, and the queues whose last
        # claim took all it asked for (likely to hold more: claimed without a read first).
        self._version = -1
        self._version_checked = float("-inf")  # time.monotonic() of the last read
        self._due_at = _UNKNOWN
        self._idle: set[tuple[str, ...]] = set()
        self._busy: set[str] = set()
        # The seq and result_ttl (it never changes) of the jobs this store claimed, by id,
        # until acked: their ack finds the row by rowid and needs no RETURNING.
        self._claimed: dict[str, tuple[int, float]] = {}
        try:
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                path,
                timeout=busy_timeout,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=256,  # every statement of schema.sql stays prepared
            )
            # Every commit appends each page it touched to the WAL; small pages cut that
            # write amplification (a claim touches the table and three index pages). Only
            # takes effect on a new file.
            self._conn.execute("PRAGMA page_size = 1024")
            self._conn.execute("PRAGMA journal_mode = WAL")
            # Checkpoint (and fsync) every ~4 MB of WAL rather than SQLite's 1000 pages.
            self._conn.execute("PRAGMA wal_autocheckpoint = 4000")
            self._conn.execute("PRAGMA journal_size_limit = 16777216")
            self._conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            self._conn.execute("PRAGMA temp_store = MEMORY")
            with self._transaction() as conn:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                for target, block in _MIGRATIONS.items():
                    if version < target:
                        self._script(conn, QUERIES[block])
                if version < _SCHEMA_VERSION:
                    conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise _open_error(path, exc) from exc

    @staticmethod
    def _script(conn: sqlite3.Connection, text: str) -> None:
        """Run several statements inside the current transaction."""
        for statement in text.split(";\n"):
            if statement.strip():
                conn.execute(statement)

    def _announce(self, channels: Iterable[str]) -> None:
        """Wake waiters on these channels, in this process and in the others."""
        names = list(channels)
        if names:
            self.wakeups.notify(names)
            self._peers.announce(names)

    def _delivered(self, channels: list[str]) -> None:
        # Another process changed these queues: the next claim looks again (it reads
        # data_version anyway; this only makes the wake-up's claim look at once).
        self._idle.clear()
        self.wakeups.notify(channels)

    @contextmanager
    def nonblocking(self) -> Iterator[None]:
        """Run the enclosed calls only if they need not wait for a lock.

        Raises :class:`WouldBlock` (before any change is made) if another thread holds this
        store or another connection holds the file's write lock. The asyncio adapter uses
        this to run calls on the event loop, and falls back to the store thread otherwise.
        """
        if not self._lock.acquire(blocking=False):
            raise WouldBlock
        try:
            if self._conn is None:
                raise ClientClosed("the SQLite store is closed")
            self._conn.execute("PRAGMA busy_timeout = 0")
            self._fail_fast = True
            try:
                yield
            finally:
                self._fail_fast = False
                if self._conn is not None:  # the enclosed call may have been close()
                    self._conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        finally:
            self._lock.release()

    def _connection(self) -> _Held:
        """The connection, held under the store's lock; SQLite errors become store errors
        (a class, not a generator: entered three times per job on the hot path)."""
        return self._held

    @contextmanager
    def _transaction(self, *, tracked: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction; ``BEGIN IMMEDIATE`` so it never fails half-way on a lock.
        ``tracked``: as for :meth:`_write_returning`."""
        with self._connection() as conn, self._committed(conn, tracked=tracked):
            yield conn

    @contextmanager
    def _committed(self, conn: sqlite3.Connection, *, tracked: bool = False) -> Iterator[None]:
        """A write transaction on a connection already held: committed, or rolled back."""
        with self._atomic(conn):
            yield
        self._wrote(tracked)

    @contextmanager
    def _atomic(self, conn: sqlite3.Connection) -> Iterator[None]:
        """Statements on a connection already held, all or none: in the transaction it has
        open, else in one of their own. What this connection knows is the caller's to
        update (see :meth:`_wrote`)."""
        if conn.in_transaction:
            yield
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _wrote(self, tracked: bool) -> None:
        """After a write of ours: claims that found nothing may find something now, and,
        unless the caller lowers the next due time itself (``tracked``), it is unknown."""
        self._idle.clear()
        if not tracked:
            self._due_at = _UNKNOWN

    def _lower_due(self, at: float | None) -> None:
        """A write of ours made something due at ``at`` (None: nothing)."""
        if at is not None and at < self._due_at:
            self._due_at = at

    def _catch_up(
        self, conn: sqlite3.Connection, now: float, *, whole: bool = False, lazy: bool = False
    ) -> None:
        """Before a call: apply what time made due, if anything is; one ``PRAGMA
        data_version`` read when nothing is (and no other connection committed).

        Applies one batch of each change (``whole``: all of them, batch after batch), so a
        backlog is worked off a batch per claim while claims go on. ``lazy``: see
        :meth:`_next_due`.
        """
        due_at = self._next_due(conn, now, lazy)
        while due_at <= now:
            more = self._apply_due(conn, now)[1]
            due_at = conn.execute(QUERIES["next_due"]).fetchone()[0]
            if not (whole and more):
                break
        self._due_at = due_at

    def _next_due(self, conn: sqlite3.Connection, now: float, lazy: bool = False) -> float:
        """When time next changes something (at most ``now`` when something is due now):
        what this connection knows, unless another one committed since, then a read.

        ``lazy``: a claim about to take jobs (not one that found nothing last time) reads
        ``data_version`` at most every :data:`LAZY_VERSION_SECONDS`: what another process
        made due (its delays, leases) is then applied that much later at most, while what
        this process made due is known at once.
        """
        checked = time.monotonic()
        if not lazy or checked - self._version_checked >= LAZY_VERSION_SECONDS:
            self._version_checked = checked
            # Read first: a commit by another connection after this read changes the
            # version, so remembering it can never hide that commit.
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            if version != self._version:
                self._version = version
                self._idle.clear()
                self._due_at = _UNKNOWN
        if now < self._due_at:
            return self._due_at
        self._due_at = due_at = float(conn.execute(QUERIES["next_due"]).fetchone()[0])
        return due_at

    def _apply_due(self, conn: sqlite3.Connection, now: float) -> tuple[int, bool]:
        """In one transaction: expire, promote due jobs, requeue lapsed leases, at most
        :data:`DUE_BATCH` jobs of each. Returns how many leases were requeued, and whether
        a batch was full (more may be due)."""
        params = {"now": now, "batch": DUE_BATCH}
        with self._committed(conn):
            # Parents first: their children are resolved as they go (dependencies.py).
            parents, released = expire_parents(conn, QUERIES, now, DUE_BATCH)
            expired = parents + conn.execute(QUERIES["expire"], params).rowcount
            promoted = conn.execute(QUERIES["promote"], params).rowcount
            requeued = conn.execute(QUERIES["requeue_expired_leases"], params).rowcount
        if released is not None:
            self._announce(released.channels)
        return int(requeued), max(expired, promoted, requeued) >= DUE_BATCH

    def _refresh(self, *, reading: bool = False) -> float:
        """Before a call: apply every time-driven change that is due (batch after batch,
        each its own transaction); a read when none is.

        ``reading``: the call only reads. If other connections keep the write lock busy
        for over a second, it reads the last committed state instead: SQLite's busy wait
        is not fair, and a reader could starve behind a stream of writers (who apply the
        due changes themselves on their next claim).
        """
        now = self.clock.now()
        with self._connection() as conn:
            if self._next_due(conn, now) > now:
                return now  # nothing is due: a read at most
            if not reading or self._fail_fast:
                self._catch_up(conn, now, whole=True)
                return now
            conn.execute(f"PRAGMA busy_timeout = {_READER_WAIT_MS}")
            try:
                self._catch_up(conn, now, whole=True)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode not in _BUSY_CODES:
                    raise
            finally:
                conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        return now

    def _write_returning(self, sql: str, params: Any, *, tracked: bool = False) -> list[Any]:
        """One ``... RETURNING`` statement in its own transaction: its rows. ``tracked``:
        the caller lowers the next due time itself (see :meth:`_wrote`).

        Fetched under the lock: the statement (and its write transaction) only ends once
        every row is read, and no other thread may use the connection meanwhile.
        """
        with self._connection() as conn:
            rows = conn.execute(sql, params).fetchall()
            self._wrote(tracked)
            return rows

    def _write(self, sql: str, params: Any, *, tracked: bool = False) -> sqlite3.Cursor:
        """One statement in its own (autocommit) transaction (``tracked``: as for
        :meth:`_write_returning`)."""
        with self._connection() as conn:
            cursor = conn.execute(sql, params)
            self._wrote(tracked)
            return cursor

    def close(self) -> None:
        """Close the connection."""
        self._peers.close()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
