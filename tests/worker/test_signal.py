"""The wake-up flag the worker's engine and the client's waits share (``_concurrency``)."""

from __future__ import annotations

import asyncio
import threading
import time

from disquette._concurrency import AsyncSignal, Signal


def test_a_set_in_the_loop_wakes_the_waiter_on_the_next_iteration() -> None:
    """The engine's own wake-ups (a job finished: flush, fetch) must not slip a loop
    iteration, as a set through ``call_soon_threadsafe`` does."""

    async def main() -> tuple[bool, bool]:
        woken = []
        for how in ("set_in_loop", "set"):
            signal = AsyncSignal()
            waiter = asyncio.create_task(signal.wait(None))
            await asyncio.sleep(0)  # the waiter now waits
            getattr(signal, how)()
            await asyncio.sleep(0)  # one iteration
            woken.append(waiter.done())
            await waiter
        return woken[0], woken[1]

    in_loop, threadsafe = asyncio.run(main())
    assert in_loop
    assert not threadsafe  # why the loop's own thread uses set_in_loop


def test_a_set_flag_is_taken_without_yielding_and_cleared() -> None:
    async def main() -> tuple[bool, float]:
        signal = AsyncSignal()
        other_ran: list[bool] = []
        asyncio.get_running_loop().call_soon(other_ran.append, True)
        signal.set_in_loop()
        await signal.wait(None)  # already set: no trip through the loop
        ran_meanwhile = bool(other_ran)
        started = time.monotonic()
        await signal.wait(0.05)  # cleared by the first wait: this one times out
        return ran_meanwhile, time.monotonic() - started

    ran_meanwhile, waited = asyncio.run(main())
    assert not ran_meanwhile
    assert waited >= 0.04


def test_a_set_from_another_thread_wakes_the_waiter() -> None:
    async def main() -> None:
        signal = AsyncSignal()
        threading.Timer(0.01, signal.set).start()
        await asyncio.wait_for(signal.wait(None), 10)  # a hang guard, not a timing check

    asyncio.run(main())


def test_a_set_after_the_loop_closed_does_nothing() -> None:
    async def make() -> AsyncSignal:
        return AsyncSignal()

    signal = asyncio.run(make())
    signal.set()  # a store's wake-up thread may fire after the worker stopped


def test_the_sync_signal_is_set_either_way_and_cleared_by_wait() -> None:
    signal = Signal()
    signal.set_in_loop()
    signal.wait(None)
    threading.Timer(0.01, signal.set).start()
    signal.wait(10)
    started = time.monotonic()
    signal.wait(0.05)  # cleared: times out
    assert time.monotonic() - started >= 0.04
