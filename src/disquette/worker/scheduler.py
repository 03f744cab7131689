"""The scheduler: fires the slots of periodic jobs as they come due (a worker role, and
``disquette scheduler``). Any number may run: each slot's job has an id derived from it,
which the store adds once (see :mod:`disquette.periodic`).

A scheduler registers its schedules' definitions in the store at its start (so that the CLI
and dashboards can list, pause and fire them without the app's code) and reads which are
paused once per look at the clock: a paused schedule's slots are skipped, not caught up
when it is resumed."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

from .._concurrency import AsyncSignal
from ..client_async import AsyncClient
from ..errors import NotSupported, Refused, StoreUnavailable
from ..periodic import Periodic

logger: Final = logging.getLogger("disquette.scheduler")

#: The longest a scheduler sleeps between looks at the clock (a ManualClock moves, a
#: system clock jumps).
CHECK_INTERVAL: Final = 1.0


class Scheduler:
    """Fires the due slots of ``periodics`` into ``client``'s store, by the store's clock
    (made inside the event loop it runs in).

    Raises :class:`~disquette.errors.NotSupported` on a store that does not keep the ids
    it is given (``disque://``): a slot's job could be added twice.
    """

    def __init__(
        self,
        client: AsyncClient,
        periodics: Sequence[Periodic],
        *,
        check_interval: float = CHECK_INTERVAL,
    ) -> None:
        store = client.store
        if not store.capabilities.keeps_given_ids:
            raise NotSupported(
                store.url.partition(":")[0],
                "run periodic jobs",
                "it assigns job ids itself, so two schedulers would fire a slot twice",
            )
        self.client = client
        self.periodics = list(periodics)
        self.check_interval = check_interval
        self.started = store.clock.now()
        #: The latest slot fired, by schedule name.
        self.fired: dict[str, float] = {}
        #: Whether the definitions are in the store (retried at each look until they are).
        self.registered = not store.capabilities.schedules
        self._stopping = False
        self._wake = AsyncSignal()

    async def fire_due(self) -> int:
        """Add the job of every slot due now (by each schedule's ``catch_up``); return how
        many slots were fired (a slot another scheduler fired counts: the store keeps one)."""
        store = self.client.store
        await self._register()
        now = store.clock.now()
        due = [
            (periodic, slots)
            for periodic in self.periodics
            if (slots := periodic.schedule.due(now, self.started, self.fired.get(periodic.name)))
        ]
        paused = await self._paused() if due else set()  # read only when something is due
        count = 0
        for periodic, slots in due:
            if periodic.name in paused:  # skipped: resuming does not catch these up
                self.fired[periodic.name] = slots[-1]
                continue
            try:
                await store.add([periodic.job(slot, now) for slot in slots], None)
            except Refused as exc:  # a queue paused for input: this slot is skipped
                logger.warning("periodic job %r not fired: %s", periodic.name, exc)
            self.fired[periodic.name] = slots[-1]
            count += len(slots)
        return count

    async def _register(self) -> None:
        """Put the schedules' definitions in the store, once (again at the next look if
        the store was down)."""
        if not self.registered:
            await self.client.store.register_schedules([item.info() for item in self.periodics])
            self.registered = True

    async def _paused(self) -> set[str]:
        """The names of the paused schedules (none on a store without a registry)."""
        store = self.client.store
        if not store.capabilities.schedules:
            return set()
        return {info.name for info in await store.schedules() if info.paused}

    def next_slot(self) -> float:
        """When the next slot of any schedule comes due."""
        now = self.client.store.clock.now()
        return min(periodic.schedule.next_after(now) for periodic in self.periodics)

    async def run(self) -> None:
        """Fire due slots until :meth:`stop`; sleep until the next slot in between
        (at most ``check_interval``). A store that is down is retried at the next look."""
        while not self._stopping:
            try:
                await self.fire_due()
            except StoreUnavailable as exc:
                logger.warning("periodic jobs not fired (retrying): %s", exc)
            pause = self.next_slot() - self.client.store.clock.now()
            await self._wake.wait(min(max(pause, 0.0), self.check_interval))

    def stop(self) -> None:
        """Make :meth:`run` return (from the scheduler's loop)."""
        self._stopping = True
        self._wake.set_in_loop()
