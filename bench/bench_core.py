#!/usr/bin/env python3
"""Core throughput: add N, then drain N (get + ack), one call per job and in batches,
on the memory and SQLite stores, next to the raw sqlite3 ceiling measured in the same run.

    python bench/bench_core.py [--jobs 20000] [--batch 100] [--dir /path/on/real/disk]

The raw ceiling is a bare INSERT / claim (UPDATE ... RETURNING) / DELETE loop on a file
with the same pragmas as the store (WAL, synchronous=NORMAL, 1 KiB pages, 4000-page
autocheckpoint): what sqlite3 itself allows on this disk, every statement committed.
It also prints the ceiling with SQLite's default page size and checkpoint interval.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import disquette


def fresh(directory: Path, name: str) -> Path:
    path = directory / name
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def raw_ceiling(path: Path, n: int, batch: int, tuned: bool) -> float:
    """Jobs/s of a bare insert / claim / delete loop, every statement (or batch) committed."""
    conn = sqlite3.connect(path, isolation_level=None)
    if tuned:
        conn.execute("PRAGMA page_size = 1024")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    if tuned:
        conn.execute("PRAGMA wal_autocheckpoint = 4000")
    conn.execute("CREATE TABLE jobs (seq INTEGER PRIMARY KEY, queue TEXT, body BLOB, state INT)")
    conn.execute("CREATE INDEX jobs_ready ON jobs(queue, seq) WHERE state = 1")
    claim = (
        "UPDATE jobs SET state = 2 WHERE seq IN (SELECT seq FROM jobs WHERE queue = 'q' "
        "AND state = 1 ORDER BY seq LIMIT ?) RETURNING seq"
    )
    start = time.perf_counter()
    if batch == 1:
        for _ in range(n):
            conn.execute("INSERT INTO jobs (queue, body, state) VALUES ('q', x'00', 1)")
        for _ in range(n):
            (seq,) = conn.execute(claim, (1,)).fetchone()
            conn.execute("DELETE FROM jobs WHERE seq = ?", (seq,))
    else:
        rows = [("q", b"\x00", 1)] * batch
        for _ in range(n // batch):
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO jobs (queue, body, state) VALUES (?, ?, ?)", rows)
            conn.execute("COMMIT")
        for _ in range(n // batch):
            seqs = conn.execute(claim, (batch,)).fetchall()
            conn.execute("BEGIN")
            conn.executemany("DELETE FROM jobs WHERE seq = ?", seqs)
            conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


def run_client(url: str, n: int, batch: int) -> tuple[float, float, float]:
    """(add/s, drain/s, end-to-end jobs/s) through the sync client."""
    with disquette.connect(url) as client:
        jobs = client.timeout(0)
        body = b"x" * 16
        start = time.perf_counter()
        if batch == 1:
            for _ in range(n):
                jobs.add(body, "q")
        else:
            for _ in range(n // batch):
                jobs.add_many([body] * batch, "q")
        added = time.perf_counter()
        if batch == 1:
            for _ in range(n):
                jobs.ack(jobs.get("q"))
        else:
            for _ in range(n // batch):
                jobs.ack_many(jobs.get_many("q", count=batch))
        drained = time.perf_counter()
        assert jobs.qlen("q") == 0
    return n / (added - start), n / (drained - added), n / (drained - start)


def run_async_client(url: str, n: int) -> float:
    """End-to-end jobs/s, one call per job, through the asyncio client."""

    async def main() -> float:
        async with disquette.connect_async(url) as client:
            jobs = client.timeout(0)
            start = time.perf_counter()
            for _ in range(n):
                await jobs.add(b"x" * 16, "q")
            for _ in range(n):
                await jobs.ack(await jobs.get("q"))
            return n / (time.perf_counter() - start)

    return asyncio.run(main())


def call_overhead(n: int) -> dict[str, float]:
    """Microseconds per ``qlen`` call on the memory store, by flavor: what the sync client
    adds over the store, and what an event-loop thread hop would cost instead."""
    results: dict[str, float] = {}
    sync = disquette.connect("memory://")
    results["store call (no client)"] = _per_call(lambda: sync.store.qlen("q"), n)
    results["sync client"] = _per_call(lambda: sync.qlen("q"), n)

    async def in_loop() -> float:
        async with disquette.connect_async("memory://") as jobs:
            start = time.perf_counter()
            for _ in range(n):
                await jobs.qlen("q")
            return (time.perf_counter() - start) / n * 1e6

    results["async client, inside the loop"] = asyncio.run(in_loop())
    loop = asyncio.new_event_loop()
    import threading

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    hopped = disquette.connect_async("memory://")

    def hop() -> None:
        asyncio.run_coroutine_threadsafe(hopped.qlen("q"), loop).result()

    results["sync over an event-loop thread (the design we avoid)"] = _per_call(hop, n // 10)
    loop.call_soon_threadsafe(loop.stop)
    return results


def big_queue(directory: Path, queued: int, probes: int) -> tuple[float, float]:
    """With ``queued`` jobs in the queue: (add/s filling it in batches, get+ack/s after)."""
    url = f"sqlite:///{fresh(directory, 'big.db').resolve()}"
    with disquette.connect(url) as client:
        jobs = client.timeout(0)
        start = time.perf_counter()
        for _ in range(queued // 1000):
            jobs.add_many([b"x" * 16] * 1000, "q")
        filled = time.perf_counter()
        for _ in range(probes):
            jobs.ack(jobs.get("q"))
        drained = time.perf_counter()
    return queued / (filled - start), probes / (drained - filled)


WAKE_PROBE = """
import sys, time, disquette
jobs = disquette.connect(sys.argv[1])
print("ready", flush=True)
for _ in range(int(sys.argv[2])):
    job = jobs.get("wake")
    print(time.time() - job.body["sent"], flush=True)
    jobs.ack(job)
"""


def cross_process_wake(directory: Path, samples: int) -> list[float]:
    """Seconds from an add in this process to a blocked get returning in another one."""
    import subprocess
    import sys

    url = f"sqlite:///{fresh(directory, 'wake.db').resolve()}"
    with disquette.connect(url) as jobs:
        jobs.qlen("wake")
        child = subprocess.Popen(
            [sys.executable, "-c", WAKE_PROBE, url, str(samples)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        child.stdout.readline()
        delays = []
        for _ in range(samples):
            time.sleep(0.03)  # let the child block again
            jobs.add({"sent": time.time()}, "wake")
            delays.append(float(child.stdout.readline()))
        child.wait()
    return delays


def _per_call(function: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        function()
    return (time.perf_counter() - start) / n * 1e6


def best_of(repeat: int, function: Callable[[], float]) -> float:
    return max(function() for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--dir", type=Path, default=None, help="where the files go")
    args = parser.parse_args()
    n, batch, repeat = args.jobs, args.batch, args.repeat
    directory = args.dir or Path(tempfile.mkdtemp(prefix="disquette-bench-", dir="."))
    directory.mkdir(parents=True, exist_ok=True)

    print(f"{n} jobs, batches of {batch}, best of {repeat}, files in {directory}\n")
    ceilings = {}
    for label, tuned in (("raw sqlite3, store pragmas", True), ("raw sqlite3, defaults", False)):
        for size in (1, batch):
            ceilings[(label, size)] = best_of(
                repeat, lambda t=tuned, s=size: raw_ceiling(fresh(directory, "raw.db"), n, s, t)
            )
    rows: list[tuple[str, str, float, float, float]] = []
    for size in (1, batch):
        mode = "one call per job" if size == 1 else f"batches of {size}"
        for store in ("memory", "sqlite"):
            runs = []
            for _ in range(repeat):
                url = (
                    "memory://"
                    if store == "memory"
                    else f"sqlite:///{fresh(directory, 'store.db').resolve()}"
                )
                runs.append(run_client(url, n, size))
            add, drain, e2e = max(runs, key=lambda run: run[2])
            rows.append((store, mode, add, drain, e2e))
    async_e2e = best_of(
        repeat,
        lambda: run_async_client(f"sqlite:///{fresh(directory, 'async.db').resolve()}", n),
    )

    print(f"{'':38} {'one by one':>12} {'batched':>12}")
    for label in ("raw sqlite3, store pragmas", "raw sqlite3, defaults"):
        print(f"{label:38} {ceilings[(label, 1)]:>12,.0f} {ceilings[(label, batch)]:>12,.0f}")
    print()
    header = f"{'store':8} {'mode':18} {'add/s':>10} {'drain/s':>10} {'end-to-end':>11}"
    print(header + f" {'vs raw ceiling':>15}")
    for store, mode, add, drain, e2e in rows:
        size = 1 if mode == "one call per job" else batch
        ratio = e2e / ceilings[("raw sqlite3, store pragmas", size)]
        print(f"{store:8} {mode:18} {add:>10,.0f} {drain:>10,.0f} {e2e:>11,.0f} {ratio:>14.2f}x")
    ratio = async_e2e / ceilings[("raw sqlite3, store pragmas", 1)]
    label = "async, one by one"
    print(f"{'sqlite':8} {label:18} {'':>10} {'':>10} {async_e2e:>11,.0f} {ratio:>14.2f}x")

    big, probes = 1_000_000, 2000
    fill_rate, get_rate = big_queue(directory, big, probes)
    print(f"\n{big:,} jobs queued (added at {fill_rate:,.0f}/s in batches of 1000):")
    print(f"  get + ack one by one with the queue that full: {get_rate:,.0f} jobs/s")

    delays = sorted(cross_process_wake(directory, 100))
    p50, p99 = delays[len(delays) // 2], delays[int(len(delays) * 0.99) - 1]
    print("\ncross-process wake-up, add -> blocked get returns (SQLite, poll_interval 50 ms):")
    print(f"  p50 {p50 * 1000:.1f} ms   p99 {p99 * 1000:.1f} ms   max {delays[-1] * 1000:.1f} ms")

    print("\nper-call overhead (microseconds, memory store, qlen):")
    overheads = call_overhead(20_000)
    for label, micros in overheads.items():
        print(f"  {label:55} {micros:8.2f}")
    extra = overheads["sync client"] - overheads["store call (no client)"]
    print(f"  sync client over the bare store call: {extra:.2f} us")


if __name__ == "__main__":
    main()
