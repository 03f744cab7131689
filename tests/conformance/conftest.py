"""The stores every conformance test runs against.

Each store is a URL factory; a test opens its clients with ``connect(url, clock=clock)``.
Stores that need a server (PostgreSQL, Redis, Disque) register here as they are added.
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from disquette import ManualClock

_names = itertools.count()


def _memory(_: Path) -> str:
    return f"memory://conformance-{next(_names)}"


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


STORES: dict[str, Callable[[Path], str]] = {"memory": _memory, "sqlite": _sqlite}
#: store -> {test function name: why this store's semantics differ (the test is xfail)}
KNOWN_DIFFERENCES: dict[str, Mapping[str, str]] = {}

# Server-backed stores: tests/servers/<name>.py provides ``conformance_url(tmp_path)``, which
# returns the URL of a fresh, empty store (a private server is started once if needed), and
# may list ``KNOWN_DIFFERENCES``: tests whose semantics the store defines differently.
for _name in ("postgres", "redis", "disque"):
    _module = importlib.import_module(f"tests.servers.{_name}")
    STORES[_name] = _module.conformance_url
    KNOWN_DIFFERENCES[_name] = getattr(_module, "KNOWN_DIFFERENCES", {})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests a store defines differently as strict xfails, with the reason."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None:
            continue
        store = callspec.params.get("store_url", callspec.params.get("store_kind"))
        reason = KNOWN_DIFFERENCES.get(store, {}).get(getattr(item, "originalname", ""))
        if reason is not None:
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"{store}: {reason}"))


@pytest.fixture(params=sorted(STORES))
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of a fresh, empty store of each kind."""
    return STORES[request.param](tmp_path)


@pytest.fixture
def clock() -> ManualClock:
    """A clock the test moves by hand."""
    return ManualClock()
