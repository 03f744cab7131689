"""Stores: where jobs live. :func:`open_store` picks one by URL scheme (:data:`SCHEMES`).

==========================  ==================================================
``sqlite:///relative.db``   embedded SQLite file (the default: ``./disquette.db``)
``sqlite:////abs/path.db``  the same, absolute path; ``?synchronous=full``,
                            ``?poll_interval=0.05``, ``?busy_timeout=30``
``memory://``               a private in-memory store
``memory://name``           an in-memory store shared by the clients of one process
``postgresql://...``        PostgreSQL (``disquette[postgres]``)
``redis://...``             Redis (``disquette[redis]``)
``redis+sentinel://...``    Redis behind Sentinels: ``host:port[,host:port...]/service[/db]``
``disque://host:port``      a Disque server, ours or another (``disquette[server]``)
==========================  ==================================================

Another package adds a scheme through the entry point group :data:`ENTRY_POINT_GROUP`: the
entry point's name is the scheme, its object a :class:`StoreKind`::

    [project.entry-points."disquette.stores"]
    acme = "acme_store:KIND"        # KIND = StoreKind("acme_store.store")

The interface is :class:`~disquette.stores.store_async.AsyncStore` (``store_async.py``) and its
generated sync twin :class:`~disquette.stores.store.Store` (``store.py``); the types the
two share are in ``types.py``. Each store is one module or package here; each opens from a URL
with its module's ``open_url(url, clock)``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from dataclasses import dataclass
from typing import Any, Final

from ..clock import Clock
from ..errors import InvalidURL
from .adapter import SyncStoreAdapter
from .sqlite import sqlite_path as sqlite_path
from .store import Store
from .store_async import AsyncStore

DEFAULT_URL: Final = "sqlite:///disquette.db"


@dataclass(frozen=True)
class StoreKind:
    """Where a URL scheme's store lives: modules with ``open_url(url, clock)``."""

    #: The module that opens the sync store.
    sync_module: str
    #: The module that opens the asyncio store; None when the store's driver is synchronous
    #: (SQLite, memory): the asyncio client then gets the sync store under an adapter.
    async_module: str | None = None
    #: The extra that installs the store's driver: ``pip install 'disquette[<extra>]'``.
    extra: str | None = None


_POSTGRES = StoreKind(
    "disquette.stores.postgres.store", "disquette.stores.postgres.store_async", "postgres"
)
_REDIS = StoreKind("disquette.stores.redis.store", "disquette.stores.redis.store_async", "redis")

#: URL scheme -> the store that serves it. Store modules are imported on first use, so a
#: missing driver only matters to the URLs that need it.
SCHEMES: Final[dict[str, StoreKind]] = {
    "sqlite": StoreKind("disquette.stores.sqlite"),
    "memory": StoreKind("disquette.stores.memory"),
    "postgresql": _POSTGRES,
    "postgres": _POSTGRES,
    "redis": _REDIS,
    "rediss": _REDIS,
    "redis+sentinel": _REDIS,
    "disque": StoreKind(
        "disquette.stores.disque.store", "disquette.stores.disque.store_async", "server"
    ),
}


#: The entry point group where other packages register URL schemes (name: the scheme;
#: object: a :class:`StoreKind`). The built-in schemes of :data:`SCHEMES` win.
ENTRY_POINT_GROUP: Final = "disquette.stores"


def resolve_url(url: str | None) -> str:
    """The URL to open: the argument, else ``$DISQUETTE_URL``, else the SQLite default."""
    return url or os.environ.get("DISQUETTE_URL") or DEFAULT_URL


def open_store(url: str, clock: Clock) -> Store:
    """Open the sync store a URL names."""
    kind = _kind(url)
    store: Store = _module(url, kind.sync_module, kind.extra).open_url(url, clock)
    return store


def open_async_store(url: str, clock: Clock) -> AsyncStore:
    """Open the asyncio flavor of the store a URL names."""
    kind = _kind(url)
    if kind.async_module is None:
        return SyncStoreAdapter(open_store(url, clock))
    store: AsyncStore = _module(url, kind.async_module, kind.extra).open_url(url, clock)
    return store


def _kind(url: str) -> StoreKind:
    scheme, colon, _ = url.partition(":")
    kind = (SCHEMES.get(scheme) or _plugin_kind(url, scheme)) if colon else None
    if kind is None:
        plugins = (point.name for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
        known = ", ".join(dict.fromkeys([*SCHEMES, *plugins]))
        raise InvalidURL(url, f"unknown store scheme {scheme!r} (known: {known})")
    return kind


def _plugin_kind(url: str, scheme: str) -> StoreKind | None:
    """The :class:`StoreKind` an installed package registers for ``scheme``, if any."""
    for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=scheme):
        kind = point.load()
        if not isinstance(kind, StoreKind):
            raise InvalidURL(url, f"entry point {point.value!r} is not a StoreKind")
        return kind
    return None


def _module(url: str, name: str, extra: str | None = None) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.startswith("disquette"):
            raise
        scheme = url.partition(":")[0]
        raise InvalidURL(
            url, f"the {scheme} store needs {exc.name!r}: pip install 'disquette[{extra}]'"
        ) from None
