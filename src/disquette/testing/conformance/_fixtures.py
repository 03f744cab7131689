"""The fixtures of the suite's tests, ``store_url`` and ``clock``, imported by each test
module: a fixture of the same name in the project's ``conftest.py`` (a ``clock`` of its own,
say) cannot replace them there."""

from __future__ import annotations

from pathlib import Path

import pytest

from ...clock import ManualClock
from . import ConformanceStore


@pytest.fixture(name="store_url")
def store_url_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh, empty store of each declared kind."""
    store = getattr(request, "param", None)
    if not isinstance(store, ConformanceStore):
        raise pytest.UsageError(
            "the conformance suite has no store: load its plugin "
            '(pytest_plugins = ["disquette.testing.conformance.plugin"] in conftest.py) '
            "and declare stores with pytest_disquette_conformance_stores"
        )
    return store.url(tmp_path)


@pytest.fixture(name="clock")
def clock_fixture() -> ManualClock:
    """A clock the test moves by hand."""
    return ManualClock()
