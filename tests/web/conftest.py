"""Fixtures of the dashboard tests: a store URL (memory and SQLite always; PostgreSQL and
Redis through tests/servers), a seeding client on it, and the app over it."""

from __future__ import annotations

import itertools
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from starlette.testclient import TestClient
from starlette.types import ASGIApp

from disquette import Client, connect
from disquette.web import create_app

_names = itertools.count()


def store_url(kind: str, tmp_path: Path) -> str:
    """A fresh, empty store of this kind."""
    if kind == "memory":
        return f"memory://web-{next(_names)}"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    from tests.servers import postgres, redis

    return str((postgres if kind == "postgres" else redis).conformance_url(tmp_path))


@pytest.fixture(params=["memory", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh store, for tests that run on the embedded stores."""
    return store_url(request.param, tmp_path)


@pytest.fixture
def jobs(url: str) -> Iterator[Client]:
    """A client on the store, to add and fail jobs."""
    client = connect(url)
    yield client
    client.close()


@pytest.fixture
def web(url: str) -> Iterator[TestClient]:
    """The dashboard over the store, as an HTTP client (CSRF cookie set by a first GET)."""
    with TestClient(create_app(url), base_url="http://testserver") as http:
        http.get("/")
        yield http


def csrf(http: TestClient) -> str:
    """The CSRF token the dashboard set in the client's cookie."""
    token = http.cookies.get("disquette_csrf")
    assert token
    return str(token)


def fail_for_good(client: Client, body: object, queue: str = "q", job_type: str = "sms") -> str:
    """Add a job and fail it at its only attempt; return its id."""
    job_id = client.type(job_type).max_attempts(1).add(body, queue)
    job = client.get(queue, timeout=0)
    assert job.id == job_id
    client.fail(job, "Traceback (most recent call last):\n  ...\nValueError: boom")
    return str(job_id)


class Served:
    """An ASGI app served by uvicorn on a free loopback port, from a thread."""

    def __init__(self, app: ASGIApp) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", timeout_graceful_shutdown=1
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            self.thread.join(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
