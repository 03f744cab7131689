"""redis-benchmark and a get+ack load generator against ``disquette server``, next to a C
Disque (or the local Redis), in one run.

    python bench/bench_server.py [--requests 100000] [--clients 50] [--cycles 100000]
        [--generators 4] [--rounds 1] [--stores memory,sqlite,sqlite-full]
        [--peer auto|disque|redis] [--getjob timeout|nohang] [--baseline ../main/src]

The peer: a C ``disque-server`` when one is on PATH or ``DISQUE_SERVER`` names the binary
(Disque is not packaged anywhere: build it yourself, outside this repository); every
figure of ours is then quoted as a ratio of Disque's same measurement. Without one the
bench says so and compares with a private ``redis-server``: ``LPUSH`` for ADDJOB, and the
reliable-queue move ``BLMOVE c processing RIGHT LEFT 1`` (``RPOPLPUSH`` with ``--getjob
nohang``) then ``LREM processing 1 body`` for the get+ack cycle. ``--peer redis`` forces
Redis.

ADDJOB: ``ADDJOB q body 0`` at pipeline 1 and 50 with redis-benchmark, on the memory store
and on SQLite (normal and ``synchronous=full``, i.e. an fsync per commit).

GETJOB+ACKJOB cycles, which redis-benchmark cannot do (the ACKJOB needs the id the GETJOB
returned): a load generator (:func:`cycles`) in ``--generators`` processes opens
``--clients`` connections in all; each sends ``pipeline`` ``GETJOB TIMEOUT 1000 FROM c``
(what workers send, blocking even when jobs wait; ``--getjob nohang`` measures ``GETJOB
NOHANG`` instead), reads the replies, then sends one ``ACKJOB id`` per job it got and reads
those replies; a cycle is one job got and acked. The generator is Python (asyncio, hiredis)
and shares the machine's cores with the server it measures: it limits a C Disque, hence
several processes (on 2 shared cores, C Disque's P50 cycle measured 32k, 56k and 74k/s
with 1, 2 and 4 of them, about half busy at 4; ours was flat at 36k-44k). The server CPU
ratio below does not depend on it. The peer pays the same client costs.

``--rounds`` runs everything that many times, the servers taking turns, and prints the
median of each figure (the machine is shared: figures are indicative). Beside each rate,
the server's CPU time per operation (``/proc``, every thread) and its ratio to the
peer's: what each server would do with a core to itself, steadier than the rates when
neighbours load the machine. ``--baseline DIR`` adds another build of ours (``DIR`` is its
``src``, e.g. a worktree of the main branch), measured in the same rounds.

SQLite's durable rate comes from group commit: the server gathers the ADDJOBs of every
connection that arrive while a commit runs into the next ``store.add`` batch (one
transaction, one fsync), see ``disquette.server.server.Server.adds``; GETJOBs (blocking
or not) and ACKJOBs are gathered the same way (``disquette.server.batching.Gathered``: one
claim and one ack statement per loop iteration for all connections).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import partial
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


def free_disque_port() -> int:
    """A free loopback port whose cluster bus port (Disque's, the port + 10000) is free too."""
    while True:
        port = free_port()
        if port + 10_000 > 65_535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port


def wait_port(port: int, process: subprocess.Popen[bytes] | None = None) -> None:
    """Until something accepts on the port (or ``process``, meant to, exits)."""
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the server exited ({process.returncode})") from None
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


async def cycles(
    port: int, total: int, clients: int, pipeline: int, cycle: Cycle, ready: Callable[[], object]
) -> tuple[int, float, float]:
    """Get-and-ack cycles: ``clients`` connections, ``pipeline`` gets at once, started once
    ``ready`` returns (every generator connected). Cycles done, start and end times."""
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

    ready()
    started = time.monotonic()
    await asyncio.gather(*(work(connection) for connection in connections))
    ended = time.monotonic()
    for connection in connections:
        assert connection.transport is not None
        connection.transport.close()
    return done, started, ended


def _generate(
    port: int,
    total: int,
    clients: int,
    pipeline: int,
    cycle: Cycle,
    barrier: Any,
    results: Any,
) -> None:
    results.put(run(cycles(port, total, clients, pipeline, cycle, barrier.wait)))


def cycle_rate(
    port: int, total: int, clients: int, pipeline: int, cycle: Cycle, generators: int
) -> float:
    """Cycles per second of ``generators`` processes sharing ``clients`` connections and
    ``total`` cycles, from the first start to the last end."""
    generators = max(1, min(generators, clients))
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(generators)
    results = context.Queue()
    processes = [
        context.Process(
            target=_generate,
            args=(
                port,
                total // generators + (i < total % generators),
                clients // generators + (i < clients % generators),
                pipeline,
                cycle,
                barrier,
                results,
            ),
        )
        for i in range(generators)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=900) for _ in processes]
    for process in processes:
        process.join()
    done = sum(count for count, _, _ in outcomes)
    return float(done) / (max(end for *_, end in outcomes) - min(start for _, start, _ in outcomes))


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when installed (as the server does)."""
    try:
        import uvloop
    except ModuleNotFoundError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


@dataclass
class Target:
    """A server measured: its name, its command line for a port and a data directory, and
    whether it speaks Disque (else Redis, with the reliable-queue equivalents)."""

    name: str
    argv: Callable[[int, str], list[str]]
    disque: bool
    #: The ``src`` directory our server runs from (``--baseline``: another build).
    source: Path = ROOT / "src"


def ours(url: Callable[[str], str]) -> Callable[[int, str], list[str]]:
    """``disquette server`` over the store ``url(directory)`` names."""

    def argv(port: int, directory: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "disquette",
            "server",
            "--port",
            str(port),
            "--url",
            url(directory),
            "--result-ttl",
            "0",
        ]

    return argv


def disque_server() -> str | None:
    """The C Disque to compare with: ``DISQUE_SERVER``, else ``disque-server`` on PATH."""
    named = os.environ.get("DISQUE_SERVER")
    if named:
        return shutil.which(named) or (named if os.access(named, os.X_OK) else None)
    return shutil.which("disque-server")


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user and system, every thread) a process used so far; ``None`` off Linux."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: A measurement: operations per second, and the server's CPU microseconds per operation.
Figure = tuple[float, float | None]


def measure(target: Target, args: argparse.Namespace, directory: str) -> dict[str, Figure]:
    """One round of a target: ADDJOB (LPUSH) at P1 and P50, then get+ack cycles at P1 and
    P50 (the queue filled first), on a fresh server."""
    # A C Disque also listens on its port + 10000 (the cluster bus).
    port = free_disque_port() if target.name == "disque" else free_port()
    server = subprocess.Popen(
        target.argv(port, directory),
        env={**os.environ, "PYTHONPATH": str(target.source)},
        cwd=directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    figures: dict[str, Figure] = {}
    add = ("ADDJOB", "q", "body", "0") if target.disque else ("LPUSH", "q", "body")
    fill_request = (
        encode("ADDJOB", "c", "body", "0") if target.disque else encode("LPUSH", "c", "body")
    )
    cycle = disque_cycle(args.getjob) if target.disque else redis_cycle(args.getjob)

    def timed(what: str, operations: int, rate: Callable[[], float]) -> None:
        before = cpu_seconds(server.pid)
        measured = rate()
        after = cpu_seconds(server.pid)
        used = None if before is None or after is None else (after - before) / operations * 1e6
        figures[what] = (measured, used)

    try:
        wait_port(port, server)
        for pipeline in (1, 50):
            timed(
                f"add P{pipeline}",
                args.requests,
                partial(benchmark, port, args.requests, args.clients, pipeline, *add),
            )
        for pipeline in (1, 50):
            run(fill(port, args.cycles, fill_request))
            timed(
                f"get+ack P{pipeline}",
                args.cycles,
                partial(
                    cycle_rate, port, args.cycles, args.clients, pipeline, cycle, args.generators
                ),
            )
    finally:
        server.terminate()
        server.wait()
    return figures


def median(values: list[float | None]) -> float | None:
    """The median, ``None`` when a value is missing."""
    known = [value for value in values if value is not None]
    return statistics.median(known) if known and len(known) == len(values) else None


def main() -> int:
    """Run every round and print one table of medians, with ratios to the peer."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--cycles", type=int, default=100_000)
    parser.add_argument("--generators", type=int, default=4, help="load generator processes")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--stores", default="memory,sqlite,sqlite-full", help="comma-separated, of the default"
    )
    parser.add_argument("--peer", choices=("auto", "disque", "redis"), default="auto")
    parser.add_argument(
        "--baseline",
        help="the src directory of another build (a git worktree's), measured in the same rounds",
    )
    parser.add_argument(
        "--getjob",
        choices=sorted(DISQUE_GETS),
        default="timeout",
        help="GETJOB TIMEOUT 1000 (a worker's blocking get, the default) or GETJOB NOHANG",
    )
    args = parser.parse_args()
    if shutil.which("redis-benchmark") is None:
        print("needs redis-benchmark (apt-get install redis-tools)")
        return 2
    disque = None if args.peer == "redis" else disque_server()
    if disque is None and args.peer == "disque":
        print("no C Disque: put disque-server on PATH or name it with DISQUE_SERVER")
        return 2
    if disque is not None:
        print(f"peer: C Disque {disque}")
        peer = Target("disque", lambda port, d: [disque, "--port", str(port), "--dir", d], True)
        names = {"add": "ADDJOB", "get+ack": "GETJOB+ACKJOB"}
    else:
        if shutil.which("redis-server") is None:
            print("no C Disque and no redis-server to compare with")
            return 2
        print("no C Disque on PATH (DISQUE_SERVER names one): comparing with Redis instead")
        peer = Target(
            "redis",
            lambda port, d: [
                "redis-server",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                d,
            ],
            False,
        )
        move = "BLMOVE" if args.getjob == "timeout" else "RPOPLPUSH"
        names = {"add": "LPUSH", "get+ack": f"{move}+LREM"}
    stores = {
        "memory": lambda d: "memory://",
        "sqlite": lambda d: f"sqlite:///{d}/bench.db",
        "sqlite-full": lambda d: f"sqlite:///{d}/bench-full.db?synchronous=full",
    }
    targets = [peer] + [
        Target(name, ours(url), True)
        for name, url in stores.items()
        if name in args.stores.split(",")
    ]
    if args.baseline is not None:  # another build of ours, measured in the same rounds
        baseline = Path(args.baseline).resolve()
        targets += [
            Target(f"{target.name}@baseline", target.argv, True, baseline) for target in targets[1:]
        ]
    print(
        f"{args.clients} connections, {args.generators} generator processes, GETJOB "
        f"{'TIMEOUT 1000' if args.getjob == 'timeout' else 'NOHANG'}, {args.rounds} round(s)"
    )
    figures: dict[str, dict[str, list[Figure]]] = {t.name: {} for t in targets}
    for round_ in range(args.rounds):
        for target in targets:
            with tempfile.TemporaryDirectory() as directory:
                for what, (rate, cpu) in measure(target, args, directory).items():
                    figures[target.name].setdefault(what, []).append((rate, cpu))
                    used = "" if cpu is None else f", server CPU {cpu:.1f} us/op"
                    print(f"  round {round_ + 1} {target.name} {what}: {rate:,.0f}/s{used}")
    # The CPU ratio (the peer's CPU per operation over ours) says what each server could do
    # with a core to itself: on a shared machine the rates swing with the neighbours' load.
    base = {
        what: (statistics.median(r for r, _ in runs), median([c for _, c in runs]))
        for what, runs in figures[peer.name].items()
    }
    print(
        f"{'what':32} {'ops/s':>10} {'ratio':>6} {'CPU us/op':>10} {'CPU ratio':>9}  "
        "compared with (medians)"
    )
    ours_names = {"add": "ADDJOB", "get+ack": "GETJOB+ACKJOB"}
    for target in targets:
        for what, runs in figures[target.name].items():
            kind, pipeline = what.split()
            rate, cpu = statistics.median(r for r, _ in runs), median([c for _, c in runs])
            base_rate, base_cpu = base[what]
            label = f"{target.name} {(names if target is peer else ours_names)[kind]} {pipeline}"
            cpu_text = "" if cpu is None else f"{cpu:10.1f}"
            ratio_text = "" if cpu is None or base_cpu is None else f"{base_cpu / cpu:9.2f}"
            print(
                f"{label:32} {rate:10,.0f} {rate / base_rate:6.2f} {cpu_text:>10} "
                f"{ratio_text:>9}  {peer.name} {names[kind]} {pipeline}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
