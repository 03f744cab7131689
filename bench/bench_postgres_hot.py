#!/usr/bin/env python3
"""The PostgreSQL store's hot paths (issue 12), this build against others in the same run.

    PYTHONPATH=src .venv/bin/python bench/bench_postgres_hot.py [--baseline-src /work/main/src]
        [--only acks|wait|burst] [--rounds 3] [--burst 200000] [--waiting]

Builds, each in a database of its own on the same server, alternated in rounds (medians):

- ``gated``: this build (NOTIFY only for registered waiters, bounded maintenance);
- ``no-notify``: this build with the ack's NOTIFY removed (the acks' target: within 5%);
- ``before``: the code at ``--baseline-src`` (a NOTIFY per ack, maintenance in every
  claim), when given.

Workloads:

- acks: ``--ackers`` processes each claim ``--per-process`` jobs, then ack them one by one,
  all at once; acks/s = all acks / (last end - first start), and the CPU time of the
  database's PostgreSQL backends per ack (``/proc``; what the machine's load moves
  least: with nobody waiting no NOTIFY is sent, so the gate's cost is CPU). Nobody waits
  for a result, unless ``--waiting``: then one more process waits (``wait``) for a job
  nobody acks all along, as a web process waiting for a result would (the code before
  issue 12's per-job waits sent a NOTIFY per ack as soon as any process waited).
- wait: one client waits for a job, another client (its own pool and listener, so only
  the NOTIFY can wake the first: ``poll_interval=60``) acks it; latency from just before
  the ack to ``wait`` returning, p50/p90/p99 over ``--samples``.
- burst: ``--burst`` jobs scheduled to come due at one moment, ``--consumers`` processes
  claiming (10 at a time) and acking from before it until all are done or for
  ``--burst-seconds``; claim latency p50/p99/max over every claim from the moment they
  come due.
- prune: ``--burst`` expired done rows pruned by this build's bounded batches: rows/s.

The machine is shared and has 2 cores: ratios within a run are what to read.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
HERE = Path(__file__).resolve()
SRC = HERE.parent.parent / "src"


def database_url(admin_url: str, name: str) -> str:
    head, _, tail = admin_url.partition("://")
    return f"{head}://{tail.partition('/')[0]}/{name}"


def fresh_database(admin_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return database_url(admin_url, name)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# -- roles, run in subprocesses with a build's PYTHONPATH ---------------------------------


def patch_build(client: object, build: str) -> None:
    """``no-notify``: this build's ack without its NOTIFY (the statement text, nothing else)."""
    if build != "no-notify":
        return
    store: object = client.store  # type: ignore[attr-defined]
    q = dict(store._q)  # type: ignore[attr-defined]
    gate = q["ack"].split("sent AS (SELECT ", 1)[1].split(" WHERE EXISTS", 1)[0]
    q["ack"] = q["ack"].replace(gate, "NULL")
    store._q = q  # type: ignore[attr-defined]


def role_acker(url: str, build: str, count: int) -> None:
    """Claim ``count`` jobs, say ready, wait for "go", ack them one by one."""
    import disquette

    with disquette.connect(url) as jobs:
        patch_build(jobs, build)
        held = []
        while len(held) < count:
            got = jobs.timeout(0).get_many("q", count=min(100, count - len(held)))
            if not got:
                raise SystemExit("not enough jobs")
            held.extend(got)
        print("ready", flush=True)
        sys.stdin.readline()
        start = time.time()
        for job in held:
            jobs.ack(job)
        print(json.dumps([start, time.time()]), flush=True)
        sys.stdin.readline()  # connected until the orchestrator read its backends' CPU


def role_idle_waiter(url: str) -> None:
    """Wait for a job nobody acks (until stdin closes); say "ready" once waiting."""
    import disquette

    with disquette.connect(f"{url}&poll_interval=60") as jobs:
        job_id = jobs.add("never acked", "idle")
        thread = threading.Thread(target=lambda: jobs.timeout(600).wait(job_id), daemon=True)
        thread.start()
        time.sleep(1.0)  # the listener is up and the wait registered
        print("ready", flush=True)
        sys.stdin.readline()


def role_wait(url: str, build: str, samples: int) -> None:
    """Wait latency: one client waits, another acks; print the latencies (seconds)."""
    import disquette

    latencies: list[float] = []
    with (
        disquette.connect(f"{url}&poll_interval=60") as waiter,
        disquette.connect(url) as acker,
    ):
        patch_build(acker, build)
        for index in range(samples + 5):
            job_id = acker.add("x", "w")
            job = acker.timeout(0).get("w")
            finished: list[float] = []

            def wait(job_id: str = job_id, finished: list[float] = finished) -> None:
                waiter.timeout(30).wait(job_id)
                finished.append(time.perf_counter())

            thread = threading.Thread(target=wait)
            thread.start()
            time.sleep(0.02)  # the waiter has read the job and blocks
            start = time.perf_counter()
            acker.ack(job, "r")
            thread.join()
            if index >= 5:  # the first waits start the listener
                latencies.append(finished[0] - start)
    print(json.dumps(latencies), flush=True)


def role_consumer(url: str, due_at: float, stop_at: float) -> None:
    """Claim 10 at a time and ack until nothing is left after ``due_at``, or ``stop_at``;
    print the claim latencies (seconds) of claims started after ``due_at``, and when it
    last got a job."""
    import disquette

    latencies: list[float] = []
    last = due_at
    with disquette.connect(url) as jobs:
        quick = jobs.timeout(0)
        quick.qlen("q")
        while time.time() < stop_at:
            start = time.time()
            got = quick.get_many("q", count=10)
            elapsed = time.time() - start
            if start >= due_at:
                latencies.append(elapsed)
            if got:
                last = time.time()
                quick.ack_many(got)
                continue
            if start > due_at + 1 and not _left(quick):
                break
            time.sleep(0.005)
    print(json.dumps({"latencies": latencies, "last": last}), flush=True)


def _left(jobs: object) -> bool:
    """Whether jobs are still scheduled or queued."""
    stats = jobs.stats()  # type: ignore[attr-defined]
    return any(row.scheduled or row.queued for row in stats.rows)


def role_fill(url: str, count: int, delay: float) -> None:
    """Add ``count`` jobs coming due in ``delay`` seconds; print when they come due."""
    import disquette

    with disquette.connect(url) as jobs:
        later = jobs.delay(delay + 3600)  # added well ahead, then all made due at once
        for offset in range(0, count, 5000):
            later.add_many([b""] * min(5000, count - offset), "q")
    print("filled", flush=True)


# -- the orchestrator ---------------------------------------------------------------------


def spawn(src: str, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=src)
    return subprocess.Popen(
        [sys.executable, str(HERE), "--role", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def store_url(db_url: str, schema: str) -> str:
    return f"{db_url}?schema={schema}&pool_max=4"


def prepare(src: str, url: str, code: str) -> None:
    env = dict(os.environ, PYTHONPATH=src)
    subprocess.run([sys.executable, "-c", code, url], check=True, env=env)


def backends_cpu(db_url: str) -> float:
    """The CPU seconds (user + system, from ``/proc``) of every PostgreSQL backend
    connected to ``db_url``'s database now: the server's side of the work, which the
    machine's load moves much less than the rates (PostgreSQL runs on this machine)."""
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        pids = [
            pid
            for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ]
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile, or PostgreSQL is on another machine
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def acks_round(
    src: str, build: str, db_url: str, ackers: int, per: int, tag: str, waiting: bool
) -> tuple[float, float]:
    """acks/s, and the backends' CPU microseconds per ack."""
    url = store_url(db_url, f"acks_{tag}")
    prepare(
        src,
        url,
        "import sys, disquette\n"
        "with disquette.connect(sys.argv[1]) as j:\n"
        "    j.flush()\n"
        f"    [j.add_many([b''] * 1000, 'q') for _ in range({ackers * per // 1000 + 1})]\n",
    )
    waiter = spawn(src, "idle-waiter", url) if waiting else None
    if waiter is not None:
        assert waiter.stdout is not None
        assert waiter.stdout.readline().strip() == "ready"
    procs = [spawn(src, "acker", url, build, str(per)) for _ in range(ackers)]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    cpu = backends_cpu(db_url)
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    spans = []
    for proc in procs:
        assert proc.stdout is not None
        spans.append(json.loads(proc.stdout.readline()))
    cpu = backends_cpu(db_url) - cpu
    for proc in procs:
        proc.communicate("bye\n")
    if waiter is not None:
        waiter.communicate("done\n")
    start = min(span[0] for span in spans)
    end = max(span[1] for span in spans)
    return ackers * per / (end - start), cpu / (ackers * per) * 1e6


def wait_round(src: str, build: str, db_url: str, samples: int, tag: str) -> list[float]:
    url = store_url(db_url, f"wait_{tag}")
    proc = spawn(src, "wait", url, build, str(samples))
    out, _ = proc.communicate()
    return list(json.loads(out.strip().splitlines()[-1]))


def burst_round(
    src: str, db_url: str, count: int, consumers: int, seconds: float, tag: str
) -> tuple[list[float], float]:
    """The claim latencies while ``count`` jobs come due, and the seconds from their due
    time to the last job claimed (how fast the burst was promoted and drained)."""
    url = store_url(db_url, f"burst_{tag}")
    prepare(src, url, "import sys, disquette\ndisquette.connect(sys.argv[1]).flush()")
    fill = spawn(src, "fill", url, str(count), "0")
    fill.communicate()
    # Every job comes due at one moment: one UPDATE of their run_at, made ahead of it.
    import psycopg

    base, _, query = url.partition("?")
    schema = query.split("schema=")[1].split("&")[0]
    due_at = time.time() + 5 + count / 25_000
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"UPDATE {schema}.jobs SET run_at = %s WHERE state = 0", [due_at])
        conn.execute(f"VACUUM ANALYZE {schema}.jobs")
    if time.time() > due_at - 1:
        print("  (the jobs came due before the consumers started)", flush=True)
    procs = [
        spawn(src, "consumer", url, repr(due_at), repr(due_at + seconds)) for _ in range(consumers)
    ]
    latencies: list[float] = []
    last = due_at
    for proc in procs:
        out, _ = proc.communicate()
        report = json.loads(out.strip().splitlines()[-1])
        latencies.extend(report["latencies"])
        last = max(last, report["last"])
    with psycopg.connect(base, autocommit=True) as conn:
        row = conn.execute(f"SELECT count(*) FROM {schema}.jobs WHERE state = 0").fetchone()
    print(f"  ({row[0] if row else 0:,} still scheduled when the consumers stopped)", flush=True)
    return latencies, last - due_at


def bench_prune(args: argparse.Namespace, db_url: str) -> None:
    """Done rows pruned by prune_done's bounded batches (this build): rows/s and the
    longest call, for ``--burst`` expired rows (how far pruning outpaces the acks)."""
    import psycopg

    url = store_url(db_url, "prune")
    prepare(str(SRC), url, "import sys, disquette\ndisquette.connect(sys.argv[1]).flush()")
    base, _, _ = url.partition("?")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO prune.done (id, queue, body, encoding, priority, created_at, run_at,"
            " retry_after, expires_at, max_attempts, result_ttl, attempts, nacks,"
            " additional_deliveries, error_count, result_encoding, finished_at, seq)"
            " SELECT 'D-' || n, 'q', '', 0, 100, 0, 0, 300, n, 25, 3600, 1, 0, 0, 0, 0, 0, n"
            " FROM generate_series(1, %s) AS n",
            [args.burst],
        )
        conn.execute("VACUUM ANALYZE prune.done")
        calls: list[float] = []
        start = time.perf_counter()
        while True:
            began = time.perf_counter()
            row = conn.execute("SELECT prune.prune_done(1e12, 10000)").fetchone()
            calls.append(time.perf_counter() - began)
            if row is None or row[0] == 0:
                break
        elapsed = time.perf_counter() - start
        # A DELETE only marks the rows: VACUUM (autovacuum) does the rest of the work.
        began = time.perf_counter()
        conn.execute("VACUUM prune.done")
        vacuum = time.perf_counter() - began
    print(
        f"\nprune of {args.burst:,} done rows, 10,000 per call: {args.burst / elapsed:,.0f} rows/s,"
        f" longest call {ms(max(calls))}; then VACUUM {ms(vacuum)}"
        f" ({args.burst / vacuum:,.0f} rows/s)"
    )


def ms(value: float) -> str:
    return f"{value * 1000:.2f} ms"


def run_role(role: list[str]) -> None:
    name, *rest = role
    if name == "acker":
        role_acker(rest[0], rest[1], int(rest[2]))
    elif name == "idle-waiter":
        role_idle_waiter(rest[0])
    elif name == "wait":
        role_wait(rest[0], rest[1], int(rest[2]))
    elif name == "consumer":
        role_consumer(rest[0], float(rest[1]), float(rest[2]))
    elif name == "fill":
        role_fill(rest[0], int(rest[1]), float(rest[2]))


def bench_acks(args: argparse.Namespace, builds: dict[str, str], dbs: dict[str, str]) -> None:
    rates: dict[str, list[float]] = {build: [] for build in builds}
    cpus: dict[str, list[float]] = {build: [] for build in builds}
    names = list(builds)
    for index in range(args.rounds):
        # Each round starts with another build, so that no build always runs first.
        for build in names[index % len(names) :] + names[: index % len(names)]:
            src = builds[build]
            rate, cpu = acks_round(
                src, build, dbs[build], args.ackers, args.per_process, str(index), args.waiting
            )
            rates[build].append(rate)
            cpus[build].append(cpu)
            print(f"acks round {index} {build}: {rate:,.0f}/s, {cpu:.1f} us CPU", flush=True)
    waiting = ", a process waiting for another job" if args.waiting else ""
    print(f"\n{args.ackers} processes acking one by one{waiting} (median of {args.rounds}):")
    print("  (CPU: PostgreSQL's backends, per ack; its ratio is the no-notify build's / this)")
    reference = statistics.median(rates["no-notify"])
    cpu_reference = statistics.median(cpus["no-notify"])
    for build, values in rates.items():
        median = statistics.median(values)
        cpu = statistics.median(cpus[build])
        print(
            f"  {build:10} {median:9,.0f} acks/s  {median / reference:.3f}x no-notify"
            f"  {cpu:6.1f} us CPU  {cpu_reference / cpu:.3f}x"
            f"  (rounds: {', '.join(f'{value:,.0f}' for value in values)})"
        )


def bench_wait(args: argparse.Namespace, builds: dict[str, str], dbs: dict[str, str]) -> None:
    waits: dict[str, list[float]] = {build: [] for build in builds if build != "no-notify"}
    names = list(waits)
    for index in range(args.rounds):
        for build in names[index % len(names) :] + names[: index % len(names)]:
            waits[build] += wait_round(builds[build], build, dbs[build], args.samples, str(index))
    print(f"\nwait() latency, ack in another client ({len(waits['gated'])} each):")
    for build, values in waits.items():
        print(
            f"  {build:10} p50 {ms(percentile(values, 0.5))}  p90 "
            f"{ms(percentile(values, 0.9))}  p99 {ms(percentile(values, 0.99))}"
        )


def bench_burst(args: argparse.Namespace, builds: dict[str, str], dbs: dict[str, str]) -> None:
    print(f"\n{args.burst:,} scheduled jobs due at once, {args.consumers} consumers:")
    names = [build for build in builds if build != "no-notify"]
    for round_ in range(args.burst_rounds):
        for build in names[round_ % 2 :] + names[: round_ % 2]:  # alternate who goes first
            claims, drained = burst_round(
                builds[build], dbs[build], args.burst, args.consumers, args.burst_seconds, "b"
            )
            print(
                f"  {build:10} claims {len(claims):,}  p50 {ms(percentile(claims, 0.5))}  p99 "
                f"{ms(percentile(claims, 0.99))}  max {ms(max(claims))}  last job "
                f"{drained:.1f} s after due  (load {os.getloadavg()[0]:.1f})",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default_url = os.environ.get("DISQUETTE_BENCH_POSTGRES_URL", DEFAULT_URL)
    parser.add_argument("--url", default=default_url)
    parser.add_argument("--baseline-src", help="src folder of the build to compare with")
    parser.add_argument("--only", choices=["acks", "wait", "burst", "prune"], action="append")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ackers", type=int, default=8)
    parser.add_argument("--per-process", type=int, default=2000)
    parser.add_argument("--waiting", action="store_true", help="acks: a process waits meanwhile")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--burst", type=int, default=200_000)
    parser.add_argument("--consumers", type=int, default=4)
    parser.add_argument(
        "--burst-seconds", type=float, default=60, help="claims measured after the jobs come due"
    )
    parser.add_argument("--burst-rounds", type=int, default=1)
    parser.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        run_role(args.role)
        return
    builds = {"gated": str(SRC), "no-notify": str(SRC)}
    if args.baseline_src:
        builds["before"] = args.baseline_src
    dbs = {build: fresh_database(args.url, f"dq_hot_{build.replace('-', '_')}") for build in builds}
    only = set(args.only or ["acks", "wait", "burst", "prune"])
    if "acks" in only:
        bench_acks(args, builds, dbs)
    if "wait" in only:
        bench_wait(args, builds, dbs)
    if "burst" in only:
        bench_burst(args, builds, dbs)
    if "prune" in only:
        bench_prune(args, dbs["gated"])


if __name__ == "__main__":
    main()
