"""The PostgreSQL store's LISTEN connection: NOTIFYs from other processes as in-process
wake-ups.

Adds (and the other calls that make jobs ready) send a ``NOTIFY`` naming the queue; acks,
failures for good, cancels and deletes send the id of each job ended that a wait is on, on a
second channel. A dedicated ``LISTEN`` connection, started the first time a call blocks,
turns them into in-process wake-ups, so a waiting ``get`` starts a job added by another
process, and a ``wait`` returns a result acked by another process, within a round trip;
``poll_interval`` is only the fallback for delays, leases and TTLs running out. It listens
on each channel only once something waits for it: a worker that never calls ``wait``
receives no NOTIFY per ack.

The NOTIFYs are sent only to registered waiters: a transaction that issues one takes a
cluster-wide lock at its commit, listened to or not. So the listener registers, in the
schema's unlogged ``waiters`` table and on its own connection, each queue a blocked get of
its process waited on; the statements NOTIFY only when such a row exists
(``006_hot_paths.sql``). It registers again on each (re)connection, and then wakes every
waiter here, since what changed before the registration sent no NOTIFY. A waiter nothing
here subscribed to for :data:`_FORGET_AFTER` seconds is unregistered. A get that starts
before the registration is in place (the first of its kind in a process) may thus miss a
change made meanwhile by another process until the next poll, never longer.

A ``wait`` registers its own job (``010_wakeups.sql``): the store inserts the row, for this
listener's backend, in the round trip of the wait's first read and before it (see
:meth:`AsyncListener.take_jobs`), so no end of the job is missed; the end NOTIFYs the job's
id, and only the waits on that job wake. The listener deletes the rows of jobs nothing here
waits on any more, and registers the jobs waited on when it (re)connects.

This file is the asyncio source; ``listener.py`` beside it is generated from it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Final

import psycopg
from psycopg import AsyncConnection, sql

from ..._concurrency import AsyncBackground, async_sleep
from ..types import CANCEL_CHANNEL, DONE_CHANNEL, JOB_DONE_PREFIX, Wakeups, job_done_channel
from .statements import channel_name

#: The kinds of a row of the waiters table: a queue's blocked gets, waits for any result
#: (a ``DONE_CHANNEL`` subscription without a job of its own), and waits on one job.
_QUEUE_WAITER: Final = 1
_DONE_WAITER: Final = 2
_JOB_WAITER: Final = 3
#: Seconds a registered waiter stays registered once nothing here waits for it any more: a
#: process that called ``wait`` once, or stopped getting from a queue, stops costing every
#: other process a NOTIFY per ack or add, and one that waits again often keeps its row.
_FORGET_AFTER: Final = 60.0

#: How often the sync flavor's listener thread looks up from its socket to see if the store
#: was closed (the asyncio flavor's listener task is cancelled instead).
_LISTEN_TICK: Final = 0.2


class AsyncListener:
    """The wake-ups of one store, fed by NOTIFYs on its schema's two channels once
    something waits (unless ``enabled`` is false: then only the store's own calls wake)."""

    def __init__(
        self,
        conninfo: str,
        schema: str,
        application_name: str,
        q: dict[str, str],
        *,
        enabled: bool,
    ) -> None:
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
        self._q = q
        #: The channels the listener should LISTEN on: each once something waits for it.
        self._wanted: frozenset[str] = frozenset()
        #: The waiters it should register: (kind, queue name or "").
        self._waiters: frozenset[tuple[int, str]] = frozenset()
        #: When each waiter was last subscribed to (monotonic), see _forget_idle.
        self._last_wanted: dict[tuple[int, str], float] = {}
        #: The listener's backend (pid, start time) while it is connected: a wait's job is
        #: registered on its behalf (see :meth:`take_jobs`).
        self.backend: tuple[int, Any] | None = None
        #: Jobs a wait subscribed to that are not registered yet (the store registers them
        #: in the round trip of the wait's next read), and those registered under the
        #: current backend (the listener deletes their rows once nothing waits on them).
        self._pending_jobs: set[str] = set()
        self._job_rows: set[str] = set()

    def _on_subscribe(self, channels: list[str]) -> None:
        # A blocked get needs the NOTIFYs of adds, a wait those of acks, failures, deletes.
        # Each channel is listened to only once needed: a process that only gets (a worker)
        # is not sent a NOTIFY per ack, which costs it ~0.1 ms of CPU each.
        special = {DONE_CHANNEL: self.done_channel, CANCEL_CHANNEL: self.cancel_channel}
        # A wait's own job is registered as such (kind 3, by the store: see take_jobs), and
        # its DONE_CHANNEL then only needs the LISTEN: only that job's end is sent.
        prefix = len(JOB_DONE_PREFIX)
        jobs = {name[prefix:] for name in channels if name.startswith(JOB_DONE_PREFIX)}
        channels = [name for name in channels if not name.startswith(JOB_DONE_PREFIX)]
        wanted = {special.get(name, self.channel) for name in channels}
        waiters = {
            (_DONE_WAITER, "") if name == DONE_CHANNEL else (_QUEUE_WAITER, name)
            for name in channels
            if name != CANCEL_CHANNEL  # cancel requests are rare: always sent
            and not (name == DONE_CHANNEL and jobs)
        }
        now = time.monotonic()
        with self._lock:  # with _forget_idle's: a waiter is never dropped as it subscribes
            self._pending_jobs |= jobs
            for waiter in waiters:
                self._last_wanted[waiter] = now
            if self._task is not None and wanted <= self._wanted and waiters <= self._waiters:
                return
            self._wanted = self._wanted | wanted
            self._waiters = self._waiters | waiters
            if self._task is None and not self._closed:
                self._task = AsyncBackground(self._listen, name="disquette-listen")

    def _forget_idle(self) -> frozenset[tuple[int, str]]:
        """Drop (and return) the waiters nothing here subscribed to for ``_FORGET_AFTER``
        seconds; a later subscription registers them again."""
        subscribed = self.wakeups.subscribed()
        deadline = time.monotonic() - _FORGET_AFTER
        with self._lock:
            idle = frozenset(
                waiter
                for waiter in self._waiters
                if self._last_wanted.get(waiter, 0.0) <= deadline
                and (DONE_CHANNEL if waiter[0] == _DONE_WAITER else waiter[1]) not in subscribed
            )
            if idle:
                self._waiters = self._waiters - idle
                for waiter in idle:
                    self._last_wanted.pop(waiter, None)
        return idle

    def take_jobs(self) -> tuple[tuple[int, Any], list[str]] | None:
        """The jobs waits subscribed to since the last call, and the listener backend to
        register them for; None when there are none, or no backend yet (the listener
        registers them itself once it connects). The caller registers them before its read
        (``register_job_waiters``), then calls :meth:`registered`."""
        if not self._pending_jobs:  # the usual case: no lock taken
            return None
        with self._lock:
            backend = self.backend
            if backend is None or not self._pending_jobs:
                return None
            jobs, self._pending_jobs = sorted(self._pending_jobs), set()
        return backend, jobs

    def untake_jobs(self, jobs: list[str]) -> None:
        """Give back jobs :meth:`take_jobs` returned that could not be registered."""
        with self._lock:
            self._pending_jobs.update(jobs)

    def registered(self, backend: tuple[int, Any], jobs: list[str]) -> None:
        """Record that ``jobs`` were registered for ``backend`` (see :meth:`take_jobs`)."""
        with self._lock:
            if backend == self.backend:
                self._job_rows.update(jobs)

    def _jobs_to_forget(self) -> list[str]:
        """The registered jobs nothing here waits on any more (forgotten here at once)."""
        if not self._job_rows:
            return []
        subscribed = self.wakeups.subscribed()
        with self._lock:
            gone = [job for job in self._job_rows if job_done_channel(job) not in subscribed]
            self._job_rows.difference_update(gone)
        return gone

    async def _forget_jobs(self, conn: AsyncConnection[Any]) -> None:
        """Delete the rows of jobs nothing waits on; a wait that started on one of them
        meanwhile is registered again (and reads its job again, after that)."""
        gone = self._jobs_to_forget()
        if not gone:
            return
        await conn.execute(self._q["unregister_job_waiters"], {"ids": gone})
        subscribed = self.wakeups.subscribed()
        again = [job for job in gone if job_done_channel(job) in subscribed]
        if again:
            with self._lock:
                self._pending_jobs.update(again)
            self.wakeups.notify([job_done_channel(job) for job in again])

    async def _connected(self, conn: AsyncConnection[Any]) -> None:
        """A new listener backend: register the jobs waited on now, for it."""
        cursor = await conn.execute(self._q["listener_backend"])
        row = await cursor.fetchone()
        backend = (int(row[0]), row[1]) if row is not None else None
        subscribed = self.wakeups.subscribed()
        jobs = sorted(
            name[len(JOB_DONE_PREFIX) :] for name in subscribed if name.startswith(JOB_DONE_PREFIX)
        )
        if backend is not None and jobs:
            params = {"pid": backend[0], "started": backend[1], "ids": jobs}
            await conn.execute(self._q["register_job_waiters"], params)
        with self._lock:
            self.backend = backend
            self._job_rows = set(jobs)
            self._pending_jobs.difference_update(jobs)

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
                registered: frozenset[tuple[int, str]] = frozenset()
                await conn.execute(self._q["forget_dead_waiters"])
                await self._connected(conn)
                while not self._closed:
                    await self._forget_jobs(conn)
                    idle = self._forget_idle() & registered
                    if idle:
                        await self._unregister(conn, idle)
                        registered = registered - idle
                    wanted, waiters = self._wanted, self._waiters
                    if wanted != listening or waiters != registered:
                        for name in sorted(wanted - listening):
                            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(name)))
                        await self._register(conn, waiters - registered)
                        listening, registered = wanted, waiters
                        delay = 0.02
                        # What changed while no LISTEN was active, or before its waiter was
                        # registered, sent its NOTIFY to nobody: every waiter claims, or
                        # reads its job, once more now. (A channel or queue wanted while
                        # listening already is taken up within a tick.)
                        self.wakeups.notify_all()
                    # Returns after _LISTEN_TICK even while NOTIFYs keep coming.
                    async for notify in conn.notifies(timeout=_LISTEN_TICK):
                        if notify.channel == self.done_channel:
                            # The job that ended, or "any job" (an empty payload).
                            payload = notify.payload
                            self.wakeups.notify(
                                [job_done_channel(payload) if payload else DONE_CHANNEL]
                            )
                        elif notify.channel == self.cancel_channel:
                            self.wakeups.notify([CANCEL_CHANNEL])
                        else:
                            self.wakeups.notify([notify.payload])
            except psycopg.Error:  # lost connection (or anything else): start over
                await async_sleep(delay)
                delay = min(delay * 2, 1.0)
            finally:
                with self._lock:
                    self.backend = None
                    self._job_rows = set()
                with contextlib.suppress(psycopg.Error):
                    if not conn.closed:
                        await conn.execute(self._q["unregister_waiters"])
                    await conn.close()

    async def _register(
        self, conn: AsyncConnection[Any], waiters: frozenset[tuple[int, str]]
    ) -> None:
        """Register ``waiters`` as this connection's (its backend's rows go with it)."""
        if waiters:
            await conn.execute(self._q["register_waiters"], _waiter_params(waiters))

    async def _unregister(
        self, conn: AsyncConnection[Any], waiters: frozenset[tuple[int, str]]
    ) -> None:
        """Delete this connection's rows of ``waiters``."""
        await conn.execute(self._q["unregister_some_waiters"], _waiter_params(waiters))

    async def close(self) -> None:
        """Stop listening (once); no listener starts after this."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            task, self._task = self._task, None
        if task is not None:
            await task.stop(timeout=5 * _LISTEN_TICK)


def _waiter_params(waiters: frozenset[tuple[int, str]]) -> dict[str, list[Any]]:
    ordered = sorted(waiters)
    return {"kinds": [kind for kind, _ in ordered], "names": [name for _, name in ordered]}
