#!/usr/bin/env python3
"""SQLite hot paths (issue 12): this build against another one (``--old``: its
``src``), alternated in rounds on a shared machine; medians reported, with the load.

    .venv/bin/python bench/bench_sqlite_hot.py --old OLD/src [--new src]
        [--rounds 5] [--jobs 20000]

Each measurement runs in a fresh process with ``PYTHONPATH`` set to the build:

- ``one call per job``: ``add`` N jobs one by one, then ``ack(get())`` N times, through the
  sync client (end-to-end jobs/s; the issue's target is 10k/s and +20% over the old build).
- ``batches of 100``: the same with ``add_many`` / ``get_many`` + ``ack_many`` (5N jobs).
- ``worker, concurrency 1`` and ``worker, concurrency 10``: an in-process asyncio worker
  runs N queued no-op jobs (jobs/s from its start to the last handler); the new build acks
  the jobs it finished with its next claim (``ack_and_claim``). With ``prefetch 0`` (N/2
  jobs) it claims one job each time one finished: ack + claim per job, one commit each in
  the new build instead of two.
- ``bench_worker.py, 1 (2) processes``: ``disquette worker`` processes (the CLI) run N
  queued no-op jobs, as ``bench/bench_worker.py`` measures them (its ``ours_throughput``).
- ``due burst``: 5N jobs scheduled to come due at once; then a claim (and 100 more) while
  another connection writes now and then: how long that writer waits at most for the write
  lock, and how long the first claim takes (milliseconds). Promote used to move the whole
  backlog in one transaction; it now goes in batches of 1,000, one per claim.
- ``idle claim``: claims on an empty queue while another connection commits elsewhere
  (microseconds per claim; a claim that finds nothing takes no write lock).

The first three also report jobs per CPU second of the measuring process (less sensitive
to the machine's load than wall time; it counts the process's own threads only).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

ONE_BY_ONE = """
import json, sys, time, disquette
n, path = int(sys.argv[1]), sys.argv[2]
with disquette.connect(f"sqlite:///{path}") as client:
    jobs = client.timeout(0)
    body = b"x" * 16
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        jobs.add(body, "q")
    added = time.perf_counter()
    for _ in range(n):
        jobs.ack(jobs.get("q"))
    end, cpu_end = time.perf_counter(), time.process_time()
    assert jobs.qlen("q") == 0
print(json.dumps({"add": n / (added - start), "get+ack": n / (end - added),
                  "e2e": n / (end - start), "cpu": n / (cpu_end - cpu)}))
"""

BATCHES = """
import json, sys, time, disquette
n, path = int(sys.argv[1]), sys.argv[2]
with disquette.connect(f"sqlite:///{path}") as client:
    jobs = client.timeout(0)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(n // 100):
        jobs.add_many([b"x" * 16] * 100, "q")
    for _ in range(n // 100):
        jobs.ack_many(jobs.get_many("q", count=100))
    end, cpu_end = time.perf_counter(), time.process_time()
    assert jobs.qlen("q") == 0
print(json.dumps({"e2e": n / (end - start), "cpu": n / (cpu_end - cpu)}))
"""

WORKER = """
import asyncio, json, sys, time, disquette
from disquette.worker import Worker
n, path, concurrency = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
prefetch = int(sys.argv[4]) if len(sys.argv) > 4 else None

async def main():
    client = disquette.connect_async(f"sqlite:///{path}")
    for first in range(0, n, 1000):
        await client.type("noop").add_many([b""] * min(1000, n - first), "q")
    done = 0

    async def noop(job):
        nonlocal done
        done += 1
        if done == n:
            worker.stop()

    worker = Worker(
        client, {"noop": noop}, queues=["q"], concurrency=concurrency, prefetch=prefetch
    )
    start, cpu = time.perf_counter(), time.process_time()
    await worker.run_async()
    elapsed, cpu_used = time.perf_counter() - start, time.process_time() - cpu
    stats = (await client.stats()).by_queue()["q"]
    assert stats.done == n, stats
    await client.close()
    return {"jobs/s": n / elapsed, "cpu": n / cpu_used}

print(json.dumps(asyncio.run(main())))
"""

WORKER_PROCESSES = """
import json, resource, sys
from pathlib import Path
sys.path.insert(0, sys.argv[4])
import bench_worker
n, path, processes = int(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
rate = bench_worker.ours_throughput(path.parent, n, processes, [])
used = resource.getrusage(resource.RUSAGE_CHILDREN)  # the worker processes, start to stop
print(json.dumps({"jobs/s": rate, "cpu": n / (used.ru_utime + used.ru_stime)}))
"""

DUE_BURST = """
import json, sqlite3, sys, threading, time, disquette
n, path = int(sys.argv[1]), sys.argv[2]
with disquette.connect(f"sqlite:///{path}") as client:
    jobs = client.timeout(0)
    delay = 1.0
    for first in range(0, n, 1000):
        jobs.delay(delay).add_many([b""] * min(1000, n - first), "q")
    time.sleep(delay + 0.1)  # every job is due now
    waits, stop = [], threading.Event()

    def writer():  # another connection writing now and then: how long does it wait?
        other = sqlite3.connect(path, timeout=600, isolation_level=None)
        while not stop.is_set():
            start = time.perf_counter()
            other.execute("BEGIN IMMEDIATE")
            other.execute("COMMIT")
            waits.append(time.perf_counter() - start)
            time.sleep(0.001)
        other.close()

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(0.05)
    start = time.perf_counter()
    assert len(jobs.get_many("q", count=10)) == 10
    first = time.perf_counter() - start
    for _ in range(100):
        jobs.get_many("q", count=10)
    stop.set()
    thread.join()
print(json.dumps({"first claim ms": first * 1000, "writer wait ms": max(waits) * 1000}))
"""

IDLE = """
import json, sys, time, disquette
n, path = int(sys.argv[1]), sys.argv[2]
with disquette.connect(f"sqlite:///{path}") as client, \\
        disquette.connect(f"sqlite:///{path}") as other:
    claimer = client.timeout(0)
    start = time.perf_counter()
    for i in range(n):
        if i % 10 == 0:
            other.ack(other.add(b"", "elsewhere"))  # another connection commits
        claimer.get_many("empty", count=10)
    elapsed = time.perf_counter() - start
print(json.dumps({"us/claim": elapsed / n * 1e6}))
"""


def measure(build: Path, code: str, args: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="disquette-hot-") as directory:
        path = str(Path(directory) / "jobs.db")
        env = {**os.environ, "PYTHONPATH": str(build)}
        out = subprocess.run(
            [sys.executable, "-c", code, *args[:1], path, *args[1:]],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--old", type=Path, required=True, help="src of the build to compare with "
        "(e.g. `git archive <rev> src | tar -x -C /tmp/old`, then /tmp/old/src)",
    )  # fmt: skip
    parser.add_argument("--new", type=Path, default=HERE.parent / "src")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--only", default=None, help="run only scenarios containing this")
    args = parser.parse_args()
    n = args.jobs
    scenarios = [
        ("one call per job", ONE_BY_ONE, [str(n)], "e2e"),
        ("batches of 100", BATCHES, [str(n * 5)], "e2e"),
        ("worker, concurrency 1", WORKER, [str(n), "1"], "jobs/s"),
        ("worker, concurrency 1, prefetch 0", WORKER, [str(n // 2), "1", "0"], "jobs/s"),
        ("worker, concurrency 10", WORKER, [str(n), "10"], "jobs/s"),
        ("bench_worker.py, 1 process", WORKER_PROCESSES, [str(n), "1", str(HERE)], "jobs/s"),
        ("bench_worker.py, 2 processes", WORKER_PROCESSES, [str(n), "2", str(HERE)], "jobs/s"),
        ("idle claim (us, lower is better)", IDLE, [str(n // 4)], "us/claim"),
        ("due burst: writer wait (ms, lower)", DUE_BURST, [str(n * 5)], "writer wait ms"),
    ]
    if args.only:
        scenarios = [s for s in scenarios if args.only in s[0]]
    builds = {"old": args.old.resolve(), "new": args.new.resolve()}
    print(f"old = {builds['old']}\nnew = {builds['new']}")
    print(f"{n} jobs, {args.rounds} rounds (old and new alternate within each round)")
    loads = [os.getloadavg()[0]]
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    for round_ in range(args.rounds):
        for label, code, extra, _ in scenarios:
            order = ("old", "new") if round_ % 2 == 0 else ("new", "old")
            for build in order:
                results.setdefault((label, build), []).append(measure(builds[build], code, extra))
        loads.append(os.getloadavg()[0])
        print(f"  round {round_ + 1} done, load {loads[-1]:.2f}", flush=True)
    print(f"\n{'scenario':36} {'old':>10} {'new':>10} {'new/old':>8}   (medians; all rounds)")
    for label, _, _, key in scenarios:
        old = [run[key] for run in results[(label, "old")]]
        new = [run[key] for run in results[(label, "new")]]
        ratio = statistics.median(new) / statistics.median(old)
        print(
            f"{label:36} {statistics.median(old):>10,.1f} {statistics.median(new):>10,.1f} "
            f"{ratio:>7.2f}x   old {[round(v) for v in old]} new {[round(v) for v in new]}"
        )
        for part in results[(label, "old")][0]:
            if part == key:
                continue
            o = statistics.median(run[part] for run in results[(label, "old")])
            w = statistics.median(run[part] for run in results[(label, "new")])
            name = "jobs per CPU second" if part == "cpu" else part
            print(f"  {name:34} {o:>10,.1f} {w:>10,.1f} {w / o:>7.2f}x")
    print(
        f"\nload average (1 min) per round: {', '.join(f'{x:.2f}' for x in loads)} "
        f"on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
