"""The PostgreSQL store's maintainer: what time made due (expiry, scheduled jobs, lapsed
leases) applied by one process at a time, outside the claims.

Each store started by a claim runs one, on a connection of its own (``011_maintainer.sql``).
The one whose session gets the schema's maintainer lock (``pg_try_advisory_lock``, released
with its connection) leads: it applies a batch of at most 1,000 rows per step, pass after
pass, until nothing is due, then sleeps until the next due time, at most
:data:`_PERIOD` seconds, or until this process adds a job due earlier. Each pass renews
the span of clock readings it answers for (a :data:`_LEASE` either side of its own), and a
claim whose reading falls in that span applies nothing: while a million scheduled jobs come
due, the claims only claim. The others stand by and try the lock every :data:`_STANDBY`
seconds. A claim outside the span (no maintainer anywhere, one that stopped renewing, a
short-lived script, a caller whose clock is off) applies a batch itself, as before, so no
due job waits for a maintainer.

Only stores on the system clock start one: the maintainer's sleeps assume time moves on its
own (a store on a ``ManualClock`` keeps applying the maintenance in its calls).

This file is the asyncio source; ``maintainer.py`` beside it is generated from it.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Final

import psycopg
from psycopg import AsyncConnection

from ..._concurrency import AsyncBackground, AsyncSignal
from ...clock import Clock

#: The longest the leader sleeps between two passes: a job another process adds, due before
#: what the leader last saw, is promoted at most this late (a blocked get polls as often).
_PERIOD: Final = 0.25
#: The span either side of a pass's clock reading that the leader answers for: four
#: periods, so a late pass or two does not send the claims back to maintaining.
_LEASE: Final = 1.0
#: How often a process that does not lead tries to take the lead.
_STANDBY: Final = 1.0
#: The longest one pass applies batch after batch (each committed) before it returns: one
#: round trip for many batches, so a leader on a loaded machine does not wait for the CPU
#: between two batches of a burst; well within the lease.
_BUDGET: Final = 0.2
#: How long the leader waits when a claim outside its span holds the maintenance lock.
_LOCKED_PAUSE: Final = 0.01


class AsyncMaintainer:
    """The background maintainer of one store: leader or standby once started."""

    def __init__(
        self,
        conninfo: str,
        application_name: str,
        q: dict[str, str],
        clock: Clock,
        *,
        enabled: bool,
    ) -> None:
        self._conninfo = conninfo
        self._application_name = f"{application_name} maintainer"
        self._q = q
        self._clock = clock
        self._enabled = enabled
        self._lock = threading.Lock()
        self._closed = False
        self._task: AsyncBackground | None = None
        self._signal: AsyncSignal | None = None
        #: Whether this process holds the lead (its session holds the maintainer lock).
        self.leading = False
        #: The earliest due time the leader knows of (None: nothing scheduled).
        self._next_due: float | None = None

    def start(self) -> None:
        """Start the maintainer (the first call does; the others return at once)."""
        if self._task is not None or not self._enabled:
            return
        with self._lock:
            if self._task is None and not self._closed:
                self._signal = AsyncSignal()
                self._task = AsyncBackground(self._run, name="disquette-maintain")

    def scheduled(self, run_ats: list[float]) -> None:
        """Jobs this process added come due at ``run_ats``: wake the leader if it sleeps
        past the earliest."""
        if not run_ats or not self.leading or self._signal is None:
            return
        run_at = min(run_ats)
        if self._next_due is None or run_at < self._next_due:
            self._next_due = run_at
            self._signal.set()

    async def _pause(self, seconds: float) -> None:
        if self._signal is not None and not self._closed:
            await self._signal.wait(max(0.0, seconds))

    async def _run(self) -> None:
        """Lead or stand by until closed; reconnect when the connection is lost."""
        delay = 0.02
        while not self._closed:
            try:
                conn = await AsyncConnection.connect(
                    self._conninfo, autocommit=True, application_name=self._application_name
                )
            except psycopg.Error:
                await self._pause(delay)
                delay = min(delay * 2, 1.0)
                continue
            try:
                delay = 0.02
                await self._serve(conn)
            except psycopg.Error:  # lost connection (or anything else): start over
                await self._pause(delay)
                delay = min(delay * 2, 1.0)
            finally:
                await self._resign(conn)

    async def _serve(self, conn: AsyncConnection[Any]) -> None:
        await conn.execute(self._q["maintainer_session"])
        while not self._closed:
            if not self.leading:
                cursor = await conn.execute(self._q["maintainer_lead"])
                row = await cursor.fetchone()
                self.leading = bool(row and row[0])
                if not self.leading:
                    await self._pause(_STANDBY)
                    continue
            await self._pause(await self._pass(conn))

    async def _pass(self, conn: AsyncConnection[Any]) -> float:
        """Batches until nothing is due or the budget is spent; return how long to sleep
        before the next pass."""
        now = self._clock.now()
        params = {"now": now, "lease": _LEASE, "budget": _BUDGET}
        cursor = await conn.execute(self._q["maintainer_pass"], params)
        row = await cursor.fetchone()
        if row is None:
            return _PERIOD
        locked, changed, next_due = bool(row[0]), int(row[1]), row[2]
        if locked:  # a claim outside the span is applying a batch: its own, then ours
            return _LOCKED_PAUSE
        self._next_due = next_due
        if next_due is None:
            return _PERIOD
        if next_due <= now and not changed:
            # Due, yet nothing could be applied: the rows are locked by a transaction of
            # another process (a caller's own, say). Again in a while, not in a loop.
            return _PERIOD
        # Due now: at once (the claims are left the ready jobs between two batches).
        return min(_PERIOD, max(0.0, float(next_due) - self._clock.now()))

    async def _resign(self, conn: AsyncConnection[Any]) -> None:
        """Give the lead back, so that claims maintain again at once; close ``conn``."""
        leading, self.leading = self.leading, False
        with contextlib.suppress(psycopg.Error):
            if leading and not conn.closed:
                await conn.execute(self._q["maintainer_resign"])
            await conn.close()

    async def close(self) -> None:
        """Stop (once): the leader gives the lead back and closes its connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            task, self._task = self._task, None
        if self._signal is not None:
            self._signal.set()
        if task is not None:
            await task.stop(timeout=5.0)
