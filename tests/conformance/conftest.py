"""Our five stores, on which ``pytest tests`` runs the packaged conformance suite.

The suite's tests live in :mod:`disquette.testing.conformance` (where the packages of other
stores find them); each ``test_*.py`` here imports one of its modules, so that its tests run
here under their usual ids. The suite's plugin (loaded by ``tests/conftest.py``) runs each on
every store :func:`pytest_disquette_conformance_stores` declares, and makes a test needing a
capability a store lacks (``@pytest.mark.requires``) a strict xfail there.

:data:`STORES` is also what other suites (funnel, worker) use to run on every store.
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from disquette.stores.disque.store import DisqueStore
from disquette.stores.memory import MemoryStore
from disquette.stores.postgres.store import PostgresStore
from disquette.stores.redis.store import RedisStore
from disquette.stores.sqlite.store import SqliteStore
from disquette.stores.types import Capabilities
from disquette.testing.conformance import ConformanceStore

_names = itertools.count()


def _memory(_: Path) -> str:
    return f"memory://conformance-{next(_names)}"


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


STORES: dict[str, Callable[[Path], str]] = {"memory": _memory, "sqlite": _sqlite}

# Server-backed stores: tests/servers/<name>.py provides ``conformance_url(tmp_path)``, which
# returns the URL of a fresh, empty store (a private server is started once if needed).
for _name in ("postgres", "redis", "disque"):
    STORES[_name] = importlib.import_module(f"tests.servers.{_name}").conformance_url

#: What each store states it can do (read from its class: no store is opened).
CAPABILITIES: dict[str, Capabilities] = {
    "memory": MemoryStore.capabilities,
    "sqlite": SqliteStore.capabilities,
    "postgres": PostgresStore.capabilities,
    "redis": RedisStore.capabilities,
    "disque": DisqueStore.capabilities,
}
assert set(CAPABILITIES) == set(STORES), "every conformance store states its capabilities"


def pytest_disquette_conformance_stores(config: pytest.Config) -> list[ConformanceStore]:
    """Our five stores, by name (the order of the test ids)."""
    return [ConformanceStore(name, STORES[name], CAPABILITIES[name]) for name in sorted(STORES)]
