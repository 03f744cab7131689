"""The Redis store's registries and its view across queues: per-queue limits, server
nodes, schedules, and stats. Plain keys and hashes beside the queues' (the limits hash in
each queue's slot, for the claim script); none of these calls wakes a waiter (the store
does, where one must).

This file is the asyncio source; ``admin.py`` beside it is generated from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from ...clock import Clock
from ...job import Stats, StatsRow
from ..limits import QueueLimits
from ..types import PAUSE_OUT, NodeInfo, ScheduleInfo
from .codec import decode_text
from .runner_async import AsyncScriptRunner

#: Jobs read by ``stats`` (and ``flush``) per script call: bounds how long one call holds
#: Redis.
STATS_CHUNK: Final = 2000


class AsyncAdmin:
    """The calls of :class:`AsyncRedisStore` that keep registries or read across queues."""

    def __init__(self, runner: AsyncScriptRunner, prefix: str, clock: Clock) -> None:
        self._runner = runner
        self._prefix = prefix
        self._clock = clock
        self._nodes_key = prefix + "nodes"
        # One hash outside the queues' hash tags (as the node registry): field "d:<name>"
        # holds a schedule's definition, "p:<name>" is present while it is paused.
        self._schedules_key = prefix + "schedules"

    async def set_limits(self, queue: str, limits: QueueLimits | None) -> None:
        """Set or clear a queue's limits; see :meth:`AsyncStore.set_limits`.

        One hash per queue (``<prefix>{<queue>}:lim``, in the queue's slot, read by the
        claim script; one HSET, so a claim sees all of it or none), and the set
        ``<prefix>limits`` of limited queues for :meth:`limits` to list.
        """
        key = self._runner.queue_key(queue, "lim")
        if limits is None or limits.empty:
            await self._runner.command("DEL", key)
            await self._runner.command("SREM", self._prefix + "limits", queue)
        else:
            count, per = limits.rate if limits.rate is not None else ("", "")
            concurrency = "" if limits.concurrency is None else limits.concurrency
            await self._runner.command("SADD", self._prefix + "limits", queue)
            await self._runner.command(
                "HSET", key, "c", concurrency, "rc", count, "rp", per,
                "tk", count, "fa", repr(self._clock.now()),
            )  # fmt: skip

    async def limits(self) -> dict[str, QueueLimits]:
        """Every queue's limits; see :meth:`AsyncStore.limits`."""
        found: dict[str, QueueLimits] = {}
        for raw in sorted(await self._runner.command("SMEMBERS", self._prefix + "limits")):
            queue = raw.decode() if isinstance(raw, bytes) else str(raw)
            values = await self._runner.command(
                "HMGET", self._runner.queue_key(queue, "lim"), "c", "rc", "rp"
            )
            c, rc, rp = (v.decode() if isinstance(v, bytes) else v for v in values)
            if c is None and rc is None:
                continue  # cleared meanwhile
            found[queue] = QueueLimits(int(c) if c else None, (int(rc), float(rp)) if rc else None)
        return found

    async def register_node(self, node_id: str, address: str, ttl: float) -> None:
        """Register or renew a node; see :meth:`AsyncStore.register_node`."""
        expires_at = repr(self._clock.now() + ttl)
        await self._runner.command("HSET", self._nodes_key, node_id, f"{expires_at} {address}")

    async def unregister_node(self, node_id: str) -> None:
        """Remove a node; see :meth:`AsyncStore.unregister_node`."""
        await self._runner.command("HDEL", self._nodes_key, node_id)

    async def nodes(self) -> list[NodeInfo]:
        """Live nodes; see :meth:`AsyncStore.nodes`."""
        now = self._clock.now()
        registered = await self._runner.command("HGETALL", self._nodes_key)
        live, lapsed = [], []
        for node_id, value in registered.items():
            expires_at, _, address = value.decode().partition(" ")
            if float(expires_at) > now:
                live.append(NodeInfo(node_id.decode(), address, float(expires_at)))
            else:
                lapsed.append(node_id)
        if lapsed:
            await self._runner.command("HDEL", self._nodes_key, *lapsed)
        return sorted(live, key=lambda node: node.id)

    async def register_schedules(self, schedules: Sequence[ScheduleInfo]) -> None:
        """Record definitions, keeping paused flags; see :meth:`AsyncStore.register_schedules`."""
        if schedules:
            fields = [part for i in schedules for part in ("d:" + i.name, i.definition())]
            await self._runner.command("HSET", self._schedules_key, *fields)

    async def schedules(self) -> list[ScheduleInfo]:
        """Registered schedules; see :meth:`AsyncStore.schedules`."""
        fields = {
            key.decode(): value
            for key, value in (await self._runner.command("HGETALL", self._schedules_key)).items()
        }
        return [
            ScheduleInfo.from_definition(key[2:], value, "p:" + key[2:] in fields)
            for key, value in sorted(fields.items())
            if key.startswith("d:")
        ]

    async def pause_schedule(self, name: str, paused: bool) -> bool:
        """Pause or resume a schedule; see :meth:`AsyncStore.pause_schedule`.

        Two commands, safe because no call removes a definition once registered."""
        if not await self._runner.command("HEXISTS", self._schedules_key, "d:" + name):
            return False
        if paused:
            await self._runner.command("HSET", self._schedules_key, "p:" + name, 1)
        else:
            await self._runner.command("HDEL", self._schedules_key, "p:" + name)
        return True

    async def stats(self) -> Stats:
        """Counts per queue and type; see :meth:`AsyncStore.stats`.

        A queue is read in chunks of ``STATS_CHUNK`` jobs, one script call each, so the
        figures of a big queue are not one atomic snapshot.
        """
        rows: list[StatsRow] = []
        paused: set[str] = set()
        for queue in await self._runner.all_queues():
            merged: dict[str | None, list[Any]] = {}
            position = [1, 0]
            while position[0]:
                reply = await self._runner.run(
                    "stats", [self._runner.queue_key(queue, "r")], [queue, *position, STATS_CHUNK]
                )
                if int(reply[0]) & PAUSE_OUT:
                    paused.add(queue)
                position = [int(reply[1]), int(reply[2])]
                for at in range(3, len(reply), 10):
                    type_, *counts, max_errors, oldest, cancelled, waiting = reply[at : at + 10]
                    name = decode_text(type_)
                    row = merged.setdefault(name, [0, 0, 0, 0, 0, 0, None, 0, 0])
                    for column, value in enumerate(counts):
                        row[column] += int(value)
                    row[5] = max(row[5], int(max_errors))
                    if oldest is not None and (row[6] is None or float(oldest) < row[6]):
                        row[6] = float(oldest)
                    row[7] += int(cancelled)
                    row[8] += int(waiting)
            for name in sorted(merged, key=lambda name: name or ""):
                scheduled, queued, active, done, failed, max_errors, oldest, cancelled, waiting = (
                    merged[name]
                )
                rows.append(
                    StatsRow(
                        queue=queue,
                        type=name,
                        scheduled=scheduled,
                        queued=queued,
                        active=active,
                        done=done,
                        failed=failed,
                        cancelled=cancelled,
                        waiting=waiting,
                        max_error_count=max_errors,
                        oldest_run_at=oldest,
                    )
                )
        return Stats(rows=tuple(rows), paused=frozenset(paused))
