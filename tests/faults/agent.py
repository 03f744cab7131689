"""What runs on a test host: a worker, a producer, or a one-shot look at the store.

Run as ``python -m tests.faults.agent ROLE ...`` inside a host's namespace (see
``hosts.Host.popen``). Every role writes what it saw to files the test reads back (the
file system is shared by every namespace):

- ``worker``: one line ``<job id> <attempt> <host>`` per handler run in ``--runs``, and
  its counters (``processed``, ``leases_lost``) as JSON in ``--stats`` every 0.2 s;
- ``produce``: one line per job whose ``add`` returned in ``--acked`` (its id and the
  time), one per
  ``add`` that raised in ``--refused`` (the error class), until ``--count`` jobs were
  acknowledged or ``--stop-file`` exists;
- ``look``: prints one JSON object: the store's stats and the state of given job ids.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import disquette
from disquette.errors import DisquetteError
from disquette.worker import CATCH_ALL, Worker


def _worker(args: argparse.Namespace) -> None:
    runs = open(args.runs, "a", buffering=1)  # noqa: SIM115  (closed at exit)
    lock = threading.Lock()

    def handle(job: disquette.Job) -> str:
        with lock:
            runs.write(f"{job.id} {job.attempts} {args.host}\n")
        if args.wait_file:
            # Held mid-job until the test says so: a partition can then start and end
            # around it, whatever the machine's pace.
            while not Path(args.wait_file).exists():
                time.sleep(0.05)
        return str(args.host)

    worker = Worker(
        args.url, {CATCH_ALL: handle}, queues=[args.queue], concurrency=args.concurrency
    )
    stop = threading.Event()

    def report() -> None:
        while not stop.wait(0.2):
            stats = {"processed": worker.processed, "leases_lost": worker.leases_lost}
            tmp = Path(args.stats + ".tmp")
            tmp.write_text(json.dumps(stats))
            tmp.replace(args.stats)

    threading.Thread(target=report, daemon=True).start()
    try:
        worker.run()
    finally:
        stop.set()


def _produce(args: argparse.Namespace) -> None:
    acked = open(args.acked, "a", buffering=1)  # noqa: SIM115  (closed at exit)
    refused = open(args.refused, "a", buffering=1)  # noqa: SIM115
    client = disquette.connect(args.url)
    if args.replicate:
        client = client.replicate(args.replicate)
    if args.retry_after:
        client = client.retry_after(args.retry_after)
    done = 0
    while done < args.count and not (args.stop_file and Path(args.stop_file).exists()):
        bodies = [{"n": done + i} for i in range(min(args.batch, args.count - done))]
        try:
            ids = client.add_many(bodies, args.queue)
        except DisquetteError as exc:
            refused.write(f"{time.time():.3f} {type(exc).__name__} {len(bodies)}\n")
            time.sleep(0.05)
            continue
        now = time.time()
        acked.write("".join(f"{job_id} {now:.3f}\n" for job_id in ids))
        done += len(ids)
        if args.pause:
            time.sleep(args.pause)
    client.close()


def _look(args: argparse.Namespace) -> None:
    client = disquette.connect(args.url)
    out: dict[str, Any] = {"states": _totals(client.stats())}
    if args.ids:
        jobs: dict[str, dict[str, Any]] = {}
        for line in Path(args.ids).read_text().splitlines():
            job_id = line.split()[0]
            try:
                job = client.show(job_id)
            except DisquetteError as exc:
                jobs[job_id] = {"state": type(exc).__name__}
            else:
                jobs[job_id] = {
                    "state": job.state.value,
                    "attempts": job.attempts,
                    "result": job.result,
                }
        out["jobs"] = jobs
    client.close()
    print(json.dumps(out))


def _totals(stats: disquette.Stats) -> dict[str, int]:
    names = ("scheduled", "queued", "active", "done", "failed", "cancelled")
    return {name: sum(getattr(row, name) for row in stats.rows) for name in names}


def main(argv: list[str] | None = None) -> None:
    """Run one role (see the module's docstring)."""
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s {os.getpid()} %(levelname)s %(message)s"
    )
    parser = argparse.ArgumentParser(prog="agent")
    roles = parser.add_subparsers(dest="role", required=True)
    worker = roles.add_parser("worker")
    worker.add_argument("url")
    worker.add_argument("--host", required=True)
    worker.add_argument("--queue", default="faults")
    worker.add_argument("--concurrency", type=int, default=20)
    worker.add_argument("--runs", required=True)
    worker.add_argument("--stats", required=True)
    worker.add_argument("--wait-file")
    produce = roles.add_parser("produce")
    produce.add_argument("url")
    produce.add_argument("--queue", default="faults")
    produce.add_argument("--count", type=int, required=True)
    produce.add_argument("--batch", type=int, default=1)
    produce.add_argument("--replicate", type=int, default=0)
    produce.add_argument("--pause", type=float, default=0)
    produce.add_argument("--retry-after", type=float, default=0)
    produce.add_argument("--acked", required=True)
    produce.add_argument("--refused", required=True)
    produce.add_argument("--stop-file")
    look = roles.add_parser("look")
    look.add_argument("url")
    look.add_argument("--ids")
    args = parser.parse_args(argv)
    {"worker": _worker, "produce": _produce, "look": _look}[args.role](args)


if __name__ == "__main__":
    main(sys.argv[1:])
