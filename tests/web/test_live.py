"""The live stream: every browser tab's server-sent events come from one watch per app."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from disquette import Client, connect_async
from disquette.stores.types import QueueEvent
from disquette.web import create_app

from .conftest import Served

#: How long a stream waits for its event before the test gives up (a wait, not a timing).
PATIENCE = 60.0


def _listen(base: str, found: dict[int, list[str]], slot: int) -> None:
    """Read ``/events`` until a ``changed`` event names queue "mail"."""
    with (
        httpx.Client(timeout=PATIENCE) as http,
        http.stream("GET", f"{base}/events") as response,
    ):
        lines = found.setdefault(slot, [])
        for line in response.iter_lines():
            lines.append(line)
            if line == 'data: "mail"':
                return


def test_two_streams_share_one_watch(url: str, jobs: Client) -> None:
    client = connect_async(url)
    watches: list[dict[str, Any]] = []
    real_watch = client.watch

    def counted(*args: Any, **kwargs: Any) -> AsyncIterator[QueueEvent]:
        watches.append(kwargs)
        return real_watch(*args, **kwargs)

    client.watch = counted  # type: ignore[method-assign]
    app = create_app(client)
    live = app.state.live
    found: dict[int, list[str]] = {}
    with Served(app) as base:
        readers = [
            threading.Thread(target=_listen, args=(base, found, slot), daemon=True)
            for slot in range(2)
        ]
        for reader in readers:
            reader.start()
        deadline = time.monotonic() + PATIENCE
        while live.subscribers < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert live.subscribers == 2
        jobs.add(1, "mail")
        for reader in readers:
            reader.join(PATIENCE)
        assert not any(reader.is_alive() for reader in readers)
        for slot in range(2):
            assert "event: changed" in found[slot]
            assert found[slot][-1] == 'data: "mail"'
        assert len(watches) == 1  # the store saw one watch for both streams
        assert live.watches_started == 1
        deadline = time.monotonic() + PATIENCE
        while live.subscribers and time.monotonic() < deadline:
            time.sleep(0.05)
        assert live.subscribers == 0  # both streams closed: the watch stops with them
