#!/usr/bin/env python3
"""Scale: a large backlog over many queues, many consumers, and a burst of scheduled jobs
coming due at one instant, on one store.

    python bench/bench_scale.py --store sqlite|postgres|redis|memory
        [--jobs 1000000] [--queues 1000] [--consumers 100] [--processes 4]
        [--due 1000000] [--steady 10] [--window 20] [--chunk 1000] [--dir DIR]

Phases, on a fresh store (a private SQLite file, a fresh PostgreSQL database on
``--postgres-url``'s server, a private ``redis-server``, or the memory store in-process):

1. **fill**: ``--jobs`` ready jobs, round-robin over ``--queues`` queues, ``add_many`` in
   chunks. Reports the add rate, the store's size and bytes per queued job.
2. **steady**: ``--consumers`` consumers (asyncio tasks spread over ``--processes``
   processes; the memory store keeps them in this process) each claim one job at a time
   from 10 random queues of their own and ack it. Claim latency is one claim call (``get``
   with timeout 0); an empty answer is counted and followed by a 10 ms pause. By default
   the consumers never pause otherwise (a closed loop: with the 100 consumers' event loops
   on a few cores, a claim's latency is mostly its wait for the CPU, the consumers divided
   by the claims per second); ``--pause S`` makes each sleep ``S`` seconds after each ack
   (a paced load below the store's capacity, which shows a claim's own latency).
3. **burst**: ``--due`` jobs, added before the consumers start with delays that make all
   of them due at one instant after the steady window; claim latency is reported for
   ``--window`` seconds from that instant, with how many are left afterwards.

The longest store stall in each window is what a probe beside the consumers saw: SQLite,
the longest wait for the write lock (``BEGIN IMMEDIATE`` every 10 ms from its own
connection); PostgreSQL, the longest lock wait in ``pg_stat_activity`` (sampled every
20 ms) and the longest ``SELECT 1`` round trip; Redis, the longest command in ``SLOWLOG``
and the longest ``PING`` round trip; the memory store, the longest ``stats`` call.
Figures are absolute: this benchmark compares the store with the issue's targets (a claim
p99 under 50 ms during the burst, no Redis command over 50 ms), not with a peer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import disquette

QUEUES_PER_CONSUMER = 10
EMPTY_PAUSE = 0.01
Sample = tuple[float, float]  # (wall time the call ended, seconds it took)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def queue_name(index: int) -> str:
    return f"q{index:04d}"


# -- consumers -------------------------------------------------------------------------------


async def consume(
    client: disquette.AsyncClient,
    queues: list[str],
    stop: Callable[[], bool],
    claims: list[Sample],
    empties: list[float],
    pause: float = 0.0,
) -> None:
    """Claim one job at a time from ``queues`` and ack it until ``stop()``; sleep ``pause``
    seconds after each ack."""
    jobs = client.timeout(0)
    while not stop():
        start = time.perf_counter()
        found = await jobs.get_many(*queues, count=1)
        took = time.perf_counter() - start
        if not found:
            empties.append(time.time())
            await asyncio.sleep(EMPTY_PAUSE)
            continue
        claims.append((time.time(), took))
        await jobs.ack(found[0])
        # The memory store's calls never suspend: without this, one consumer would hold the
        # event loop until its queues are empty.
        await asyncio.sleep(pause)


async def run_consumers(
    url: str, count: int, queues: int, seed: int, stop: Callable[[], bool], pause: float
) -> tuple[list[Sample], list[float]]:
    claims: list[Sample] = []
    empties: list[float] = []
    rng = random.Random(seed)
    client = disquette.connect_async(url)
    try:
        tasks = [
            consume(
                client,
                [queue_name(i) for i in rng.sample(range(queues), QUEUES_PER_CONSUMER)],
                stop,
                claims,
                empties,
                pause,
            )
            for _ in range(count)
        ]
        await asyncio.gather(*tasks)
    finally:
        await client.close()
    return claims, empties


def consumer_process(
    url: str, count: int, queues: int, seed: int, stop: Event, results: Any, pause: float
) -> None:
    claims, empties = asyncio.run(run_consumers(url, count, queues, seed, stop.is_set, pause))
    results.put((claims, empties))


@dataclass
class Consumers:
    """Consumers in child processes, or tasks of this event loop for the memory store."""

    url: str
    count: int
    processes: int
    queues: int
    pause: float = 0.0
    claims: list[Sample] = field(default_factory=list)
    empties: list[float] = field(default_factory=list)
    _stop: Any = None
    _children: list[Any] = field(default_factory=list)
    _results: Any = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, client: disquette.AsyncClient | None) -> None:
        """Start the consumers: as tasks on ``client`` if given, else in child processes."""
        if client is not None:  # the memory store lives in this process only
            self._stop = threading.Event()
            rng = random.Random(0)
            self._tasks = [
                asyncio.ensure_future(
                    consume(
                        client,
                        [queue_name(i) for i in rng.sample(range(self.queues), 10)],
                        self._stop.is_set,
                        self.claims,
                        self.empties,
                        self.pause,
                    )
                )
                for _ in range(self.count)
            ]
            return
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._results = context.Queue()
        shares = [self.count // self.processes] * self.processes
        for index in range(self.count % self.processes):
            shares[index] += 1
        for seed, share in enumerate(shares):
            child = context.Process(
                target=consumer_process,
                args=(self.url, share, self.queues, seed, self._stop, self._results, self.pause),
            )
            child.start()
            self._children.append(child)

    async def stop(self) -> None:
        """Stop the consumers and gather their samples."""
        self._stop.set()
        if self._tasks:
            await asyncio.gather(*self._tasks)
            return
        for _ in self._children:
            claims, empties = await asyncio.to_thread(self._results.get)
            self.claims.extend(claims)
            self.empties.extend(empties)
        for child in self._children:
            child.join()


# -- stores: open, size, stall probe ---------------------------------------------------------


@dataclass
class Target:
    """One store under test: its URL, how to measure its size and its stalls."""

    url: str
    size: Callable[[], int]
    probe: Callable[[], float]  # one probe: seconds the store made us wait
    close: Callable[[], None]
    slowest_command: Callable[[], float] = lambda: 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def sqlite_target(directory: Path) -> Target:
    path = directory / "scale.db"
    probe_connection: list[sqlite3.Connection] = []

    def probe() -> float:
        if not probe_connection:
            if not path.exists():
                return 0.0
            probe_connection.append(
                sqlite3.connect(path, timeout=600, isolation_level=None, check_same_thread=False)
            )
        conn = probe_connection[0]

        def write_lock() -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("COMMIT")

        return timed(write_lock)

    def size() -> int:
        return sum(
            Path(f"{path}{suffix}").stat().st_size
            for suffix in ("", "-wal")
            if Path(f"{path}{suffix}").exists()
        )

    def close() -> None:
        for conn in probe_connection:
            conn.close()

    return Target(f"sqlite:///{path}", size, probe, close)


def postgres_target(admin_url: str) -> Target:
    import psycopg

    name = "disquette_bench_scale"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    head, _, tail = admin_url.partition("://")
    url = f"{head}://{tail.partition('/')[0]}/{name}"
    monitor = psycopg.connect(url, autocommit=True)

    def probe() -> float:
        row = monitor.execute(
            "SELECT coalesce(extract(epoch FROM max(now() - state_change)), 0)::float8 "
            "FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
            (name,),
        ).fetchone()
        lock_wait = float(row[0]) if row else 0.0
        return max(lock_wait, timed(lambda: monitor.execute("SELECT 1").fetchone()))

    def size() -> int:
        row = monitor.execute("SELECT pg_database_size(%s)", (name,)).fetchone()
        return int(row[0]) if row else 0

    def close() -> None:
        monitor.close()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return Target(url, size, probe, close)


def redis_target(directory: Path) -> Target:
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not on PATH")
    port = free_port()
    process = subprocess.Popen(
        [
            binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(directory), "--logfile", "",
            "--slowlog-log-slower-than", "1000", "--slowlog-max-len", "100000",
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    monitor = redis.Redis.from_url(url)
    for _ in range(500):
        with contextlib.suppress(redis.ConnectionError):
            if monitor.ping():
                break
        time.sleep(0.01)
    base = int(monitor.info("memory")["used_memory"])

    def size() -> int:
        return int(monitor.info("memory")["used_memory"]) - base

    def slowest_command() -> float:
        # A long log: the burst's first (longest) calls must not scroll out of it.
        entries = monitor.slowlog_get(100_000)
        monitor.slowlog_reset()
        return max((entry["duration"] for entry in entries), default=0) / 1e6

    def close() -> None:
        monitor.close()
        process.terminate()
        process.wait()

    return Target(url, size, lambda: timed(monitor.ping), close, slowest_command)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_target() -> Target:
    base = rss_bytes()
    return Target("memory://", lambda: rss_bytes() - base, lambda: 0.0, lambda: None)


class Prober:
    """Runs a store probe every ``interval`` seconds in a thread; keeps (time, wait)."""

    def __init__(self, probe: Callable[[], float], interval: float) -> None:
        self.samples: list[Sample] = []
        self._probe = probe
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with contextlib.suppress(Exception):
                self.samples.append((time.time(), self._probe()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def longest(self, start: float, end: float) -> float:
        return max((wait for at, wait in self.samples if start <= at <= end), default=0.0)


# -- phases ----------------------------------------------------------------------------------


def batches(total: int, queues: int, chunk: int) -> Iterator[tuple[str, int]]:
    """(queue, jobs) pairs spreading ``total`` jobs evenly over ``queues`` queues."""
    per_queue, extra = divmod(total, queues)
    for index in range(queues):
        left = per_queue + (1 if index < extra else 0)
        while left > 0:
            yield queue_name(index), min(chunk, left)
            left -= chunk


async def fill(client: disquette.AsyncClient, args: argparse.Namespace) -> float:
    """Add ``args.jobs`` ready jobs spread over the queues; return the add rate."""
    body = {"n": 0, "pad": "x" * 32}
    start = time.perf_counter()
    for queue, size in batches(args.jobs, args.queues, args.chunk):
        await client.add_many([body] * size, queue)
    return args.jobs / (time.perf_counter() - start)


async def add_due(
    client: disquette.AsyncClient, args: argparse.Namespace, due_at: float
) -> tuple[float, float]:
    """Add the burst, each chunk delayed to ``due_at``; return (add rate, seconds to spare)."""
    body = {"n": 1, "pad": "x" * 32}
    start = time.perf_counter()
    spare = 0.0
    for queue, size in batches(args.due, args.queues, args.chunk):
        spare = due_at - time.time()
        if spare <= 0.05:
            raise SystemExit("the burst could not be added before its due time: raise --lead")
        await client.delay(spare).add_many([body] * size, queue)
    return args.due / (time.perf_counter() - start), spare


def report_window(
    name: str, consumers: Consumers, prober: Prober, start: float, end: float
) -> None:
    latencies = [took for at, took in consumers.claims if start <= at <= end]
    empties = sum(1 for at in consumers.empties if start <= at <= end)
    seconds = max(end - start, 1e-9)
    print(
        f"  {name}: {len(latencies) / seconds:,.0f} claims/s, {empties:,} empty answers; "
        f"claim ms p50 {percentile(latencies, 0.5) * 1e3:.2f}  "
        f"p90 {percentile(latencies, 0.9) * 1e3:.2f}  "
        f"p99 {percentile(latencies, 0.99) * 1e3:.2f}  "
        f"max {max(latencies, default=0) * 1e3:.1f}; "
        f"longest stall {prober.longest(start, end) * 1e3:.1f} ms"
    )


async def scenario(target: Target, args: argparse.Namespace) -> None:
    client = disquette.connect_async(target.url)
    try:
        rate = await fill(client, args)
        size = target.size()
        print(
            f"  fill: {args.jobs:,} jobs over {args.queues:,} queues at {rate:,.0f} adds/s; "
            f"store {size / 2**20:,.1f} MiB, {size / max(args.jobs, 1):,.0f} B/job"
        )
        # The burst is added before the consumers start (at about the fill's pace), due
        # after the steady window: scheduled jobs sit in the store while it is measured.
        adding = args.lead or args.due / rate * 3.0 + 2.0
        due_at = time.time() + adding + args.warmup + args.steady + 2.0
        burst_rate, spare = await add_due(client, args, due_at)
        print(f"  burst: {args.due:,} added at {burst_rate:,.0f} adds/s, due in {spare:.1f} s")
        await measure(client, target, args, due_at)
    finally:
        await client.close()


async def measure(
    client: disquette.AsyncClient, target: Target, args: argparse.Namespace, due_at: float
) -> None:
    """Run the consumers through the steady window, then the burst's; report both."""
    consumers = Consumers(target.url, args.consumers, args.processes, args.queues, args.pause)
    prober = Prober(target.probe, 0.01 if args.store != "postgres" else 0.02)
    consumers.start(client if args.store == "memory" else None)
    try:
        await asyncio.sleep(args.warmup)
        target.slowest_command()
        steady_start = time.time()
        await asyncio.sleep(max(0.1, min(args.steady, due_at - time.time() - 0.5)))
        steady_end = time.time()
        slowest_steady = target.slowest_command()
        await asyncio.sleep(max(0.0, due_at - time.time()) + args.window)
    finally:
        await consumers.stop()
        prober.stop()
    slowest_burst = target.slowest_command()
    report_window("steady", consumers, prober, steady_start, steady_end)
    report_window("burst ", consumers, prober, due_at, due_at + args.window)
    if args.store == "redis":
        print(
            f"  slowest Redis command: steady {slowest_steady * 1e3:.1f} ms, "
            f"burst {slowest_burst * 1e3:.1f} ms"
        )
    rows = (await client.stats()).rows
    queued = sum(row.queued for row in rows)
    scheduled = sum(row.scheduled for row in rows)
    print(f"  after: {queued:,} queued, {scheduled:,} still scheduled")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", choices=("sqlite", "postgres", "redis", "memory"))
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--queues", type=int, default=1000)
    parser.add_argument("--consumers", type=int, default=100)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--due", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=1000, help="jobs per add_many")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--steady", type=float, default=10.0, help="seconds measured steady")
    parser.add_argument(
        "--lead", type=float, default=0.0, help="seconds from the burst's start to its due "
        "time (default: estimated from the fill rate)",
    )  # fmt: skip
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured after due")
    parser.add_argument(
        "--pause", type=float, default=0.0, help="seconds each consumer sleeps after an ack "
        "(default 0: a closed loop, as many claims as the machine runs)",
    )  # fmt: skip
    parser.add_argument("--dir", type=Path, help="directory for the SQLite file / Redis")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    if args.store is None:
        parser.error("--store is required")
    if args.queues < QUEUES_PER_CONSUMER:
        parser.error(f"--queues must be at least {QUEUES_PER_CONSUMER}")
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        directory = Path(scratch)
        makers: dict[str, Callable[[], Target]] = {
            "sqlite": lambda: sqlite_target(directory),
            "postgres": lambda: postgres_target(args.postgres_url),
            "redis": lambda: redis_target(directory),
            "memory": memory_target,
        }
        target = makers[args.store]()
        print(
            f"{args.store}: {args.jobs:,} queued, {args.due:,} due at once, "
            f"{args.consumers} consumers in {args.processes if args.store != 'memory' else 1} "
            f"process(es), pause {args.pause:g} s; load {os.getloadavg()[0]:.2f}"
        )
        try:
            asyncio.run(scenario(target, args))
        finally:
            target.close()


if __name__ == "__main__":
    main()
