"""The stores every conformance test runs against, and what each can do.

Each store is a URL factory; a test opens its clients with ``connect(url, clock=clock)``.
Stores that need a server (PostgreSQL, Redis, Disque) register here as they are added.

A test that needs a capability a store may lack (:class:`~disquette.stores.types.Capabilities`)
says so with ``@pytest.mark.requires("results", ...)``: on a store that states it lacks one,
the test still runs, as ``xfail(strict=True)`` with the capability's reason, so a test that
starts passing (or a store that understates itself) is noticed. Nothing is skipped.
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from disquette import ManualClock
from disquette.stores.disque.store import DisqueStore
from disquette.stores.memory import MemoryStore
from disquette.stores.postgres.store import PostgresStore
from disquette.stores.redis.store import RedisStore
from disquette.stores.sqlite.store import SqliteStore
from disquette.stores.types import Capabilities

#: A well-formed job id no store holds.
UNKNOWN_ID = "D-00000000-AAAAAAAAAAAAAAAAAAAAAAAA-0001"

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


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``requires`` marker."""
    config.addinivalue_line(
        "markers",
        "requires(*capabilities): the store capabilities a conformance test needs; "
        "a strict xfail on a store that lacks one",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests needing a capability a store lacks as strict xfails, with the reason."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        marker = item.get_closest_marker("requires")
        if callspec is None or marker is None:
            continue
        store = callspec.params.get("store_url", callspec.params.get("store_kind"))
        if store is None:
            continue
        lacking = CAPABILITIES[store].lacking(marker.args)
        if lacking:
            reasons = "; ".join(f"{name}: {Capabilities.reason(name)}" for name in lacking)
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"{store} lacks {reasons}"))


@pytest.fixture(params=sorted(STORES))
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of a fresh, empty store of each kind."""
    return STORES[request.param](tmp_path)


@pytest.fixture
def clock() -> ManualClock:
    """A clock the test moves by hand."""
    return ManualClock()
