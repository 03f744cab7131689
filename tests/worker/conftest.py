"""Fixtures of the worker tests: a fresh store of each in-process kind, and bounded waits."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

import pytest

_names = itertools.count()


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of a fresh, empty store (a named memory store, or a SQLite file)."""
    if request.param == "memory":
        return f"memory://worker-test-{next(_names)}"
    return f"sqlite:///{tmp_path / 'jobs.db'}"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file (for tests that involve other processes)."""
    return f"sqlite:///{tmp_path / 'jobs.db'}"


def wait_until(predicate: Callable[[], object], timeout: float = 30.0, what: str = "") -> None:
    """Poll ``predicate`` until it is true; fail (not a timing assertion: a hang guard)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what or predicate}")
        time.sleep(0.01)
