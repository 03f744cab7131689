"""The PostgreSQL store's LISTEN connection: NOTIFYs from other processes as in-process
wake-ups.

Adds (and the other calls that make jobs ready) send a ``NOTIFY`` naming the queue; acks,
failures for good and deletes send one on a second channel, at most one per statement. A
dedicated ``LISTEN`` connection, started the first time a call blocks, turns them into
in-process wake-ups, so a waiting ``get`` starts a job added by another process, and a
``wait`` returns a result acked by another process, within a round trip; ``poll_interval``
is only the fallback for delays, leases and TTLs running out. It listens on each channel
only once something waits for it: a worker that never calls ``wait`` receives no NOTIFY per
ack.

This file is the asyncio source; ``listener.py`` beside it is generated from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from typing import Final

import psycopg
from psycopg import AsyncConnection, sql

from ..._concurrency import AsyncBackground, async_sleep
from ..types import CANCEL_CHANNEL, DONE_CHANNEL, Wakeups

#: How often the sync flavor's listener thread looks up from its socket to see if the store
#: was closed (the asyncio flavor's listener task is cancelled instead).
_LISTEN_TICK: Final = 0.2


def channel_name(schema: str, suffix: str = "") -> str:
    """The NOTIFY channel of a schema (at most 63 bytes, PostgreSQL's identifier limit):
    jobs became ready in the queue named by the payload; with ``suffix=".done"``, the
    channel of "a job is done or gone" (a schema name has no dot, so the two never meet)."""
    name = f"disquette.{schema}{suffix}"
    if len(name.encode()) > 63:
        name = f"disquette.{hashlib.sha1(schema.encode()).hexdigest()}{suffix}"
    return name


class AsyncListener:
    """The wake-ups of one store, fed by NOTIFYs on its schema's two channels once
    something waits (unless ``enabled`` is false: then only the store's own calls wake)."""

    def __init__(self, conninfo: str, schema: str, application_name: str, *, enabled: bool) -> None:
        #: The channel of jobs made ready (the payload names the queue).
        self.channel = channel_name(schema)
        #: The channel of acks, failures for good and deletes (what ``wait`` waits for).
        self.done_channel = channel_name(schema, ".done")
        #: The channel of cancel requests for active jobs (what workers wait for).
        self.cancel_channel = channel_name(schema, ".cancel")
        self.wakeups = Wakeups(on_subscribe=self._on_subscribe if enabled else None)
        self._conninfo = conninfo
        self._application_name = f"{application_name} listener"
        self._lock = threading.Lock()
        self._closed = False
        self._task: AsyncBackground | None = None
        #: The channels the listener should LISTEN on: each once something waits for it.
        self._wanted: frozenset[str] = frozenset()

    def _on_subscribe(self, channels: list[str]) -> None:
        # A blocked get needs the NOTIFYs of adds, a wait those of acks, failures, deletes.
        # Each channel is listened to only once needed: a process that only gets (a worker)
        # is not sent a NOTIFY per ack, which costs it ~0.1 ms of CPU each.
        special = {DONE_CHANNEL: self.done_channel, CANCEL_CHANNEL: self.cancel_channel}
        wanted = {special.get(name, self.channel) for name in channels}
        if self._task is not None and wanted <= self._wanted:
            return
        with self._lock:
            self._wanted = self._wanted | wanted
            if self._task is None and not self._closed:
                self._task = AsyncBackground(self._listen, name="disquette-listen")

    async def _listen(self) -> None:
        """Turn NOTIFYs into wake-ups; reconnect when the connection is lost."""
        delay = 0.02
        while not self._closed:
            try:
                conn = await AsyncConnection.connect(
                    self._conninfo, autocommit=True, application_name=self._application_name
                )
            except psycopg.OperationalError:
                await async_sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            try:
                listening: frozenset[str] = frozenset()
                while not self._closed:
                    wanted = self._wanted
                    if wanted != listening:
                        for name in sorted(wanted - listening):
                            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(name)))
                        listening = wanted
                        delay = 0.02
                        # What changed while no LISTEN was active sent its NOTIFY to nobody:
                        # every waiter claims, or reads its job, once more now. (A channel
                        # wanted while listening on another is listened to within a tick.)
                        self.wakeups.notify_all()
                    # Returns after _LISTEN_TICK even while NOTIFYs keep coming.
                    async for notify in conn.notifies(timeout=_LISTEN_TICK):
                        if notify.channel == self.done_channel:
                            self.wakeups.notify([DONE_CHANNEL])
                        elif notify.channel == self.cancel_channel:
                            self.wakeups.notify([CANCEL_CHANNEL])
                        else:
                            self.wakeups.notify([notify.payload])
            except psycopg.Error:  # lost connection (or anything else): start over
                await async_sleep(delay)
                delay = min(delay * 2, 1.0)
            finally:
                with contextlib.suppress(psycopg.Error):
                    await conn.close()

    async def close(self) -> None:
        """Stop listening (once); no listener starts after this."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            task, self._task = self._task, None
        if task is not None:
            await task.stop(timeout=5 * _LISTEN_TICK)
