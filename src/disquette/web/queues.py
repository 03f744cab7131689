"""What the overview and a queue's page show about queues, in at most three store calls.

On stores with ``capabilities.queue_counts`` a page reads the queues' capped counts by
state in one bounded call (exact up to :data:`~disquette.stores.types.COUNT_CAP`, then
"10,000+"), the rollups for the sparklines, and the queue limits: its cost does not grow
with the jobs the store holds. The ``disque://`` store cannot count that way: there the
pages read :meth:`~disquette.AsyncClient.stats`, which reads every job.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from markupsafe import Markup

from ..client_async import AsyncClient
from ..job import JobState
from ..stores.limits import QueueLimits
from ..stores.types import JobCount, PauseMode, QueueCounts, queue_counts_of
from .svg import sparkline


@dataclasses.dataclass(frozen=True, slots=True)
class QueueRow:
    """One queue as a page shows it."""

    name: str
    #: By state name, every :class:`~disquette.JobState` (a new state shows by itself).
    counts: dict[str, JobCount]
    pause: PauseMode
    #: Seconds the next ready job has waited (None: no job is ready).
    latency: float | None
    limits: QueueLimits | None
    #: The bound the dashboard was told this queue's adds use (``create_app(max_len=)``).
    max_len: int | None
    spark: Markup
    throughput: float

    @property
    def fill(self) -> float | None:
        """Queued jobs over ``max_len``, from 0 to 1 (None without a known bound)."""
        if not self.max_len:
            return None
        return min(1.0, self.counts[JobState.QUEUED.value].value / self.max_len)

    @property
    def queued_count(self) -> JobCount:
        """The queued count (what ``max_len`` bounds)."""
        return self.counts[JobState.QUEUED.value]


async def read_counts(client: AsyncClient, queue: str | None) -> list[QueueCounts]:
    """The queues' counts by state: one bounded call where the store can, else the
    whole-store :meth:`stats` with each queue's next ready job (``disque://``)."""
    if client.store.capabilities.queue_counts:
        return await client.queue_counts(queue)
    by_queue = (await client.stats()).by_queue()
    infos = {info.name: info for info in await client.queues()}
    names = sorted(set(by_queue) | set(infos))
    result = []
    for name in names if queue is None else [n for n in names if n == queue]:
        row = by_queue.get(name)
        exact = {s: getattr(row, s.value, 0) for s in JobState} if row else {}
        info = infos.get(name)
        oldest = await client.peek(name) if info and info.queued else []
        since = max(oldest[0].run_at, oldest[0].created_at) if oldest else None
        pause = info.pause if info else "none"
        result.append(queue_counts_of(name, exact, 2**62, pause, since))
    return result


async def read_limits(client: AsyncClient) -> dict[str, QueueLimits]:
    """Every limited queue's limits (none on a store that keeps no limits)."""
    if not client.store.capabilities.limits:
        return {}
    return await client.limits()


async def sparklines(client: AsyncClient, now: float, queue: str | None) -> dict[str, list[float]]:
    """Jobs finished per minute over the last hour, per queue (empty without rollups)."""
    if not client.store.capabilities.rollups:
        return {}
    start = (now // 60 - 59) * 60
    series: dict[str, list[float]] = {}
    for row in await client.rollups("minute", since=start, queue=queue):
        slot = int((row.start - start) // 60)
        if 0 <= slot < 60:
            series.setdefault(row.queue, [0.0] * 60)[slot] += row.completed + row.errors
    return series


def rows(
    counts: list[QueueCounts],
    sparks: Mapping[str, list[float]],
    limits: Mapping[str, QueueLimits],
    max_len: Mapping[str, int],
    now: float,
) -> list[QueueRow]:
    """The rows of the queues in ``counts``, with a limited queue or a throughput without
    jobs listed too."""
    by_name = {c.name: c for c in counts}
    result = []
    for name in sorted(by_name.keys() | sparks.keys() | limits.keys()):
        found = by_name.get(name) or queue_counts_of(name, {}, 1)
        series = sparks.get(name, [])
        result.append(
            QueueRow(
                name=name,
                counts={state.value: found.count(state) for state in JobState},
                pause=found.pause,
                latency=None if found.ready_since is None else max(0.0, now - found.ready_since),
                limits=limits.get(name),
                max_len=max_len.get(name),
                spark=sparkline(series, label=f"{name}: jobs per minute"),
                throughput=sum(series),
            )
        )
    return result


def limits_text(limits: QueueLimits | None) -> str:
    """``limits`` in a few words: "10 at once, 5 per 1 s" (an em dash: none)."""
    if limits is None or limits.empty:
        return "—"
    parts = []
    if limits.concurrency is not None:
        parts.append(f"{limits.concurrency} at once")
    if limits.rate is not None:
        count, per = limits.rate
        parts.append(f"{count} per {per:g} s")
    return ", ".join(parts)
