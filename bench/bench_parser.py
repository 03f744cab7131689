"""The Disque-protocol server's request parser on its own: microseconds per request.

    python bench/bench_parser.py [--rounds 5]

What the server's hot path pays to frame requests (``RequestParser.feed``), for the shapes
clients send: one request per read (no pipelining), 50 per read (redis-benchmark -P 50),
a stream cut at arbitrary points (a client that writes without waiting), the same with
bodies of many sizes, and a 1 MiB body read 64 KiB at a time. Best of ``--rounds``;
figures are indicative (the machine is shared).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from disquette.server.protocol import RequestParser


def encode(*args: bytes) -> bytes:
    """One request as a RESP array of bulk strings."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


ADDJOB = encode(b"ADDJOB", b"q", b"body", b"0")
#: ADDJOBs with bodies of 1 to 2,000 bytes (the same ones on every run).
MIXED = b"".join(
    encode(b"ADDJOB", b"q", b"x" * (1 + (i * 7919) % 2000), b"0") for i in range(20_000)
)


def chunks_of(stream: bytes, size: int) -> list[bytes]:
    """``stream`` cut every ``size`` bytes, wherever that falls."""
    return [stream[i : i + size] for i in range(0, len(stream), size)]


#: name -> (the reads, how many requests they hold)
SCENARIOS: dict[str, tuple[list[bytes], int]] = {
    "1 request per read": ([ADDJOB] * 20_000, 20_000),
    "50 requests per read": ([ADDJOB * 50] * 400, 20_000),
    "stream cut every 4093 bytes": (chunks_of(ADDJOB * 20_000, 4093), 20_000),
    "mixed bodies, 64 KiB reads": (chunks_of(MIXED, 65536), 20_000),
    "1 MiB body in 64 KiB reads": (
        chunks_of(encode(b"ADDJOB", b"q", b"x" * (1 << 20), b"0") * 20, 65536),
        20,
    ),
}


def measure(reads: list[bytes], requests: int, rounds: int) -> float:
    """Best microseconds per request over ``rounds`` runs."""
    best = float("inf")
    for _ in range(rounds):
        parser = RequestParser()
        feed: Callable[[bytes], list[list[bytes]]] = parser.feed
        got = 0
        started = time.perf_counter()
        for data in reads:
            got += len(feed(data))
        elapsed = time.perf_counter() - started
        if got != requests or parser.error is not None:
            raise RuntimeError(f"parsed {got} of {requests} requests: {parser.error}")
        best = min(best, elapsed)
    return best / requests * 1e6


def main() -> None:
    """Print one line per scenario."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for name, (reads, requests) in SCENARIOS.items():
        print(f"{name:32} {measure(reads, requests, args.rounds):8.3f} us/request")


if __name__ == "__main__":
    main()
