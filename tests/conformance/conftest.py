"""The stores every conformance test runs against.

Each store is a URL factory; a test opens its clients with ``connect(url, clock=clock)``.
Stores that need a server (PostgreSQL, Redis, Disque) register here as they are added.
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from disquette import ManualClock

_names = itertools.count()


def _memory(_: Path) -> str:
    return f"memory://conformance-{next(_names)}"


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


STORES: dict[str, Callable[[Path], str]] = {"memory": _memory, "sqlite": _sqlite}

# Server-backed stores: tests/servers/<name>.py provides ``conformance_url(tmp_path)``, which
# returns the URL of a fresh, empty store (a private server is started once if needed).
for _name in ("postgres", "redis"):
    try:
        _module = importlib.import_module(f"tests.servers.{_name}")
    except ModuleNotFoundError as _missing:
        if _missing.name != f"tests.servers.{_name}":
            raise
        continue
    STORES[_name] = _module.conformance_url


@pytest.fixture(params=sorted(STORES))
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of a fresh, empty store of each kind."""
    return STORES[request.param](tmp_path)


@pytest.fixture
def clock() -> ManualClock:
    """A clock the test moves by hand."""
    return ManualClock()
