"""What the roles of one engine run share: the jobs in hand, the wake-up signals, and
whether the run is stopping."""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING, Final

from .._concurrency import AsyncSignal
from ..client_async import AsyncClient
from .handlers import InFlight

if TYPE_CHECKING:
    from .registry import Registry
    from .worker import Worker

#: How often the watchdog looks at leases and exec deadlines while jobs are held (and the
#: shortest span the fetcher measures the pace over), and while none are.
TICK: Final = 0.05
IDLE_TICK: Final = 0.5


class EngineState:
    """The state an engine's roles share, each role keeping the rest of its own.

    Every signal is set from the loop's thread with ``set_in_loop`` (a wake-up that does
    not slip an iteration), except the store's wake-ups of the fetcher (``set``).
    """

    __slots__ = (
        "buffer",
        "buffer_target",
        "cancel_flag",
        "changed",
        "client",
        "concurrency",
        "drained",
        "fetch_flag",
        "finished",
        "flush_flag",
        "force",
        "loop",
        "registry",
        "running",
        "stopping",
        "watch_flag",
        "watch_idle",
        "worker",
    )

    def __init__(self, worker: Worker, client: AsyncClient) -> None:
        self.loop = asyncio.get_running_loop()
        self.worker = worker
        self.client = client
        self.registry: Registry = worker.registry
        self.concurrency = worker.concurrency
        #: Claimed jobs waiting for room to run, and the jobs running.
        self.buffer: collections.deque[InFlight] = collections.deque()
        self.running: set[InFlight] = set()
        #: How many jobs the fetcher keeps buffered (it adapts it to the pace).
        self.buffer_target = 0
        #: Jobs finished in this run (the fetcher's pace follows it).
        self.finished = 0
        #: Wakes the fetcher: room to claim into, or jobs were added.
        self.fetch_flag = AsyncSignal()
        #: The last claim came back short: the queues had no more for now. A finished job
        #: then does not wake the fetcher (a claim per job would find nothing); the sent
        #: outcomes do (they may free a queue's concurrency slot), as do adds and the poll.
        self.drained = False
        #: Set (from any thread) when the store announces a cancel request somewhere: the
        #: heartbeat then asks the store about every held job.
        self.cancel_flag = AsyncSignal()
        #: Wakes the ack batcher: outcomes to send.
        self.flush_flag = AsyncSignal()
        #: A running job finished, or the stop became forced.
        self.changed = AsyncSignal()
        #: Wakes the watchdog from its idle tick: jobs arrived.
        self.watch_flag = AsyncSignal()
        #: Whether the watchdog sleeps its idle tick (nothing held).
        self.watch_idle = False
        #: Stop claiming; and (``force``) give running jobs back now.
        self.stopping = False
        self.force = False

    def claim_room(self) -> int:
        """How many jobs the fetcher claims now: 0 while the buffer is more than half full
        (claims come in batches) or nothing has room."""
        target = self.buffer_target
        buffered = len(self.buffer)
        room = self.concurrency + target - buffered - len(self.running)
        return 0 if room <= 0 or buffered > target // 2 else room
