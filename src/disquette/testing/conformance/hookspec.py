"""The hook a ``conftest.py`` implements to declare the stores the suite runs on."""

from __future__ import annotations

import pytest

from . import ConformanceStore


@pytest.hookspec
def pytest_disquette_conformance_stores(config: pytest.Config) -> list[ConformanceStore]:
    """The stores the conformance suite runs on, in the order of the test ids.

    Every implementation is called (a plugin and a conftest may each declare some); the
    lists are joined. Store names must be unique.
    """
    raise NotImplementedError  # a specification: pluggy never calls it
