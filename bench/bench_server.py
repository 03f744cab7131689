"""redis-benchmark against ``disquette server``, next to the local Redis, in one run.

    python bench/bench_server.py [--requests 100000] [--clients 50] [--cycles 50000]

Measures ``ADDJOB q body 0`` at pipeline 1 and 50 on the memory store and on SQLite (normal
and ``synchronous=full``, i.e. an fsync per commit), against Redis' ``LPUSH`` on a private
``redis-server``, with redis-benchmark.

Then GETJOB+ACKJOB cycles, which redis-benchmark cannot do (the ACKJOB needs the id the
GETJOB returned): a small asyncio load generator (:func:`cycles`) opens ``--clients``
connections; each sends ``pipeline`` ``GETJOB TIMEOUT 1000 FROM c`` (what a worker sends;
``--getjob nohang`` measures ``GETJOB NOHANG`` instead), reads the replies, then sends
one ``ACKJOB id`` per job it got and reads those replies; a cycle is one job got and acked.
The same generator runs against Redis with its reliable-queue equivalent, ``BLMOVE c
processing RIGHT LEFT 1`` (``RPOPLPUSH`` with ``--getjob nohang``) then ``LREM processing 1
body``, so both sides pay the same client costs (the
generator is Python and shares the machine's cores with the server it measures: its rates
are lower than redis-benchmark's, compare them with the Redis cycle, not with LPUSH).

SQLite's durable rate comes from group commit: the server gathers the ADDJOBs of every
connection that arrive while a commit runs into the next ``store.add`` batch (one
transaction, one fsync), see ``disquette.server.server.Server.add_jobs``; GETJOB
NOHANG and ACKJOB are gathered the same way (``disquette.server.batching.Gathered``: one
claim and one ack statement per loop iteration for all connections).

``--stores memory,sqlite`` runs a subset of the stores.
Figures are indicative: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Final, TypeVar

import hiredis

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


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


def encode(*args: str | bytes) -> bytes:
    """One request as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class Connection(asyncio.Protocol):
    """A pipelining client connection: write requests, wait for that many replies."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.replies: list[object] = []
        self.transport: asyncio.Transport | None = None
        self._want = 0
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        """Parse replies; wake the caller once it has what it waits for."""
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            self.replies.append(reply)
        if self._waiter is not None and len(self.replies) >= self._want:
            self._waiter.set_result(None)
            self._waiter = None

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail a pending call."""
        if self._waiter is not None:
            self._waiter.set_exception(ConnectionError("connection lost"))

    async def call(self, payload: bytes, count: int) -> list[object]:
        """Send ``payload`` (``count`` requests), return their ``count`` replies."""
        assert self.transport is not None
        self.transport.write(payload)
        if len(self.replies) < count:
            self._want = count
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        replies, self.replies = self.replies[:count], self.replies[count:]
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                raise RuntimeError(f"error reply: {reply}")
        return replies


async def connect(port: int) -> Connection:
    """A connection to a loopback port."""
    _, connection = await asyncio.get_running_loop().create_connection(
        Connection, "127.0.0.1", port
    )
    return connection


async def fill(port: int, count: int, request: bytes) -> None:
    """Send ``request`` ``count`` times, pipelined by the thousand."""
    connection = await connect(port)
    while count > 0:
        n = min(count, 1000)
        await connection.call(request * n, n)
        count -= n
    assert connection.transport is not None
    connection.transport.close()


#: How each side gets a job and acks it: the get request, then the ack request for a reply
#: of the get (``None`` when it got nothing).
Cycle = tuple[bytes, Callable[[object], bytes | None]]

#: The get request of each side, blocking (what workers send) or not.
DISQUE_GETS: Final = {
    "timeout": encode("GETJOB", "TIMEOUT", "1000", "FROM", "c"),
    "nohang": encode("GETJOB", "NOHANG", "FROM", "c"),
}
REDIS_GETS: Final = {
    "timeout": encode("BLMOVE", "c", "processing", "RIGHT", "LEFT", "1"),
    "nohang": encode("RPOPLPUSH", "c", "processing"),
}


def disque_cycle(get: str) -> Cycle:
    """GETJOB (blocking or not) then ACKJOB of the job it returned."""
    return (
        DISQUE_GETS[get],
        lambda reply: encode("ACKJOB", reply[0][1]) if reply else None,  # type: ignore[index]
    )


def redis_cycle(get: str) -> Cycle:
    """The reliable-queue move (blocking or not) then LREM of the body it moved."""
    return (
        REDIS_GETS[get],
        lambda reply: encode("LREM", "processing", "1", reply) if reply else None,  # type: ignore[arg-type]
    )


async def cycles(port: int, total: int, clients: int, pipeline: int, cycle: Cycle) -> float:
    """Get-and-ack cycles per second: ``clients`` connections, ``pipeline`` gets at once."""
    get, ack = cycle
    connections = [await connect(port) for _ in range(clients)]
    remaining = total
    done = 0

    async def work(connection: Connection) -> None:
        nonlocal remaining, done
        while remaining > 0:
            n = min(pipeline, remaining)
            remaining -= n
            acks = [a for a in map(ack, await connection.call(get * n, n)) if a is not None]
            if not acks:
                raise RuntimeError("the queue ran dry: fill it with more jobs")
            await connection.call(b"".join(acks), len(acks))
            done += len(acks)

    started = time.perf_counter()
    await asyncio.gather(*(work(connection) for connection in connections))
    elapsed = time.perf_counter() - started
    for connection in connections:
        assert connection.transport is not None
        connection.transport.close()
    return done / elapsed


def measure_cycles(
    port: int, total: int, clients: int, fill_request: bytes, cycle: Cycle
) -> dict[int, float]:
    """Cycles per second at pipeline 1 and 50, the queue filled first."""
    rates = {}
    for pipeline in (1, 50):
        run(fill(port, total, fill_request))
        rates[pipeline] = run(cycles(port, total, clients, pipeline, cycle))
    return rates


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when installed (as the server does)."""
    try:
        import uvloop
    except ModuleNotFoundError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def main() -> int:
    """Run everything and print one table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--cycles", type=int, default=50_000)
    parser.add_argument(
        "--stores", default="memory,sqlite,sqlite-full", help="comma-separated, of the default"
    )
    parser.add_argument(
        "--getjob",
        choices=sorted(DISQUE_GETS),
        default="timeout",
        help="GETJOB TIMEOUT 1000 (a worker's blocking get, the default) or GETJOB NOHANG",
    )
    args = parser.parse_args()
    if shutil.which("redis-benchmark") is None or shutil.which("redis-server") is None:
        print("needs redis-benchmark and redis-server (apt-get install redis-tools redis-server)")
        return 2
    n, c = args.requests, args.clients
    redis_name = "BLMOVE" if args.getjob == "timeout" else "RPOPLPUSH"
    #: (what, rate, what it is compared with)
    rows: list[tuple[str, float, str]] = []
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
                rate = benchmark(redis_port, n, c, pipeline, "LPUSH", "q", "body")
                rows.append((f"redis LPUSH P{pipeline}", rate, f"redis LPUSH P{pipeline}"))
            fill_request = encode("LPUSH", "c", "body")
            for pipeline, rate in measure_cycles(
                redis_port, args.cycles, c, fill_request, redis_cycle(args.getjob)
            ).items():
                label = f"redis {redis_name}+LREM P{pipeline}"
                rows.append((label, rate, label))
        finally:
            redis.terminate()
            redis.wait()
        stores = {
            "memory": "memory://",
            "sqlite": f"sqlite:///{tmp}/bench.db",
            "sqlite-full": f"sqlite:///{tmp}/bench-full.db?synchronous=full",
        }
        for name, url in stores.items():
            if name not in args.stores.split(","):
                continue
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
                    rows.append((f"{name} ADDJOB P{pipeline}", rate, f"redis LPUSH P{pipeline}"))
                fill_request = encode("ADDJOB", "c", "body", "0")
                for pipeline, rate in measure_cycles(
                    port, args.cycles, c, fill_request, disque_cycle(args.getjob)
                ).items():
                    rows.append(
                        (
                            f"{name} GETJOB+ACKJOB P{pipeline}",
                            rate,
                            f"redis {redis_name}+LREM P{pipeline}",
                        )
                    )
            finally:
                server.terminate()
                server.wait()
    base = {label: rate for label, rate, _ in rows}
    print(f"{'what':32} {'ops/s':>10} {'ratio':>6}  compared with")
    for label, rate, against in rows:
        print(f"{label:32} {rate:10,.0f} {rate / base[against]:6.2f}  {against}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
