"""redis-benchmark against ``disquette server``, next to the local Redis, in one run.

    python bench/bench_server.py [--requests 100000] [--clients 50]

Measures ``ADDJOB q body 0`` at pipeline 1 and 50 on the memory store and on SQLite (normal
and ``synchronous=full``, i.e. an fsync per commit), against Redis' ``LPUSH`` on a private
``redis-server``; then GETJOB+ACKJOB cycles (each redis-benchmark "request" is one
``GETJOB NOHANG FROM q`` here, and the jobs taken are acked in batches by a helper client).

SQLite's durable rate comes from group commit: the server gathers the ADDJOBs of every
connection that arrive while a commit runs into the next ``store.add`` batch (one
transaction, one fsync), see ``disquette.server.commands.Server.submit``.
Figures are indicative: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int) -> None:
    """Until something accepts on the port."""
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def benchmark(port: int, requests: int, clients: int, pipeline: int, *command: str) -> float:
    """Requests per second redis-benchmark reports."""
    out = subprocess.run(
        [
            "redis-benchmark",
            "-p",
            str(port),
            "-n",
            str(requests),
            "-c",
            str(clients),
            "-P",
            str(pipeline),
            "-q",
            *command,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    rates = re.findall(r"([\d.]+) requests per second", out.replace("\r", "\n"))
    return float(rates[-1])


def main() -> int:
    """Run everything and print one table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()
    if shutil.which("redis-benchmark") is None or shutil.which("redis-server") is None:
        print("needs redis-benchmark and redis-server (apt-get install redis-tools redis-server)")
        return 2
    n, c = args.requests, args.clients
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        redis_port = free_port()
        redis = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(redis_port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                tmp,
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_port(redis_port)
            for pipeline in (1, 50):
                rows.append(
                    (
                        f"redis LPUSH P{pipeline}",
                        benchmark(redis_port, n, c, pipeline, "LPUSH", "q", "body"),
                    )
                )
        finally:
            redis.terminate()
            redis.wait()
        stores = {
            "memory": "memory://",
            "sqlite": f"sqlite:///{tmp}/bench.db",
            "sqlite-full": f"sqlite:///{tmp}/bench-full.db?synchronous=full",
        }
        for name, url in stores.items():
            port = free_port()
            server = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "disquette",
                    "server",
                    "--port",
                    str(port),
                    "--url",
                    url,
                    "--result-ttl",
                    "0",
                ],
                env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                wait_port(port)
                for pipeline in (1, 50):
                    rate = benchmark(port, n, c, pipeline, "ADDJOB", "q", "body", "0")
                    rows.append((f"{name} ADDJOB P{pipeline}", rate))
                rate = benchmark(port, n, c, 1, "GETJOB", "NOHANG", "FROM", "q")
                rows.append((f"{name} GETJOB NOHANG P1", rate))
            finally:
                server.terminate()
                server.wait()
    base = dict(rows)
    print(f"{'what':32} {'ops/s':>10} {'vs LPUSH':>9}")
    for label, rate in rows:
        pipeline = label.split()[-1]
        ratio = rate / base[f"redis LPUSH {pipeline}"]
        print(f"{label:32} {rate:10,.0f} {ratio:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
