"""The ``disque://`` store's get+ack against our own server, two builds alternating in one run.

    python bench/bench_disque_store.py [--jobs 5000] [--rounds 3] [--before /work/main/src]

Starts ``disquette server --url memory://`` on a free loopback port, then, per round and per
build (``--before``: the ``src`` of the build to compare with; ``src`` here is "after"), runs
a child process that opens a cold client, adds ``--jobs`` jobs, and gets and acks them: one by
one (``get`` with a timeout, as a worker blocked on a queue, then ``ack``), then in batches
(``get_many`` of 100 and ``ack_many``). Prints jobs/s of each and the after/before ratios.
Figures are indicative: the machine is shared, client and server share its cores.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def child(url: str, jobs: int) -> dict[str, float]:
    """Add ``jobs`` jobs twice; get+ack them one by one, then in batches; jobs/s of each."""
    import disquette

    rates = {}
    with disquette.connect(url) as client:
        queue = f"bench-{os.getpid()}"
        for mode in ("one", "batch"):
            client.add_many([b"x"] * jobs, queue)
            start = time.perf_counter()
            if mode == "one":
                for _ in range(jobs):
                    client.ack(client.get(queue, timeout=5))
            else:
                left = jobs
                while left:
                    got = client.get_many(queue, count=100, timeout=5)
                    client.ack_many(got)
                    left -= len(got)
            rates[mode] = jobs / (time.perf_counter() - start)
    return rates


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(src: str, url: str, jobs: int) -> dict[str, float]:
    """One child run with ``src`` first on the path."""
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run(
        [sys.executable, __file__, "--child", url, "--jobs", str(jobs)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rates: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return rates


def main() -> None:
    """Parse the arguments, start the server, alternate the builds, print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", default="/work/main/src")
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.jobs)))
        return
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "disquette", "server", "--url", "memory://", "--port", str(port)],
        env={**os.environ, "PYTHONPATH": str(HERE / "src")},
    )
    try:
        url = f"disque://127.0.0.1:{port}"
        time.sleep(1.5)
        builds = {"before": args.before, "after": str(HERE / "src")}
        best: dict[str, dict[str, float]] = {name: {} for name in builds}
        for round_ in range(args.rounds):
            for name, src in builds.items():
                rates = run(src, url, args.jobs)
                print(
                    f"round {round_} {name:6}: "
                    + "  ".join(f"{mode} {rate:,.0f} jobs/s" for mode, rate in rates.items()),
                    flush=True,
                )
                for mode, rate in rates.items():
                    best[name][mode] = max(best[name].get(mode, 0.0), rate)
        for mode in best["after"]:
            ratio = best["after"][mode] / best["before"][mode]
            print(
                f"best {mode:5}: before {best['before'][mode]:,.0f}  "
                f"after {best['after'][mode]:,.0f}  ratio {ratio:.2f}x"
            )
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
