"""Fixtures of the funnel tests: a fresh store of every kind the conformance suite knows."""

from __future__ import annotations

from pathlib import Path

import pytest

from disquette import ManualClock
from tests.conformance.conftest import STORES

#: The funnel tests check every job's final state (done, or back in its queue). disque://
#: keeps no done state (ACKJOB deletes a job), so it is not among them; a funnel only uses
#: client calls, which the conformance suite checks on disque:// too.
FUNNEL_STORES = sorted(set(STORES) - {"disque"})


@pytest.fixture(params=FUNNEL_STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of a fresh, empty store of each kind that keeps done jobs."""
    return STORES[request.param](tmp_path)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file, for tests that break the store under the funnel."""
    return f"sqlite:///{tmp_path / 'jobs.db'}"


@pytest.fixture
def clock() -> ManualClock:
    """A clock the test moves by hand (leases run out only when told to)."""
    return ManualClock()
