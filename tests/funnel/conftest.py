"""Fixtures of the funnel tests: a fresh store of every kind the conformance suite knows."""

from __future__ import annotations

from pathlib import Path

import pytest

from disquette import ManualClock
from tests.conformance.conftest import STORES


@pytest.fixture(params=sorted(STORES))
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of a fresh, empty store of each kind (memory, SQLite, and server stores)."""
    return STORES[request.param](tmp_path)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file, for tests that break the store under the funnel."""
    return f"sqlite:///{tmp_path / 'jobs.db'}"


@pytest.fixture
def clock() -> ManualClock:
    """A clock the test moves by hand (leases run out only when told to)."""
    return ManualClock()
