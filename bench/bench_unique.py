#!/usr/bin/env python3
"""What a unique key costs an add: plain adds and unique adds (a new key each, the insert
path; then the same keys again, each answered with its holder) on each store, in one run,
as ratios to the plain add. The bar (issue 13) is a unique add at most 1.5x a plain one.

    python bench/bench_unique.py [--jobs 5000] [--repeat 3] [--stores memory,sqlite,...]
        [--postgres postgresql://postgres@127.0.0.1:5432/postgres] [--redis redis://127.0.0.1:6379]

One call per job, through the sync client (the worst case: no batch spreads the cost).
Each store is flushed between runs; the figure kept is the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import disquette


def plain(client: disquette.Client, n: int) -> None:
    """``n`` plain adds."""
    for i in range(n):
        client.add(i, "q")


def unique(client: disquette.Client, n: int) -> None:
    """``n`` unique adds, each with a new key: each creates its job."""
    for i in range(n):
        client.unique(f"key-{i}").add(i, "q")


def duplicates(client: disquette.Client, n: int) -> None:
    """``n`` unique adds of held keys (after :func:`unique`): each creates nothing."""
    for i in range(n):
        client.unique(f"key-{i}").add(i, "q")


def per_second(
    client: disquette.Client, n: int, run: Callable[[disquette.Client, int], None]
) -> float:
    start = time.perf_counter()
    run(client, n)
    return n / (time.perf_counter() - start)


def measure(url: str, n: int, repeat: int) -> dict[str, float]:
    """Best adds/s of each kind on the store at ``url``."""
    best = {"plain": 0.0, "unique": 0.0, "duplicate": 0.0}
    with disquette.connect(url) as client:
        for _ in range(repeat):  # interleaved: drift hits every kind alike
            client.flush()
            best["plain"] = max(best["plain"], per_second(client, n, plain))
            client.flush()
            best["unique"] = max(best["unique"], per_second(client, n, unique))
            best["duplicate"] = max(best["duplicate"], per_second(client, n, duplicates))
        client.flush()
    return best


def urls(directory: Path, args: argparse.Namespace) -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    pg = args.postgres + ("&" if "?" in args.postgres else "?") + f"schema=bench_unique_{tag}"
    redis = args.redis + ("&" if "?" in args.redis else "?") + f"prefix=bench-unique-{tag}:"
    return {
        "memory": "memory://",
        "sqlite": f"sqlite:///{directory / 'unique.db'}",
        "postgres": pg,
        "redis": redis,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--stores", default="memory,sqlite,postgres,redis")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument("--dir", type=Path, default=None, help="where the SQLite file goes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        table = urls(Path(directory), args)
        print(
            f"{'store':<10}{'plain/s':>10}{'unique/s':>10}{'dup/s':>10}{'unique x':>10}{'dup x':>8}"
        )
        for name in args.stores.split(","):
            rates = measure(table[name], args.jobs, args.repeat)
            ratio = rates["plain"] / rates["unique"]
            dup_ratio = rates["plain"] / rates["duplicate"]
            print(
                f"{name:<10}{rates['plain']:>10.0f}{rates['unique']:>10.0f}"
                f"{rates['duplicate']:>10.0f}{ratio:>10.2f}{dup_ratio:>8.2f}"
            )


if __name__ == "__main__":
    main()
