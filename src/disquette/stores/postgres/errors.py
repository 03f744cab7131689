"""How the PostgreSQL store reads psycopg's errors (both flavours): which ones a retry may
cure, which ones mean the server refuses the URL for good, and the one-line cause a
disquette error names. Also quiets psycopg's log about our pools' connections.

The pool's own warnings about failed connection attempts are logged at DEBUG: the store
retries, and raises one error if retrying did not help.
"""

from __future__ import annotations

import logging
import re
from typing import Final

import psycopg

from ...errors import QueuePaused, StoreError

#: The SQLSTATE {schema}.accepts() raises for a queue paused for input.
QUEUE_PAUSED: Final = "DQ001"
#: Errors after which the same call may succeed: the connection or the server went away
#: (restart, failover, pool exhausted while reconnecting), or a deadlock was broken.
TRANSIENT: Final = (psycopg.OperationalError, psycopg.errors.TransactionRollback)
#: What a server says, when it is up, to a URL it will never accept: a missing database or
#: role, failed authentication, no pg_hba.conf entry, no CONNECT privilege, a TLS mode it
#: cannot meet. libpq gives connection errors as text only (no SQLSTATE before a session
#: exists), in the server's language: a refusal not recognised here (or translated) is
#: retried for ``reconnect_timeout`` like an outage, and then reported with its text.
REFUSED: Final = re.compile(
    r"does not exist|authentication failed|no pg_hba\.conf entry|pg_hba\.conf rejects"
    r"|not permitted to log in|permission denied|no password supplied|SSL was required"
    r"|does not support SSL|certificate verify failed"
)
#: The schema was never migrated (``?migrate=false``) or was dropped.
MISSING_SCHEMA: Final = (
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedFunction,
    psycopg.errors.InvalidSchemaName,
)
#: The prefix of our pools' names, by which their log records are recognised.
POOL_PREFIX: Final = "disquette-"


def cause(exc: Exception) -> str:
    """The first line of a psycopg error, without libpq's framing: ``Connection refused``,
    ``database "x" does not exist``."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = text.rpartition(" failed: ")[2] or text
    return re.sub(r"^(FATAL|ERROR):\s+", "", text)


def store_error(exc: psycopg.Error) -> Exception:
    """The disquette error for a psycopg error no retry cures."""
    if exc.sqlstate == QUEUE_PAUSED:
        return QueuePaused(exc.diag.message_primary or "")
    return StoreError("PostgreSQL", cause(exc))


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
        return arg.startswith(POOL_PREFIX)
    connection = getattr(arg, "_conn", arg)  # a pipeline's connection
    name = getattr(getattr(connection, "_pool", None), "name", None)
    return isinstance(name, str) and name.startswith(POOL_PREFIX)


for _logger in ("psycopg.pool", "psycopg"):
    logging.getLogger(_logger).addFilter(_ConnectionNoise())
