"""The demo behind ``disquette demo``: a producer and a worker pool on one store.

:func:`run_demo` runs it and measures it (:class:`DemoResult`); :func:`show_demo` runs it
under a progress bar and prints the results table, checked against the store's counts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .client import connect
from .client_async import connect_async
from .job import Job, Options, StatsRow
from .worker import WorkerPool


@dataclasses.dataclass
class DemoResult:
    """What ``disquette demo`` measured."""

    jobs: int
    done: int
    failed: int
    retries: int
    #: Seconds from the first add of the burst to the last of its jobs finished.
    burst_seconds: float
    #: Add-to-start latencies of the paced jobs, in seconds.
    latencies: list[float]

    @property
    def burst_rate(self) -> float:
        """Burst jobs finished per second."""
        return self.burst_jobs / self.burst_seconds if self.burst_seconds > 0 else 0.0

    burst_jobs: int = 0

    def percentile(self, fraction: float) -> float:
        """A latency percentile of the paced jobs, in seconds."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class _Tally:
    """The demo's handler and what it counts: outcomes, latencies, and when each phase ends."""

    def __init__(
        self, burst: int, paced: int, fail_rate: float, now: Callable[[], float],
        on_progress: Callable[[int], None],
    ) -> None:  # fmt: skip
        self.burst, self.paced, self.fail_rate = burst, paced, fail_rate
        self.now, self.on_progress = now, on_progress
        self.latencies: list[float] = []
        self.counts = {"done": 0, "failed": 0, "retries": 0, "burst": 0}
        self.burst_finished = asyncio.Event()
        self.all_finished = asyncio.Event()

    async def flaky(self, job: Job) -> None:
        """The demo's job: some I/O, and a failure now and then (retried up to 3 times)."""
        paced_job = job.body["paced"]
        if paced_job and job.attempts == 1:
            self.latencies.append(self.now() - job.created_at)
        await asyncio.sleep(random.uniform(0.0, 0.002))  # some I/O
        if random.random() < self.fail_rate:
            if job.error_count + 1 >= job.max_attempts:
                self.counts["failed"] += 1
                self._finished(paced_job)
            else:
                self.counts["retries"] += 1
            raise RuntimeError("simulated failure")
        self.counts["done"] += 1
        self._finished(paced_job)
        return None  # no result: acks go to the store in batches

    def _finished(self, paced_job: bool) -> None:
        if not paced_job:
            self.counts["burst"] += 1
            if self.counts["burst"] >= self.burst:
                self.burst_finished.set()
        completed = self.counts["done"] + self.counts["failed"]
        self.on_progress(completed)
        if completed >= self.burst + self.paced:
            self.all_finished.set()


async def run_demo(
    url: str,
    burst: int,
    paced: int,
    rate: float,
    workers: int,
    concurrency: int,
    fail_rate: float,
    on_progress: Callable[[int], None] = lambda completed: None,
) -> DemoResult:
    """Run a worker pool while a producer adds ``burst`` jobs at once (throughput), then
    ``paced`` jobs at ``rate`` per second (add-to-start latency)."""
    client = connect_async(url, backoff_base=0.05, backoff_cap=1.0)
    tally = _Tally(burst, paced, fail_rate, client.store.clock.now, on_progress)
    pool = WorkerPool(
        client, {"demo.flaky": tally.flaky}, size=workers, queues=["demo"], concurrency=concurrency
    )
    producer = client.with_options(Options(type="demo.flaky", max_attempts=3))
    try:
        await pool.start_async()
        started = time.perf_counter()
        for first in range(0, burst, 100):
            bodies = [{"n": n, "paced": False} for n in range(first, min(burst, first + 100))]
            await producer.add_many(bodies, "demo")
        if burst:
            await tally.burst_finished.wait()
        burst_seconds = time.perf_counter() - started
        paced_start = time.perf_counter()
        for n in range(paced):
            # Sleep until this job's slot in the schedule, so adds do not bunch up.
            await asyncio.sleep(max(0.0, paced_start + n / rate - time.perf_counter()))
            await producer.add({"n": burst + n, "paced": True}, "demo")
        await tally.all_finished.wait()
        await pool.stop_async()
    finally:
        if pool.running:
            await pool.stop_async(force=True)
        await client.close()
    counts = tally.counts
    return DemoResult(
        burst + paced,
        counts["done"],
        counts["failed"],
        counts["retries"],
        burst_seconds,
        tally.latencies,
        burst_jobs=burst,
    )


def show_demo(
    console: Console,
    url: str,
    jobs: int,
    paced: int,
    rate: float,
    workers: int,
    concurrency: int,
    fail_rate: float,
) -> bool:
    """Run :func:`run_demo` on ``url`` under a progress bar, then print the results table;
    true when the store's done and failed counts agree with what the workers did."""
    console.print(
        f"[bold]disquette demo[/]: {jobs} jobs at once, then {paced} at {rate:g}/s; "
        f"{workers} workers x {concurrency}; store {url}"
    )
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        task = progress.add_task("jobs finished", total=jobs + paced)
        result = asyncio.run(
            run_demo(
                url,
                jobs,
                paced,
                rate,
                workers,
                concurrency,
                fail_rate,
                lambda completed: progress.update(task, completed=completed),
            )
        )
    with connect(url) as client:
        row = client.stats().by_queue().get("demo")
    console.print(results_table(result, rate, row))
    return row is not None and (row.done, row.failed) == (result.done, result.failed)


def results_table(result: DemoResult, rate: float, row: StatsRow | None) -> Table:
    """The demo's results: jobs finished, retries, throughput of the burst, add-to-start
    latency percentiles of the paced jobs (at ``rate``), and the store's own ``row``."""
    table = Table(title="results", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("jobs finished", f"{result.done + result.failed} / {result.jobs}")
    table.add_row("done / failed for good", f"{result.done} / {result.failed}")
    table.add_row("retries (simulated failures)", str(result.retries))
    if result.burst_jobs:
        table.add_row(
            f"throughput ({result.burst_jobs} at once)",
            f"{result.burst_rate:,.0f} jobs/s in {result.burst_seconds:.2f}s",
        )
    if result.latencies:
        for label, fraction in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
            value = f"{result.percentile(fraction) * 1000:.1f} ms"
            table.add_row(f"add-to-start latency {label} ({rate:g}/s)", value)
    if row is not None:
        table.add_row("the store says done / failed", f"{row.done} / {row.failed}")
    return table
