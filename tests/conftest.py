"""Test plumbing shared by every suite: coroutine tests run on a fresh event loop, and the
conformance suite's plugin is loaded (it acts on that suite's tests only, see
``tests/conformance/conftest.py``)."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

pytest_plugins = ["disquette.testing.conformance.plugin"]


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests with ``asyncio.run`` (no plugin needed)."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs: dict[str, Any] = {name: pyfuncitem.funcargs[name] for name in names}
    asyncio.run(pyfuncitem.obj(**kwargs))
    return True
