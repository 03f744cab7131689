#!/usr/bin/env python3
"""disquette's PostgreSQL store next to pgqueuer and procrastinate, same server, same run.

    bash bench/setup_postgres_peers.sh          # once: bench/.venv-pg with the peers
    bench/.venv-pg/bin/python bench/bench_postgres.py [--jobs 20000] [--url postgresql://...]
    bench/.venv-pg/bin/python bench/bench_postgres.py --churn 1000000   # bloat under churn

Workloads, each system in a database of its own on the same server:

- bulk add: N no-op jobs, enqueued in chunks of ``--chunk`` with each system's batch API;
- drain: N queued jobs through ``--workers`` concurrent consumers in one process, each
  taking batches of ``--batch`` (disquette: ``get_many`` + a no-op call per job +
  ``ack_many``; pgqueuer: one ``QueueManager`` per consumer in drain mode; procrastinate:
  one worker with that concurrency);
- end-to-end: N / (add time + drain time);
- add-to-start latency: an idle consumer, and a producer in another process adding one job
  at a time; the job carries the wall-clock time just before the add, the handler notes
  when it starts. p50 / p99 over ``--samples`` jobs. Wake-ups go through LISTEN/NOTIFY.

The server defaults to 127.0.0.1:5432 (user postgres); ``--url`` or
``$DISQUETTE_BENCH_POSTGRES_URL`` picks another one (a user that may create databases).
The machine is shared and has 2 cores: figures are indicative, ratios are what to read.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import psycopg

import disquette

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def database_url(admin_url: str, name: str) -> str:
    head, _, tail = admin_url.partition("://")
    return f"{head}://{tail.partition('/')[0]}/{name}"


def fresh_database(admin_url: str, name: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return database_url(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# -- disquette --------------------------------------------------------------------------


async def disquette_throughput(
    url: str, n: int, chunk: int, workers: int, batch: int
) -> tuple[float, float]:
    store_url = f"{url}?schema=bench&pool_max={workers + 2}"
    async with disquette.connect_async(store_url) as client:
        jobs = client.timeout(0)
        await jobs.qlen("q")  # migrations, pool
        body = b""
        start = time.perf_counter()
        for offset in range(0, n, chunk):
            await jobs.add_many([body] * min(chunk, n - offset), "q")
        added = time.perf_counter()
        handled = 0

        def noop(job: disquette.Job) -> None:
            nonlocal handled
            handled += 1

        async def consume() -> None:
            while True:
                got = await jobs.get_many("q", count=batch)
                if not got:
                    return
                for job in got:
                    noop(job)
                await jobs.ack_many(got)

        await asyncio.gather(*(consume() for _ in range(workers)))
        drained = time.perf_counter()
        assert handled == n, (handled, n)
    return added - start, drained - added


async def disquette_latency(url: str, samples: int, python: str) -> list[float]:
    store_url = f"{url}?schema=latency"
    latencies: list[float] = []
    async with disquette.connect_async(store_url) as client:
        await client.qlen("q")
        jobs = client.timeout(1.0)

        async def consume() -> None:
            while len(latencies) < samples:
                for job in await jobs.get_many("q", count=10):
                    latencies.append(time.time() - float(job.body))
                    await jobs.ack(job)

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0.3)  # the consumer is blocked, its LISTEN connection up
        await run_producer(python, "disquette", store_url, samples)
        await asyncio.wait_for(consumer, 60)
    return latencies


def produce_disquette(url: str, count: int, pause: float) -> None:
    with disquette.connect(url) as jobs:
        jobs.qlen("q")
        for _ in range(count):
            time.sleep(pause)
            jobs.add(repr(time.time()), "q")


# -- pgqueuer ---------------------------------------------------------------------------


async def pgqueuer_install(url: str) -> None:
    import asyncpg
    from pgqueuer import Queries
    from pgqueuer.db import AsyncpgDriver

    conn = await asyncpg.connect(url)
    await Queries(AsyncpgDriver(conn)).install()
    await conn.close()


async def pgqueuer_throughput(
    url: str, n: int, chunk: int, workers: int, batch: int
) -> tuple[float, float]:
    import asyncpg
    from pgqueuer import Queries, QueueManager
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.types import QueueExecutionMode

    await pgqueuer_install(url)
    conn = await asyncpg.connect(url)
    queries = Queries(AsyncpgDriver(conn))
    start = time.perf_counter()
    for offset in range(0, n, chunk):
        size = min(chunk, n - offset)
        await queries.enqueue(["noop"] * size, [b""] * size, [0] * size)
    added = time.perf_counter()
    await conn.close()
    handled = 0
    managers = []
    for _ in range(workers):
        manager = QueueManager(Queries(AsyncpgDriver(await asyncpg.connect(url))))

        @manager.entrypoint("noop")
        async def noop(job: Any) -> None:
            nonlocal handled
            handled += 1

        managers.append(manager)
    began = time.perf_counter()
    await asyncio.gather(
        *(
            manager.run(batch_size=batch, mode=QueueExecutionMode.drain,
                        dequeue_timeout=timedelta(seconds=0.5))
            for manager in managers
        )
    )  # fmt: skip
    drained = time.perf_counter()
    assert handled == n, (handled, n)
    return added - start, drained - began


async def pgqueuer_latency(url: str, samples: int, python: str) -> list[float]:
    import asyncpg
    from pgqueuer import Queries, QueueManager
    from pgqueuer.db import AsyncpgDriver

    await pgqueuer_install(url)
    latencies: list[float] = []
    manager = QueueManager(Queries(AsyncpgDriver(await asyncpg.connect(url))))

    @manager.entrypoint("noop")
    async def noop(job: Any) -> None:
        latencies.append(time.time() - float(job.payload))
        if len(latencies) >= samples:
            manager.shutdown.set()

    runner = asyncio.create_task(manager.run(batch_size=10, dequeue_timeout=timedelta(seconds=30)))
    await asyncio.sleep(0.5)
    await run_producer(python, "pgqueuer", url, samples)
    await asyncio.wait_for(runner, 60)
    return latencies


def produce_pgqueuer(url: str, count: int, pause: float) -> None:
    async def main() -> None:
        import asyncpg
        from pgqueuer import Queries
        from pgqueuer.db import AsyncpgDriver

        conn = await asyncpg.connect(url)
        queries = Queries(AsyncpgDriver(conn))
        for _ in range(count):
            await asyncio.sleep(pause)
            await queries.enqueue("noop", repr(time.time()).encode(), 0)
        await conn.close()

    asyncio.run(main())


# -- procrastinate ----------------------------------------------------------------------


def procrastinate_app(url: str, on_job: Callable[[str], None]) -> Any:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    @app.task(name="noop", queue="q")
    async def noop(sent: str = "") -> None:
        on_job(sent)

    return app


async def procrastinate_throughput(
    url: str, n: int, chunk: int, workers: int, batch: int
) -> tuple[float, float]:
    handled = 0

    def count(_: str) -> None:
        nonlocal handled
        handled += 1

    app = procrastinate_app(url, count)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        task = app.tasks["noop"]
        start = time.perf_counter()
        for offset in range(0, n, chunk):
            await task.batch_defer_async(*({} for _ in range(min(chunk, n - offset))))
        added = time.perf_counter()
        await app.run_worker_async(
            queues=["q"], concurrency=workers, wait=False, install_signal_handlers=False,
            fetch_job_polling_interval=0.1, delete_jobs="never",
        )  # fmt: skip
        drained = time.perf_counter()
    assert handled == n, (handled, n)
    return added - start, drained - added


async def procrastinate_latency(url: str, samples: int, python: str) -> list[float]:
    latencies: list[float] = []
    done = asyncio.Event()

    def note(sent: str) -> None:
        latencies.append(time.time() - float(sent))
        if len(latencies) >= samples:
            done.set()

    app = procrastinate_app(url, note)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        worker = asyncio.create_task(
            app.run_worker_async(queues=["q"], concurrency=1, install_signal_handlers=False)
        )
        await asyncio.sleep(0.5)
        await run_producer(python, "procrastinate", url, samples)
        await asyncio.wait_for(done.wait(), 60)
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
    return latencies


def produce_procrastinate(url: str, count: int, pause: float) -> None:
    app = procrastinate_app(url, lambda _: None)
    with app.open():
        for _ in range(count):
            time.sleep(pause)
            app.tasks["noop"].defer(sent=repr(time.time()))


# -- running ----------------------------------------------------------------------------

PRODUCERS = {
    "disquette": produce_disquette,
    "pgqueuer": produce_pgqueuer,
    "procrastinate": produce_procrastinate,
}


async def run_producer(python: str, system: str, url: str, count: int) -> None:
    process = await asyncio.create_subprocess_exec(
        python, __file__, "--produce", system, url, str(count)
    )
    assert await process.wait() == 0


async def measure(
    admin: str,
    system: str,
    throughput: Callable[..., Awaitable[tuple[float, float]]],
    latency: Callable[..., Awaitable[list[float]]],
    args: argparse.Namespace,
    n: int,
) -> dict[str, float]:
    name = f"bench_{system}"
    try:
        url = fresh_database(admin, name)
        add, drain = await throughput(url, n, args.chunk, args.workers, args.batch)
        url = fresh_database(admin, name)
        lat = await latency(url, args.samples, sys.executable)
    finally:
        drop_database(admin, name)
    return {
        "jobs": n,
        "add/s": n / add,
        "drain/s": n / drain,
        "end-to-end/s": n / (add + drain),
        "p50 ms": statistics.median(lat) * 1000,
        "p99 ms": percentile(lat, 0.99) * 1000,
    }


async def churn(admin: str, n: int, chunk: int, batch: int, vacuum_every: int) -> None:
    """Push ``n`` jobs through one queue (add a chunk, drain it, repeat) and report the
    jobs table's size and dead rows along the way: it should track the backlog, not n."""
    url = fresh_database(admin, "bench_churn")
    try:
        store_url = f"{url}?schema=churn&vacuum_every={vacuum_every}"
        async with disquette.connect_async(store_url) as client:
            jobs = client.timeout(0)
            await jobs.qlen("q")
            raw = await psycopg.AsyncConnection.connect(url, autocommit=True)
            size_sql = (
                "SELECT pg_relation_size('churn.jobs'), pg_total_relation_size('churn.jobs'), "
                "n_live_tup, n_dead_tup FROM pg_stat_user_tables "
                "WHERE schemaname = 'churn' AND relname = 'jobs'"
            )
            start = time.perf_counter()
            moved = 0
            report_every = max(n // 10, chunk)
            print(f"{'jobs through':>12} {'heap MB':>8} {'heap+idx MB':>11} {'jobs/s':>8}")
            while moved < n:
                await jobs.result_ttl(0).add_many([b""] * chunk, "q")
                left = chunk
                while left:
                    got = await jobs.get_many("q", count=min(batch, left))
                    await jobs.ack_many(got)
                    left -= len(got)
                moved += chunk
                if moved % report_every == 0 or moved >= n:
                    row = await (await raw.execute(size_sql)).fetchone()
                    assert row is not None
                    rate = moved / (time.perf_counter() - start)
                    print(f"{moved:>12,} {row[0] / 1e6:>8.1f} {row[1] / 1e6:>11.1f} {rate:>8,.0f}")
            await raw.close()
    finally:
        drop_database(admin, "bench_churn")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--url", default=os.environ.get("DISQUETTE_BENCH_POSTGRES_URL", DEFAULT_URL)
    )
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--procrastinate-jobs", type=int, default=2_000)
    parser.add_argument("--chunk", type=int, default=1000, help="jobs per bulk add call")
    parser.add_argument("--workers", type=int, default=5, help="concurrent consumers")
    parser.add_argument("--batch", type=int, default=100, help="jobs per claim")
    parser.add_argument("--samples", type=int, default=300, help="latency samples")
    parser.add_argument("--repeat", type=int, default=2, help="rounds; best figures kept")
    parser.add_argument("--only", choices=sorted(PRODUCERS), action="append")
    parser.add_argument("--churn", type=int, default=0, help="run the bloat measurement")
    parser.add_argument("--vacuum-every", type=int, default=50_000)
    parser.add_argument(
        "--produce", nargs=3, metavar=("SYSTEM", "URL", "COUNT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.produce:
        system, url, count = args.produce
        PRODUCERS[system](url, int(count), 0.01)
        return
    if args.churn:
        asyncio.run(churn(args.url, args.churn, 1000, args.batch, args.vacuum_every))
        return
    systems = {
        "disquette": (disquette_throughput, disquette_latency, args.jobs),
        "pgqueuer": (pgqueuer_throughput, pgqueuer_latency, args.jobs),
        "procrastinate": (procrastinate_throughput, procrastinate_latency, args.procrastinate_jobs),
    }
    print(
        f"best of {args.repeat} rounds; {args.jobs} no-op jobs "
        f"({args.procrastinate_jobs} for procrastinate), chunks of "
        f"{args.chunk}, {args.workers} consumers x batches of {args.batch}, "
        f"{args.samples} latency samples\n"
    )
    results: dict[str, dict[str, float]] = {}
    chosen = [system for system in systems if not args.only or system in args.only]
    for round_ in range(args.repeat):
        # Alternate the order, so that a burst of load on the shared machine does not
        # always land on the same system; keep each system's best figures.
        for system in chosen if round_ % 2 == 0 else chosen[::-1]:
            throughput, latency, n = systems[system]
            row = asyncio.run(measure(args.url, system, throughput, latency, args, n))
            print(f"  {system:14} " + "  ".join(f"{k} {v:,.1f}" for k, v in row.items()))
            best = results.setdefault(system, row)
            for key, value in row.items():
                better = min if key.endswith("ms") else max
                best[key] = better(best[key], value)
    columns = ["add/s", "drain/s", "end-to-end/s", "p50 ms", "p99 ms"]
    print(f"\n{'':14}" + "".join(f"{c:>14}" for c in columns))
    for system, row in results.items():
        print(f"{system:14}" + "".join(f"{row[c]:>14,.1f}" for c in columns))
    base = results.get("disquette")
    if base:
        for peer in ("pgqueuer", "procrastinate"):
            if peer in results:
                ratios = [
                    base[c] / results[peer][c]
                    if not c.endswith("ms")
                    else results[peer][c] / base[c]
                    for c in columns
                ]
                print(f"{'x ' + peer:14}" + "".join(f"{r:>13.2f}x" for r in ratios))
        print(
            "(ratios: disquette's rate over the peer's; for latency, the peer's over disquette's)"
        )


if __name__ == "__main__":
    main()
