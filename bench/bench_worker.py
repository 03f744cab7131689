#!/usr/bin/env python3
"""Worker throughput and add-to-start latency on SQLite, next to Huey's SqliteHuey in the
same run.

    bash bench/setup_peers.sh                # once: Huey into bench/.venv-peers
    .venv/bin/python bench/bench_worker.py [--jobs 20000] [--samples 200] [--repeat 2]

Throughput: add N jobs to a paused queue (not timed), start the worker processes, wait
until they are up, then resume the queue and time until the store says all N are done.
Huey: enqueue N tasks (not timed), start the consumer, time until N tasks completed
(counted by its SIGNAL_COMPLETE hook). No-op handlers on both sides; each side with its
defaults, plus the variants listed in the table.

Latency: one idle worker process; the benchmark adds one job every 20 ms (so the worker
is idle when each arrives) and the handler returns ``now - created_at``: the time from the
add in this process to the handler's start in the worker's. Huey: the same with a task
that returns ``time.time() - enqueued_at``.

The machine has 2 shared cores: numbers are indicative; ratios within one run are what
to read.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PEER_PYTHON = HERE / ".venv-peers" / "bin" / "python"


# -- handlers our worker processes import (``bench_worker:HANDLERS``; keep this light) ------


def noop(job: Any) -> None:
    """Does nothing."""


def stamp(job: Any) -> float:
    """Seconds from the add to now (the handler's start)."""
    return time.time() - float(job.created_at)


def sent(job: Any) -> str:
    """Returns a small result, as most real handlers do (acks then carry a result)."""
    return "sent"


HANDLERS = {"noop": noop, "stamp": stamp, "sent": sent}


def _scheduled_app() -> Any:
    """The same handlers in an App with a periodic job every second (firing into its own
    queue): what the scheduler every worker runs costs (``bench_worker:SCHEDULED``)."""
    from disquette.app import App

    app = App("memory://")  # the worker's --url replaces it
    for name, function in HANDLERS.items():
        app.register(function, name=name, queue="bench")
    app.periodic(1, type="noop", queue="ticks")
    return app


def __getattr__(name: str) -> Any:
    # Made on demand: the peers' venv runs this file too, without disquette installed.
    if name == "SCHEDULED":
        return _scheduled_app()
    raise AttributeError(name)


# -- disquette ---------------------------------------------------------------------------


def fresh(directory: Path, name: str) -> Path:
    path = directory / name
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def start_workers(
    url: str, processes: int, options: list[str], log: Path, target: str = "bench_worker:HANDLERS"
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "disquette", "worker", target]
    command += ["--url", url, "--queues", "bench", "--processes", str(processes), *options]
    with log.open("wb") as stderr:
        worker = subprocess.Popen(command, cwd=HERE, stderr=stderr)
    deadline = time.monotonic() + 60
    while log.read_text(errors="replace").count("worker started") < processes:
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"workers did not start:\n{log.read_text()}")
        time.sleep(0.02)
    return worker


def stop_workers(worker: subprocess.Popen[bytes]) -> None:
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(60)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


def ours_throughput(
    directory: Path,
    n: int,
    processes: int,
    options: list[str],
    query: str = "",
    job_type: str = "noop",
    target: str = "bench_worker:HANDLERS",
) -> float:
    import disquette

    url = f"sqlite:///{fresh(directory, 'ours.db')}{query}"
    with disquette.connect(url) as client:
        client.pause("bench")
        producer = client.type(job_type)
        for first in range(0, n, 1000):
            producer.add_many([b""] * min(1000, n - first), "bench")
        worker = start_workers(url, processes, options, directory / "ours.log", target)
        try:
            start = time.perf_counter()
            client.resume("bench")
            # qlen reads an index; stats() (the exact count) scans, so only for the tail.
            while client.qlen("bench"):
                time.sleep(0.01)
            while client.stats().by_queue()["bench"].done < n:
                time.sleep(0.005)
            elapsed = time.perf_counter() - start
        finally:
            stop_workers(worker)
    return n / elapsed


def ours_latency(directory: Path, samples: int, query: str = "") -> list[float]:
    import disquette

    url = f"sqlite:///{fresh(directory, 'latency.db')}{query}"
    with disquette.connect(url) as client:
        worker = start_workers(url, 1, [], directory / "latency.log")
        try:
            producer = client.type("stamp")
            ids = []
            for _ in range(samples):
                ids.append(producer.add(b"", "bench"))
                time.sleep(0.02)
            return [float(client.wait(job_id, timeout=60)) for job_id in ids]
        finally:
            stop_workers(worker)


# -- Huey (runs in the peers' venv: ``bench_worker.py --peer ...``) -----------------------


def make_huey(path: str, synchronous: str) -> Any:
    """SqliteHuey as configured by default (``synchronous`` "default": FULL), or with
    ``synchronous=NORMAL`` like disquette's SQLite store (same durability)."""
    from huey import SqliteHuey
    from huey.storage import SqliteStorage

    if synchronous == "default":
        return SqliteHuey(filename=path)

    class NormalSync(SqliteStorage):  # type: ignore[misc]
        def _create_connection(self) -> Any:
            conn = super()._create_connection()
            conn.execute("pragma synchronous=NORMAL")
            return conn

    return SqliteHuey(filename=path, storage_class=NormalSync)


def huey_throughput(path: str, n: int, workers: int, worker_type: str, sync: str) -> float:
    import multiprocessing

    from huey.signals import SIGNAL_COMPLETE

    huey = make_huey(path, sync)
    completed = multiprocessing.Value("i", 0)

    @huey.task()
    def nothing() -> None:
        pass

    @huey.signal(SIGNAL_COMPLETE)
    def count(signal: str, task: object) -> None:
        with completed.get_lock():
            completed.value += 1

    for _ in range(n):
        nothing()
    consumer = huey.create_consumer(workers=workers, worker_type=worker_type, periodic=False)
    start = time.perf_counter()
    consumer.start()
    while completed.value < n:
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    consumer.stop(graceful=True)
    return n / elapsed


def huey_latency(path: str, samples: int) -> list[float]:
    from huey import SqliteHuey

    huey = SqliteHuey(filename=path)

    @huey.task()
    def stamp_task(enqueued_at: float) -> float:
        return time.time() - enqueued_at

    consumer = huey.create_consumer(workers=1, periodic=False)
    consumer.start()
    time.sleep(0.3)
    results = []
    for _ in range(samples):
        results.append(stamp_task(time.time()))
        time.sleep(0.02)
    latencies = [float(result.get(blocking=True, timeout=60)) for result in results]
    consumer.stop(graceful=True)
    return latencies


def run_peer(args: list[str]) -> Any:
    if not PEER_PYTHON.exists():
        raise SystemExit(f"{PEER_PYTHON} is missing: run `bash bench/setup_peers.sh` first")
    output = subprocess.run(
        [str(PEER_PYTHON), str(Path(__file__).resolve()), "--peer", *args],
        check=True,
        capture_output=True,
        text=True,
        cwd=HERE,
    )
    return json.loads(output.stdout.strip().splitlines()[-1])


def peer_main(args: list[str]) -> None:
    kind, path = args[0], args[1]
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    if kind == "throughput":
        n, workers, worker_type, sync = int(args[2]), int(args[3]), args[4], args[5]
        print(json.dumps(huey_throughput(path, n, workers, worker_type, sync)))
    else:
        print(json.dumps(huey_latency(path, int(args[2]))))


# -- report ------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--peer":
        peer_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=200, help="latency samples")
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs")
    parser.add_argument("--dir", type=Path, default=None, help="where the files go")
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="disquette-bench-worker-"))
    directory.mkdir(parents=True, exist_ok=True)
    n, repeat = args.jobs, args.repeat
    print(f"{n} no-op jobs, best of {repeat}; {args.samples} latency samples; files in {directory}")
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores\n")

    def best(function: Any) -> float:
        return max(function() for _ in range(repeat))

    huey_db = str(directory / "huey.db")
    rows: list[tuple[str, float]] = []
    for label, workers, kind, sync in (
        ("huey, 1 worker thread (defaults)", 1, "thread", "default"),
        ("huey, 4 worker threads", 4, "thread", "default"),
        ("huey, 2 worker processes", 2, "process", "default"),
        ("huey, 1 worker thread, synchronous=NORMAL", 1, "thread", "normal"),
        ("huey, 2 worker processes, synchronous=NORMAL", 2, "process", "normal"),
    ):
        command = ["throughput", huey_db, str(n), str(workers), kind, sync]
        rows.append((label, best(lambda command=command: run_peer(command))))
    huey_best = max(rate for _, rate in rows)
    huey_default = rows[0][1]
    variants = (
        ("disquette, 1 process (defaults)", 1, [], ""),
        ("disquette, 2 processes (defaults)", 2, [], ""),
        ("disquette, 1 process, --prefetch 200", 1, ["--prefetch", "200"], ""),
        ("disquette, 2 processes, --prefetch 200", 2, ["--prefetch", "200"], ""),
        ("disquette, 1 process, synchronous=full", 1, [], "?synchronous=full"),
    )
    for label, processes, options, query in variants:
        run = functools.partial(ours_throughput, directory, n, processes, options, query)
        rows.append((label, best(run)))
    # A periodic schedule must cost nothing measurable: the same worker, an app with one.
    scheduled = functools.partial(
        ours_throughput, directory, n, 1, [], "", target="bench_worker:SCHEDULED"
    )
    rows.append(("disquette, 1 process, app with a 1 s periodic job", best(scheduled)))
    header = f"{'throughput (add N, then run workers until all done)':52} {'jobs/s':>9}"
    print(f"{header} {'vs best huey':>13} {'vs huey defaults':>17}")
    for label, rate in rows:
        ratios = f"{rate / huey_best:>12.2f}x {rate / huey_default:>16.2f}x"
        print(f"{label:52} {rate:>9,.0f} {ratios}")

    print(
        f"\n{'add-to-start latency, idle worker, another process':52} "
        f"{'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    )
    latencies = {
        "huey (default consumer)": run_peer(["latency", huey_db, str(args.samples)]),
        "disquette (SQLite defaults)": ours_latency(directory, args.samples),
        "disquette (sqlite ...?poll_interval=0.005)": ours_latency(
            directory, args.samples, "?poll_interval=0.005"
        ),
    }
    for label, values in latencies.items():
        cells = [percentile(values, f) * 1000 for f in (0.5, 0.9, 0.99)] + [max(values) * 1000]
        print(f"{label:52} " + " ".join(f"{cell:>8.1f}" for cell in cells))
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
