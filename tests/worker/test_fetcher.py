"""The fetcher's buffer sizing: it follows the pace jobs finish at."""

from __future__ import annotations

from disquette import Job, connect_async
from disquette.worker import Worker
from disquette.worker.engine import Engine
from disquette.worker.fetcher import DEFAULT_MAX_PREFETCH, RAMP_JOBS


def noop(job: Job) -> None:
    """Does nothing."""


async def test_a_burst_of_fast_jobs_grows_the_buffer_before_the_first_tick() -> None:
    client = connect_async("memory://")
    try:
        engine = Engine(Worker(client, {"t": noop}, queues=["q"], concurrency=1), client)
        state, fetcher = engine.state, engine.fetcher
        assert state.buffer_target == 1  # an empty buffer claims concurrency + 1 at a time
        fetcher.adapt(early=True)
        assert state.buffer_target == 1  # nothing finished yet
        state.finished = RAMP_JOBS - 1
        fetcher.adapt(early=True)
        assert state.buffer_target == 1  # too few to sample
        state.finished = RAMP_JOBS  # finished within microseconds: a fast pace
        fetcher.adapt(early=True)
        assert state.buffer_target == DEFAULT_MAX_PREFETCH
        fetcher.adapt()  # the watchdog's tick is not due yet: no change
        assert state.buffer_target == DEFAULT_MAX_PREFETCH
    finally:
        await client.close()


async def test_an_early_sample_never_shrinks_the_buffer_nor_sets_a_fixed_prefetch() -> None:
    client = connect_async("memory://")
    try:
        engine = Engine(Worker(client, {"t": noop}, queues=["q"], concurrency=4), client)
        state, fetcher = engine.state, engine.fetcher
        state.buffer_target = 50
        fetcher.pace = 0.0
        fetcher._paced_at = (fetcher._paced_at[0] - 0.04, 0)  # 40 ms ago, under a TICK
        state.finished = RAMP_JOBS  # 400 jobs a second: a 20-job buffer
        fetcher.adapt(early=True)
        assert state.buffer_target == 50
        fixed = Engine(Worker(client, {"t": noop}, queues=["q"], prefetch=3), client)
        fixed.state.finished = RAMP_JOBS
        fixed.fetcher.adapt(early=True)
        assert fixed.state.buffer_target == 3
    finally:
        await client.close()
