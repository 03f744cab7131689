"""Stores: where jobs live. :func:`open_store` picks one by URL scheme.

==========================  ==================================================
``sqlite:///relative.db``   embedded SQLite file (the default: ``./disquette.db``)
``sqlite:////abs/path.db``  the same, absolute path; ``?synchronous=full``,
                            ``?poll_interval=0.05``, ``?busy_timeout=30``
``memory://``               a private in-memory store
``memory://name``           an in-memory store shared by the clients of one process
==========================  ==================================================
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from .._async.store import AsyncStore
from .._sync.store import Store
from ..clock import Clock
from ..errors import InvalidURL
from ._url import check_known, number
from .adapter import SyncStoreAdapter
from .memory import open_memory_store
from .sqlite import SqliteStore

DEFAULT_URL: Final = "sqlite:///disquette.db"
#: URL schemes served by async-native stores: scheme -> module in ``_async.stores`` (and its
#: generated twin in ``_sync.stores``).
NATIVE_SCHEMES: Final = {
    "postgresql": "postgres",
    "postgres": "postgres",
    "redis": "redis",
    "rediss": "redis",
    "disque": "disque",
}
#: The extra that installs a store's driver: ``pip install 'disquette[<extra>]'``.
EXTRAS: Final = {"postgres": "postgres", "redis": "redis", "disque": "server"}


def resolve_url(url: str | None) -> str:
    """The URL to open: the argument, else ``$DISQUETTE_URL``, else the SQLite default."""
    return url or os.environ.get("DISQUETTE_URL") or DEFAULT_URL


def open_store(url: str, clock: Clock) -> Store:
    """Open the sync store a URL names."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidURL(url, str(exc)) from None
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    if parts.scheme == "memory":
        if parts.path not in ("", "/") or query:
            raise InvalidURL(url, "use memory:// or memory://name")
        return open_memory_store(parts.netloc, clock)
    if parts.scheme == "sqlite":
        return _open_sqlite(url, query, clock)
    store: Store = _native_module(url, parts.scheme, "_sync").open_url(url, clock)
    return store


def open_async_store(url: str, clock: Clock) -> AsyncStore:
    """Open the asyncio flavor of the store a URL names."""
    scheme = url.partition(":")[0]
    if scheme in NATIVE_SCHEMES:
        store: AsyncStore = _native_module(url, scheme, "_async").open_url(url, clock)
        return store
    return SyncStoreAdapter(open_store(url, clock))


def _native_module(url: str, scheme: str, flavor: str) -> Any:
    known = ", ".join(["memory", "sqlite", *NATIVE_SCHEMES])
    if scheme not in NATIVE_SCHEMES:
        raise InvalidURL(url, f"unknown store scheme {scheme!r} (known: {known})")
    name = f"disquette.{flavor}.stores.{NATIVE_SCHEMES[scheme]}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            raise InvalidURL(url, f"the {scheme} store is not available yet") from None
        extra = EXTRAS[NATIVE_SCHEMES[scheme]]
        raise InvalidURL(
            url, f"the {scheme} store needs {exc.name!r}: pip install 'disquette[{extra}]'"
        ) from None


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


def _open_sqlite(url: str, query: dict[str, str], clock: Clock) -> Store:
    path = sqlite_path(url)
    if path is None:
        raise InvalidURL(url, "use sqlite:///relative/path.db or sqlite:////absolute/path.db")
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
