"""pytest fixtures for testing your own code that enqueues, with no server to run.

Installed with disquette and enabled by its ``pytest11`` entry point (disable it with
``-p no:disquette``):

``disquette_url``
    a private ``memory://`` store, also set as ``$DISQUETTE_URL`` for the test, so
    ``disquette.connect()`` and ``App()`` in the code under test use it.
``disquette_client``
    a sync :class:`~disquette.Client` on that store, to look at what the code added.
``disquette_sqlite_url`` / ``disquette_sqlite_client``
    the same on a SQLite file in the test's ``tmp_path`` (what a worker in another process
    could share).
``disquette_eager``
    a function that switches an :class:`~disquette.App` to eager mode for the test:
    ``add`` runs the handler at once, on a private memory store; undone after the test.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ..app import App
from ..client import Client, connect

_stores = itertools.count(1)


@pytest.fixture
def disquette_url(monkeypatch: pytest.MonkeyPatch) -> str:
    """A private ``memory://`` store URL, also ``$DISQUETTE_URL`` during the test."""
    url = f"memory://disquette-test-{os.getpid()}-{next(_stores)}"
    monkeypatch.setenv("DISQUETTE_URL", url)
    return url


@pytest.fixture
def disquette_client(disquette_url: str) -> Iterator[Client]:
    """A sync client on :func:`disquette_url`'s store, closed after the test."""
    with connect(disquette_url) as client:
        yield client


@pytest.fixture
def disquette_sqlite_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A SQLite store in the test's ``tmp_path``, also ``$DISQUETTE_URL`` during the test."""
    url = f"sqlite:///{tmp_path / 'disquette.db'}"
    monkeypatch.setenv("DISQUETTE_URL", url)
    return url


@pytest.fixture
def disquette_sqlite_client(disquette_sqlite_url: str) -> Iterator[Client]:
    """A sync client on :func:`disquette_sqlite_url`'s store, closed after the test."""
    with connect(disquette_sqlite_url) as client:
        yield client


@pytest.fixture
def disquette_eager(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[App], App]]:
    """``disquette_eager(app)`` makes ``app`` eager until the test ends; returns ``app``.

    Apps created during the test are eager too (``$DISQUETTE_EAGER`` is set).
    """
    monkeypatch.setenv("DISQUETTE_EAGER", "1")
    switched: list[tuple[App, dict[str, object]]] = []

    def make_eager(app: App) -> App:
        switched.append((app, dict(vars(app))))
        app.close()
        app.eager = True
        app.url = f"memory://disquette-eager-test-{os.getpid()}-{next(_stores)}"
        app._client = app._async_client = None
        return app

    yield make_eager
    for app, saved in reversed(switched):
        app.close()
        vars(app).update(saved)
        app._client = app._async_client = None
