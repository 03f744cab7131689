"""The conformance suite's pytest plugin: load it from the root ``conftest.py``::

    pytest_plugins = ["disquette.testing.conformance.plugin"]

It acts on the suite's tests only (those defined in :mod:`disquette.testing.conformance`,
wherever they are collected from):

- each runs once on every store that ``pytest_disquette_conformance_stores`` declares
  (see :mod:`~disquette.testing.conformance.hookspec`), the store's name in its id;
- ``@pytest.mark.requires("capability", ...)`` makes it a strict xfail on a store whose
  :class:`~disquette.stores.types.Capabilities` lack one, with the capability's reason;
- its ``async def`` tests run with ``asyncio.run`` (no asyncio plugin needed).
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

from ...stores.types import Capabilities
from . import ConformanceStore, hookspec

#: The prefix of the suite's module names.
SUITE = f"{__package__}."

#: The parameters the suite's tests take a store by: the URL of a fresh one (the fixture,
#: parametrized indirectly), or the :class:`ConformanceStore` itself (to open several).
_PARAMETERS = {"store_url": True, "conformance_store": False}


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Add ``pytest_disquette_conformance_stores``."""
    pluginmanager.add_hookspecs(hookspec)


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``requires`` marker."""
    config.addinivalue_line(
        "markers",
        "requires(*capabilities): the store capabilities a conformance test needs; "
        "a strict xfail on a store that lacks one",
    )


def declared_stores(config: pytest.Config) -> list[ConformanceStore]:
    """The stores every ``pytest_disquette_conformance_stores`` declares, in order."""
    stores = [
        store
        for declared in config.hook.pytest_disquette_conformance_stores(config=config)
        for store in declared
    ]
    if not stores:
        raise pytest.UsageError(
            "the conformance suite has no store to run on: implement "
            "pytest_disquette_conformance_stores(config) in conftest.py, returning "
            "disquette.testing.conformance.ConformanceStore objects"
        )
    names = [store.name for store in stores]
    if len(set(names)) < len(names):
        raise pytest.UsageError(f"conformance stores declared twice: {sorted(names)}")
    return stores


def _on(store: ConformanceStore, definition: pytest.Item) -> Any:
    """The test's parameter for that store: a strict xfail when the store lacks a
    capability the test requires."""
    marker = definition.get_closest_marker("requires")
    lacking = store.capabilities.lacking(marker.args) if marker is not None else []
    if not lacking:
        return pytest.param(store, id=store.name)
    reasons = "; ".join(f"{name}: {Capabilities.reason(name)}" for name in lacking)
    xfail = pytest.mark.xfail(strict=True, reason=f"{store.name} lacks {reasons}")
    return pytest.param(store, id=store.name, marks=xfail)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test of the suite on every declared store."""
    if not metafunc.function.__module__.startswith(SUITE):
        return
    for name, indirect in _PARAMETERS.items():
        if name in metafunc.fixturenames:
            stores = declared_stores(metafunc.config)
            params = [_on(store, metafunc.definition) for store in stores]
            metafunc.parametrize(name, params, indirect=indirect)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run the suite's ``async def`` tests with ``asyncio.run``."""
    test = pyfuncitem.obj
    if not (inspect.iscoroutinefunction(test) and test.__module__.startswith(SUITE)):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    asyncio.run(test(**{name: pyfuncitem.funcargs[name] for name in names}))
    return True
