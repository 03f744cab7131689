#!/usr/bin/env python3
"""What a flow limit (issue 16) costs a claim: one-job claims from an unlimited queue on
the build under test and on a baseline build (``--baseline-src``, default /work/main/src:
the code before limits), and from a queue with a concurrency limit and a rate limit
(a concurrency alone, then a rate and a concurrency; set high enough never to hold a
job back: the cost of checking them), on each store,
alternated in rounds, each in a fresh process; medians, as ratios in one run.
The bar: a limited claim at most 1.5x an unlimited one; unlimited no slower than before.

    python bench/bench_limits.py [--jobs 3000] [--rounds 5] [--stores memory,sqlite,postgres,redis]
        [--baseline-src /work/main/src]

Each job is claimed alone and acked at once (as a busy worker does, with few jobs active);
only the claims are timed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def claims_per_second(url: str, n: int, limits: str) -> float:
    """Claims/s of ``n`` one-job claims (each acked, untimed) from queue ``q`` with
    ``limits``: ``none``, ``concurrency``, or ``rate`` (a rate and a concurrency)."""
    import disquette

    with disquette.connect(url) as client:
        if limits == "concurrency":
            client.set_limits("q", concurrency=100_000)
        elif limits == "rate":
            client.set_limits("q", concurrency=100_000, rate=(1_000_000, 1.0))
        client.add_many(list(range(n)), "q")
        claimer = client.timeout(0)
        spent = 0.0
        for _ in range(n):
            start = time.perf_counter()
            job = claimer.get("q")
            spent += time.perf_counter() - start
            client.ack(job)
        client.flush()  # leave nothing behind (Redis keys)
    return n / spent


def run_one(src: Path, url: str, n: int, limits: str) -> float:
    """One measure in a fresh process importing disquette from ``src``."""
    code = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]];"
        "from bench_limits import claims_per_second;"
        "print(claims_per_second(sys.argv[3], int(sys.argv[4]), sys.argv[5]))"
    )
    env = {**os.environ, "PYTHONPATH": ""}
    args = [str(src), str(HERE / "bench"), url, str(n), limits]
    out = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, check=True, capture_output=True, text=True
    )
    return float(out.stdout.strip())


def url_for(store: str, directory: Path, index: int, postgres: str) -> str:
    """A fresh store of each kind (PostgreSQL: a schema of its own, dropped after)."""
    if store == "memory":
        return "memory://"
    if store == "redis":
        return f"redis://127.0.0.1:6379?prefix=bench-limits-{os.getpid()}-{index}:"
    if store == "postgres":
        tag = f"bench_limits_{os.getpid()}_{index}"
        return postgres + ("&" if "?" in postgres else "?") + f"schema={tag}"
    return f"sqlite:///{directory / f'bench-{index}.db'}"


def drop_schema(url: str) -> None:
    """Drop a PostgreSQL bench schema."""
    import psycopg

    base, _, query = url.partition("?")
    schema = dict(pair.split("=", 1) for pair in query.split("&"))["schema"]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--stores", default="memory,sqlite")
    parser.add_argument("--baseline-src", type=Path, default=Path("/work/main/src"))
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    builds = {
        "before": (args.baseline_src, "none"),
        "unlimited": (HERE / "src", "none"),
        "concurrency": (HERE / "src", "concurrency"),
        "rate": (HERE / "src", "rate"),
    }
    print("claims/s (medians); x = cost as a ratio of claims/s (before/unlimited, ...)")
    print(
        f"{'store':<8}{'before':>9}{'unlim':>9}{'conc':>9}{'rate':>9}"
        f"{'unlim x':>9}{'conc x':>9}{'rate x':>9}"
    )
    with tempfile.TemporaryDirectory() as directory:
        index = 0
        for store in args.stores.split(","):
            rates: dict[str, list[float]] = {name: [] for name in builds}
            for _ in range(args.rounds):  # alternated: drift hits every build alike
                for name, (src, limits) in builds.items():
                    index += 1
                    url = url_for(store, Path(directory), index, args.postgres)
                    rates[name].append(run_one(src, url, args.jobs, limits))
                    if store == "postgres":
                        drop_schema(url)
            m = {name: statistics.median(values) for name, values in rates.items()}
            print(
                f"{store:<8}{m['before']:>9.0f}{m['unlimited']:>9.0f}{m['concurrency']:>9.0f}"
                f"{m['rate']:>9.0f}{m['before'] / m['unlimited']:>9.2f}"
                f"{m['unlimited'] / m['concurrency']:>9.2f}{m['unlimited'] / m['rate']:>9.2f}"
            )


if __name__ == "__main__":
    main()
