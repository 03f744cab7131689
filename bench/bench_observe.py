#!/usr/bin/env python3
"""Dashboard views (issue 14) on a big store: keyset pages and capped counts against the
naive peers measured in the same run (an OFFSET page at the same depth, an unbounded
``COUNT(*)``), alternated in rounds; medians reported as milliseconds and ratios.

    PYTHONPATH=src .venv/bin/python bench/bench_observe.py [--store sqlite|postgres]
        [--jobs 1000000] [--rounds 5] [--depth 1000]

The store holds ``--jobs`` queued jobs in 4 queues (a quarter each, JSON bodies
``{"user": {"id": n}}``). Measured per round:

- ``first page``: ``scan_jobs(limit=50)``; ``deep page``: the page after ``--depth`` pages
  (its cursor taken from a walk before timing); ``OFFSET page``: the same rows by
  ``ORDER BY seq DESC LIMIT 50 OFFSET depth*50``, the peer (what an OFFSET pager does).
- ``queue page``: a deep page of one queue (``jobs_queue_seq``).
- ``capped count``: ``count(JobFilter(queue=...), cap=10_000)``; ``COUNT(*)``: the
  unbounded count of that queue, the peer.
- ``body filter``: a page of ``body_path="user.id"`` matching one job in 4 (rows tested).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

import disquette
from disquette.stores.types import JobFilter
from tests.servers.postgres import fresh_url


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def _fill(client: disquette.Client, jobs: int) -> None:
    batch = 10_000
    for start in range(0, jobs, batch):
        for q in range(4):
            bodies = [{"user": {"id": n % 4}} for n in range(start + q, start + batch, 4)]
            client.add_many(bodies, f"q{q}")


def _peer(url: str, store: str) -> tuple[Callable[[str, tuple[object, ...]], object], str]:
    if store == "sqlite":
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        return (lambda sql, args: conn.execute(sql, args).fetchall()), "?"
    base, _, query = url.partition("?")
    schema = dict(p.split("=", 1) for p in query.split("&"))["schema"]
    pg = psycopg.connect(base, autocommit=True)
    pg.execute(f"SET search_path = {schema}")
    return (lambda sql, args: pg.execute(sql, args).fetchall()), "%s"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--depth", type=int, default=1000)
    args = parser.parse_args()
    url = (
        f"sqlite:///{Path(tempfile.mkdtemp()) / 'jobs.db'}"
        if args.store == "sqlite"
        else fresh_url()
    )
    client = disquette.connect(url)
    started = time.perf_counter()
    _fill(client, args.jobs)
    print(f"{args.store}: {args.jobs:,} jobs added in {time.perf_counter() - started:.0f} s")
    raw, mark = _peer(url, args.store)
    everything, one_queue = JobFilter(), JobFilter(queue="q1")
    cursors: dict[str, str | None] = {}
    for name, where in (("all", everything), ("queue", one_queue)):
        page = client.scan_jobs(where, limit=50)
        for _ in range(args.depth - 1):
            page = client.scan_jobs(where, page.cursor, limit=50)
        cursors[name] = page.cursor
    offset = args.depth * 50
    measures: dict[str, Callable[[], object]] = {
        "first page": lambda: client.scan_jobs(everything, limit=50),
        "deep page": lambda: client.scan_jobs(everything, cursors["all"], limit=50),
        "OFFSET page (peer)": lambda: raw(
            f"SELECT id, body FROM jobs ORDER BY seq DESC LIMIT 50 OFFSET {mark}", (offset,)
        ),
        "queue page": lambda: client.scan_jobs(one_queue, cursors["queue"], limit=50),
        "capped count": lambda: client.count(one_queue, cap=10_000),
        "COUNT(*) (peer)": lambda: raw(f"SELECT count(*) FROM jobs WHERE queue = {mark}", ("q1",)),
        "body filter": lambda: client.scan_jobs(
            JobFilter(body_path="user.id", body_value="3"), limit=50
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in measures}
    for _ in range(args.rounds):
        for name, call in measures.items():
            times[name].append(_timed(call))
    median = {name: statistics.median(values) for name, values in times.items()}
    for name, value in median.items():
        print(f"  {name:20} {value:9.2f} ms")
    print(f"  deep page / first page:     {median['deep page'] / median['first page']:.2f}")
    print(f"  OFFSET page / deep page:    {median['OFFSET page (peer)'] / median['deep page']:.1f}")
    print(f"  COUNT(*) / capped count:    {median['COUNT(*) (peer)'] / median['capped count']:.1f}")
    client.close()


if __name__ == "__main__":
    main()
