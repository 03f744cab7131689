"""The embedded SQLite store (the default): ``sqlite:///relative.db``,
``sqlite:////absolute/path.db``.

URL parameters: ``synchronous`` (``normal``, or ``full`` to sync on every commit),
``poll_interval`` (0.05 s: how often a blocked call looks for other processes' changes),
``busy_timeout`` (30 s: how long a call waits for another process's write lock).
The store itself is :class:`~disquette.stores.sqlite.store.SqliteStore` (``store.py``), on
``database.py`` (opening and migrating the file, the connection, transactions); its SQL is
``schema.sql`` beside it, ``admin.py`` has pause modes, limits, counts and the registries,
``claims.py`` reads a claim's rows, ``acks.py`` runs the acks, ``dependencies.py`` keeps
job dependencies, and
``peers.py`` wakes the waiters of other processes that share the file.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from ...clock import Clock
from ...errors import InvalidURL
from .._url import check_known, number
from .store import SqliteStore

__all__ = ["SqliteStore", "open_url", "sqlite_path"]


def open_url(url: str, clock: Clock) -> SqliteStore:
    """Open the SQLite store a ``sqlite://`` URL names."""
    path = sqlite_path(url)
    if path is None:
        raise InvalidURL(url, "use sqlite:///relative/path.db or sqlite:////absolute/path.db")
    query = {key: values[-1] for key, values in parse_qs(urlsplit(url).query).items()}
    check_known(url, query, ("synchronous", "poll_interval", "busy_timeout"))
    synchronous = query.get("synchronous", "normal").lower()
    if synchronous not in ("normal", "full"):
        raise InvalidURL(url, "synchronous is normal or full")
    poll_interval = number(url, query, "poll_interval", 0.05, 0.001, 60)
    busy_timeout = number(url, query, "busy_timeout", 30, 0, 3600)
    return SqliteStore(
        path,
        clock,
        synchronous="full" if synchronous == "full" else "normal",
        poll_interval=poll_interval,
        busy_timeout=busy_timeout,
    )


def sqlite_path(url: str) -> str | None:
    """The file a ``sqlite://`` URL names (relative to the working directory), or ``None``
    for another store or a malformed ``sqlite://`` URL."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme != "sqlite" or parts.netloc or not parts.path.startswith("/"):
        return None
    return parts.path[1:] or None
