"""The SQLite store's administration: pause modes, limits, the queue list and counts,
flush, and the node and schedule registries (the job moves are in ``store.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...job import Stats, StatsRow
from .._sql import STATES
from ..limits import QueueLimits
from ..types import (
    DONE_CHANNEL,
    PAUSE_MODES,
    PAUSE_OUT,
    NodeInfo,
    PauseMode,
    QueueInfo,
    ScheduleInfo,
    pause_bits,
)
from .database import QUERIES, SqliteDatabase
from .limits import all_limits
from .limits import set_limits as _set_limits


class SqliteAdmin(SqliteDatabase):
    """Pause modes, limits, queues, stats, flush and the registries of one SQLite file."""

    def pause(self, queue: str, paused: bool) -> None:
        """Pause or resume delivery; see :meth:`Store.pause`."""
        with self._transaction() as conn:
            conn.execute(QUERIES["pause" if paused else "resume"], (queue,))
            conn.execute(QUERIES["drop_unpaused"])
        if not paused:
            self._announce([queue])

    def set_pause(self, queue: str, mode: PauseMode) -> None:
        """Set a queue's pause mode; see :meth:`Store.set_pause`."""
        bits = pause_bits(mode)
        with self._transaction() as conn:
            conn.execute(QUERIES["set_pause"], (queue, bits))
            conn.execute(QUERIES["drop_unpaused"])
        if not bits & PAUSE_OUT:
            self._announce([queue])

    def set_limits(self, queue: str, limits: QueueLimits | None) -> None:
        """Set or clear a queue's limits; see :meth:`Store.set_limits`."""
        with self._transaction() as conn:
            _set_limits(conn, queue, limits, self.clock.now())
        self.wakeups.notify([queue])

    def limits(self) -> dict[str, QueueLimits]:
        """Every queue's limits; see :meth:`Store.limits`."""
        with self._connection() as conn:
            return all_limits(conn)

    def pause_mode(self, queue: str) -> PauseMode:
        """A queue's pause mode; see :meth:`Store.pause_mode`."""
        with self._connection() as conn:
            row = conn.execute(QUERIES["pause_mode"], (queue,)).fetchone()
        return PAUSE_MODES[row[0] if row is not None else 0]

    def queues(self) -> list[QueueInfo]:
        """Queues with jobs or a pause mode; see :meth:`Store.queues`."""
        self._refresh(reading=True)
        with self._connection() as conn:
            queued = {queue: int(n) for queue, n in conn.execute(QUERIES["queues"])}
            modes = dict(conn.execute(QUERIES["pause_modes"]).fetchall())
        return [
            QueueInfo(name, queued.get(name, 0), PAUSE_MODES[modes.get(name, 0)])
            for name in sorted(queued.keys() | modes.keys())
        ]

    def flush(self) -> None:
        """Delete every job and pause mode; see :meth:`Store.flush`."""
        with self._transaction() as conn:
            self._script(conn, QUERIES["flush"])
        self._announce([DONE_CHANNEL])

    def register_node(self, node_id: str, address: str, ttl: float) -> None:
        """Register or renew a node; see :meth:`Store.register_node`."""
        now = self.clock.now()
        with self._transaction() as conn:
            conn.execute(QUERIES["forget_lapsed_nodes"], {"now": now})
            params = {"id": node_id, "address": address, "expires_at": now + ttl}
            conn.execute(QUERIES["register_node"], params)

    def unregister_node(self, node_id: str) -> None:
        """Remove a node; see :meth:`Store.unregister_node`."""
        self._write(QUERIES["unregister_node"], (node_id,))

    def nodes(self) -> list[NodeInfo]:
        """Live nodes; see :meth:`Store.nodes`."""
        with self._connection() as conn:
            rows = conn.execute(QUERIES["nodes"], (self.clock.now(),)).fetchall()
        return [NodeInfo(node_id, address, expires) for node_id, address, expires in rows]

    def register_schedules(self, schedules: Sequence[ScheduleInfo]) -> None:
        """Record definitions, keeping paused flags; see :meth:`Store.register_schedules`."""
        rows = [(info.name, info.definition()) for info in schedules]
        with self._transaction() as conn:
            conn.executemany(QUERIES["register_schedule"], rows)

    def schedules(self) -> list[ScheduleInfo]:
        """Registered schedules; see :meth:`Store.schedules`."""
        with self._connection() as conn:
            rows = conn.execute(QUERIES["schedules"]).fetchall()
        return [ScheduleInfo.from_definition(n, d, bool(p)) for n, d, p in rows]

    def pause_schedule(self, name: str, paused: bool) -> bool:
        """Pause or resume a schedule; see :meth:`Store.pause_schedule`."""
        return self._write(QUERIES["pause_schedule"], (int(paused), name)).rowcount > 0

    def stats(self) -> Stats:
        """Counts per queue and type; see :meth:`Store.stats`."""
        self._refresh(reading=True)
        with self._connection() as conn:
            grouped = conn.execute(QUERIES["stats"]).fetchall()
            paused = frozenset(row[0] for row in conn.execute(QUERIES["paused"]))
        merged: dict[tuple[str, str | None], dict[str, Any]] = {}
        for queue, type_, state, count, max_errors, oldest in grouped:
            row = merged.setdefault((queue, type_), {"max_error_count": 0, "oldest_run_at": None})
            row[STATES[state].value] = count
            row["max_error_count"] = max(row["max_error_count"], max_errors or 0)
            if oldest is not None:
                row["oldest_run_at"] = min(oldest, row["oldest_run_at"] or oldest)
        rows = tuple(StatsRow(queue=q, type=t, **fields) for (q, t), fields in merged.items())
        return Stats(rows=rows, paused=paused)
