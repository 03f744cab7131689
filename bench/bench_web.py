#!/usr/bin/env python3
"""Dashboard pages (issue 14) on a big SQLite store: the median time of each page over
HTTP (the ASGI app in process, through starlette's TestClient), against ``/healthz`` (the
app's own cost, the same-run baseline) and the 300 ms budget; pages alternated in rounds.

    PYTHONPATH=src .venv/bin/python bench/bench_web.py [--jobs 1000000] [--rounds 5] [--db F]

``--db F`` keeps the SQLite file at ``F`` and, when it exists already, times the pages on
it without filling it again (the fill prints how long it took).

The store holds ``--jobs`` jobs in 4 queues (JSON bodies ``{"user": {"id": n % 4}}``),
0.1 % of them failed for good.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from urllib.parse import quote

import disquette
from disquette.stores.types import JobFilter
from disquette.web import create_app

BUDGET_MS = 300.0


def _fill(client: disquette.Client, jobs: int) -> None:
    batch = 10_000
    for start in range(0, jobs, batch):
        for q in range(4):
            bodies = [{"user": {"id": n % 4}} for n in range(start + q, start + batch, 4)]
            client.add_many(bodies, f"q{q}")
    failing = client.max_attempts(1)
    for _ in range(max(1, jobs // 1000) // 100):
        for job in failing.get_many("q0", count=100, timeout=0):
            failing.fail(job, "Traceback (most recent call last):\nValueError: boom")


def main() -> None:
    """Fill a store, then time every page in rounds and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--db", type=Path, default=None, help="keep the SQLite file here (reused if it exists)"
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "jobs.db"
        url = f"sqlite:///{path}"
        fill = not path.exists()
        client = disquette.connect(url)
        if fill:
            started = time.perf_counter()
            _fill(client, args.jobs)
            print(f"filled {args.jobs:,} jobs in {time.perf_counter() - started:.0f} s")
        some = client.scan_jobs(JobFilter(queue="q1"), None, 1).jobs[0].id
        pages = {
            "/healthz": "baseline",
            "/": "overview",
            "/queues/q1": "queue",
            "/jobs": "jobs",
            "/jobs?queue=q2&state=queued": "jobs by queue and state",
            "/jobs?path=user.id&value=3": "jobs by body",
            "/count": "count (after /jobs)",
            "/count?queue=q2&state=queued": "count by queue and state",
            "/count?path=user.id&value=3": "count by body",
            "/count?state=scheduled": "count scheduled",
            f"/jobs/{quote(some, safe='')}": "job",
            "/failed": "failed",
            "/scheduled": "scheduled",
            "/workers": "workers",
            "/schedules": "schedules",
        }
        times: dict[str, list[float]] = {path: [] for path in pages}
        with TestClient(create_app(url)) as http:
            for path in pages:  # warm up
                assert http.get(path).status_code == 200, path
            for _ in range(args.rounds):
                for path in pages:
                    begun = time.perf_counter()
                    http.get(path)
                    times[path].append((time.perf_counter() - begun) * 1000)
        base = statistics.median(times["/healthz"])
        print(f"{'page':28} {'median ms':>10} {'x healthz':>10} {'x budget':>9}")
        for path, name in pages.items():
            ms = statistics.median(times[path])
            print(f"{name:28} {ms:10.1f} {ms / base:10.1f} {ms / BUDGET_MS:9.2f}")
        client.close()


if __name__ == "__main__":
    main()
