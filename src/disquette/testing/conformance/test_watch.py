"""``watch()`` on every store, sync flavour (the asyncio one is ``test_watch_asyncio.py``;
both are written by hand: the adds come from a thread here, a task there). Each test adds
until the watcher reports, so no test depends on how fast the event comes."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from disquette import ManualClock, connect
from disquette.stores.types import QueueEvent

from ._fixtures import clock_fixture, store_url_fixture  # noqa: F401  # this module's fixtures


def _add_until(url: str, queue: str, stop: threading.Event) -> threading.Thread:
    def add() -> None:
        with connect(url) as other:
            for i in range(300):  # a hang guard: 60 s of adds at most
                if stop.wait(0.2):
                    return
                other.add(i, queue)

    thread = threading.Thread(target=add, daemon=True)
    thread.start()
    return thread


def _until(events: Iterator[QueueEvent], queue: str) -> list[QueueEvent]:
    """The events up to the first of ``queue`` (a wake-up is a hint: a store may report a
    queue that did not change, such as one holding ready jobs when the watch starts)."""
    seen = []
    for event in events:
        seen.append(event)
        if event == QueueEvent(queue):
            return seen
    raise AssertionError("watch() ended")


def test_watch_reports_changed_queues(store_url: str, clock: ManualClock) -> None:
    with connect(store_url, clock=clock) as jobs:
        jobs.add("seed", "quiet")
        stop = threading.Event()
        events = jobs.watch(["busy", "quiet"], debounce=0.01, refresh=0.1)
        thread = _add_until(store_url, "busy", stop)
        try:
            seen = _until(events, "busy")
        finally:
            stop.set()
            thread.join()
            events.close()  # type: ignore[attr-defined]
        assert set(seen) <= {QueueEvent("busy"), QueueEvent("quiet")}


def test_watch_all_queues_finds_new_ones(store_url: str, clock: ManualClock) -> None:
    with connect(store_url, clock=clock) as jobs:
        stop = threading.Event()
        events = jobs.watch(debounce=0.01, refresh=0.1)
        thread = _add_until(store_url, "fresh", stop)
        try:
            _until(events, "fresh")
        finally:
            stop.set()
            thread.join()
            events.close()  # type: ignore[attr-defined]
