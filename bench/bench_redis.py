#!/usr/bin/env python3
"""disquette's Redis store next to RQ, Dramatiq, arq, SAQ, Celery, taskiq and Huey: one
private Redis, same run, same workload.

    bash bench/setup_redis_peers.sh       # once: bench/.venv-redis with the peers
    bench/.venv-redis/bin/python bench/bench_redis.py [--jobs 20000] [--workers 2]
    bench/.venv-redis/bin/python bench/bench_redis.py --only disquette,huey
    bench/.venv-redis/bin/python bench/bench_redis.py --memory 1000000

Workloads, each system alone on a private ``redis-server`` (flushed between systems):

- enqueue: N no-op jobs with the system's fastest producer API (disquette ``add_many`` in
  chunks of 1000, RQ ``enqueue_many``, the async ones in concurrent chunks, the others one
  call per job);
- drain: ``--workers`` worker processes (each with the system's usual concurrency: RQ
  ``SimpleWorker``, Dramatiq 8 threads, arq/SAQ/taskiq their async defaults, Celery solo
  pool, Huey 4 threads, disquette ``get_many(100)`` + a no-op call per job + ``ack_many``)
  run until every job's handler ran; jobs/s from the workers' start;
- end to end: N / (enqueue time + drain time);
- add-to-start latency: one idle worker process, the producer adding one job at a time
  (5 ms apart) carrying the wall-clock time of the add; the handler notes when it starts.
  p50 / p99 over ``--samples`` jobs.
- one-by-one add: ``--samples`` x 10 jobs, one producer call each (disquette ``add``,
  Huey's task call...), no worker running; with it, per add, the producer's CPU time
  (``cpu us``: its Python and its syscalls, less sensitive to other load than the rate)
  and Redis's (``redis us``: the ``usec`` of ``INFO commandstats``, scripts' only when
  scripts ran, as their nested commands are counted inside them too);
- herd (``--idle N``): N idle worker processes, ``--samples`` jobs added one at a time
  (each waited for): Redis commands and script calls (``EVALSHA``/``EVAL``, from
  ``INFO commandstats``) per add. For disquette a handled job costs its add, one claim,
  its ack and the next get's first claim: 4 scripts; more means idle workers woke for it.

``--burst N`` (disquette only, with ``--baseline`` the old build too): N jobs come due at
once (added by a producer whose clock is an hour behind), then ``--workers`` workers drain
them; prints the longest Redis command meanwhile (``SLOWLOG``, commands over 10 ms) and
how many took over 50 ms.

``--baseline SRC`` adds ``disquette@base``: the same workload with disquette imported
from ``SRC`` (another checkout's ``src``, e.g. the main branch), and ``--rounds R`` runs
the systems R times in alternation and prints the medians: before/after in one run.

Handlers of every system do the same thing: count the job in shared memory and, when the
job carries a send time, note the latency. disquette keeps done jobs for an hour (its
default ``result_ttl``), like RQ, arq and SAQ keep results; Dramatiq, Celery, taskiq and
Huey are run without a result backend.

``--memory N`` adds N queued no-op jobs (16-byte body) to disquette on an empty private
Redis and prints ``used_memory`` per job.

The machine is shared and has 2 cores, Redis included: figures are indicative, ratios
(disquette / peer, same run) are what to read.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

QUEUE = "bench"
LATENCY_GAP = 0.005
_fork = multiprocessing.get_context("fork")

# -- shared counters (set before the worker processes fork) ----------------------------

COUNT: Any = None
LATENCIES: Any = None


def record(sent: float) -> None:
    """What every handler does: count the job, and note its add-to-start latency."""
    started = time.time()
    with COUNT.get_lock():
        index = COUNT.value
        COUNT.value = index + 1
    if sent and index < len(LATENCIES):
        LATENCIES[index] = started - sent


def wait_count(target: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while COUNT.value < target:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


# -- the systems ---------------------------------------------------------------------------


class System:
    """One queue library: how to enqueue, how a worker process runs."""

    name = ""

    def __init__(self, url: str) -> None:
        self.url = url

    def enqueue(self, n: int) -> None:
        raise NotImplementedError

    def send(self, sent: float) -> None:
        raise NotImplementedError

    def work(self) -> None:
        """Run a worker until killed (in a forked process)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the producer's connections."""

    def add_one(self, n: int) -> None:
        """N jobs, one producer call each."""
        for _ in range(n):
            self.send(0.0)


class Disquette(System):
    name = "disquette"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        import disquette

        self.store_url = f"{url}?prefix=bench"
        self.client = disquette.connect(self.store_url)

    def enqueue(self, n: int) -> None:
        for start in range(0, n, 1000):
            self.client.add_many([0.0] * min(1000, n - start), QUEUE)

    def send(self, sent: float) -> None:
        self.client.add(sent, QUEUE)

    def work(self) -> None:
        import disquette

        with disquette.connect(self.store_url) as client:
            jobs = client.timeout(None)
            while True:
                batch = jobs.get_many(QUEUE, count=100)
                for job in batch:
                    record(job.body)
                jobs.ack_many(batch)

    def close(self) -> None:
        self.client.close()


def rq_noop(sent: float) -> None:
    record(sent)


# RQ refuses functions of __main__: this script also answers to its file's module name.
sys.modules.setdefault("bench_redis", sys.modules[__name__])
rq_noop.__module__ = "bench_redis"


class RQ(System):
    name = "rq"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        import redis
        from rq import Queue

        self.redis = redis.Redis.from_url(url)
        self.queue = Queue(QUEUE, connection=self.redis)

    def enqueue(self, n: int) -> None:
        from rq import Queue

        for start in range(0, n, 1000):
            data = [Queue.prepare_data(rq_noop, (0.0,)) for _ in range(min(1000, n - start))]
            self.queue.enqueue_many(data)

    def send(self, sent: float) -> None:
        self.queue.enqueue(rq_noop, sent)

    def work(self) -> None:
        import redis
        from rq import Queue, SimpleWorker

        connection = redis.Redis.from_url(self.url)
        worker = SimpleWorker([Queue(QUEUE, connection=connection)], connection=connection)
        worker.work(logging_level="ERROR")


def _dramatiq(url: str) -> Any:
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=url)
    dramatiq.set_broker(broker)

    @dramatiq.actor(queue_name=QUEUE, max_retries=0)
    def dramatiq_noop(sent: float) -> None:
        record(sent)

    return broker, dramatiq_noop


class Dramatiq(System):
    name = "dramatiq"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.broker, self.actor = _dramatiq(url)

    def enqueue(self, n: int) -> None:
        for _ in range(n):
            self.actor.send(0.0)

    def send(self, sent: float) -> None:
        self.actor.send(sent)

    def work(self) -> None:
        import dramatiq

        broker, _ = _dramatiq(self.url)
        worker = dramatiq.Worker(broker, worker_threads=8)
        worker.start()
        while True:
            time.sleep(3600)


async def arq_noop(ctx: dict[str, Any], sent: float) -> None:
    record(sent)


class Arq(System):
    name = "arq"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        from arq.connections import RedisSettings

        self.settings = RedisSettings.from_dsn(url)
        self.loop = asyncio.new_event_loop()
        self.pool = self.loop.run_until_complete(self._pool())

    async def _pool(self) -> Any:
        from arq import create_pool

        return await create_pool(self.settings)

    def enqueue(self, n: int) -> None:
        async def go() -> None:
            for start in range(0, n, 100):
                count = min(100, n - start)
                await asyncio.gather(
                    *(self.pool.enqueue_job("arq_noop", 0.0) for _ in range(count))
                )

        self.loop.run_until_complete(go())

    def send(self, sent: float) -> None:
        self.loop.run_until_complete(self.pool.enqueue_job("arq_noop", sent))

    def work(self) -> None:
        from arq.worker import Worker, func

        Worker(
            functions=[func(arq_noop, name="arq_noop")],
            redis_settings=self.settings,
            handle_signals=False,
            poll_delay=0.005,  # arq polls (default every 0.5 s): its own knob, turned down
        ).run()

    def close(self) -> None:
        self.loop.run_until_complete(self.pool.aclose())


async def saq_noop(ctx: dict[str, Any], *, sent: float) -> None:
    record(sent)


class Saq(System):
    name = "saq"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        from saq import Queue

        self.loop = asyncio.new_event_loop()
        self.queue = Queue.from_url(url, name=QUEUE)
        self.loop.run_until_complete(self.queue.connect())

    def enqueue(self, n: int) -> None:
        async def go() -> None:
            for start in range(0, n, 100):
                count = min(100, n - start)
                await asyncio.gather(
                    *(self.queue.enqueue("saq_noop", sent=0.0) for _ in range(count))
                )

        self.loop.run_until_complete(go())

    def send(self, sent: float) -> None:
        self.loop.run_until_complete(self.queue.enqueue("saq_noop", sent=sent))

    def work(self) -> None:
        from saq import Queue, Worker

        async def go() -> None:
            queue = Queue.from_url(self.url, name=QUEUE)
            await Worker(queue, functions=[("saq_noop", saq_noop)]).start()

        asyncio.run(go())


def _celery(url: str) -> Any:
    from celery import Celery

    app = Celery("bench", broker=url)
    app.conf.task_default_queue = QUEUE
    app.conf.worker_hijack_root_logger = False

    @app.task(name="celery_noop", ignore_result=True)
    def celery_noop(sent: float) -> None:
        record(sent)

    return app, celery_noop


class CeleryPeer(System):
    name = "celery"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.app, self.task = _celery(url)

    def enqueue(self, n: int) -> None:
        for _ in range(n):
            self.task.apply_async((0.0,))

    def send(self, sent: float) -> None:
        self.task.apply_async((sent,))

    def work(self) -> None:
        app, _ = _celery(self.url)
        app.worker_main(
            [
                "worker", "--pool=solo", "--loglevel=ERROR", "-Q", QUEUE,
                "--without-gossip", "--without-mingle", "--without-heartbeat",
            ]
        )  # fmt: skip


def _taskiq(url: str) -> Any:
    from taskiq_redis import ListQueueBroker

    broker = ListQueueBroker(url, queue_name=QUEUE)

    @broker.task(task_name="taskiq_noop")
    async def taskiq_noop(sent: float) -> None:
        record(sent)

    return broker, taskiq_noop


class Taskiq(System):
    name = "taskiq"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.loop = asyncio.new_event_loop()
        self.broker, self.task = _taskiq(url)
        self.loop.run_until_complete(self.broker.startup())

    def enqueue(self, n: int) -> None:
        async def go() -> None:
            for start in range(0, n, 100):
                count = min(100, n - start)
                await asyncio.gather(*(self.task.kiq(0.0) for _ in range(count)))

        self.loop.run_until_complete(go())

    def send(self, sent: float) -> None:
        self.loop.run_until_complete(self.task.kiq(sent))

    def work(self) -> None:
        from taskiq.receiver import Receiver

        async def go() -> None:
            broker, _ = _taskiq(self.url)
            broker.is_worker_process = True
            await broker.startup()
            await Receiver(broker, max_async_tasks=100).listen(asyncio.Event())

        asyncio.run(go())

    def close(self) -> None:
        self.loop.run_until_complete(self.broker.shutdown())


def _huey(url: str) -> Any:
    from huey import RedisHuey

    huey = RedisHuey(QUEUE, url=url, results=False)

    @huey.task()
    def huey_noop(sent: float) -> None:
        record(sent)

    return huey, huey_noop


class Huey(System):
    name = "huey"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.huey, self.task = _huey(url)

    def enqueue(self, n: int) -> None:
        for _ in range(n):
            self.task(0.0)

    def send(self, sent: float) -> None:
        self.task(sent)

    def work(self) -> None:
        import logging

        logging.disable(logging.WARNING)
        huey, _ = _huey(self.url)
        consumer = huey.create_consumer(
            workers=4, worker_type="thread", periodic=False, initial_delay=0.001, max_delay=0.1
        )
        consumer.run()


SYSTEMS: dict[str, Callable[[str], System]] = {
    "disquette": Disquette,
    "rq": RQ,
    "dramatiq": Dramatiq,
    "arq": Arq,
    "saq": Saq,
    "celery": CeleryPeer,
    "taskiq": Taskiq,
    "huey": Huey,
}

# -- one system, in its own process -----------------------------------------------------------


def flush(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushall()


def start_workers(system: System, count: int) -> list[Any]:
    def run() -> None:
        with contextlib.suppress(KeyboardInterrupt):
            system.work()

    processes = [_fork.Process(target=run, daemon=True) for _ in range(count)]
    for process in processes:
        process.start()
    return processes


def stop_workers(processes: list[Any]) -> None:
    for process in processes:
        if process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
        process.join(10)


def measure_add_one(system: System, url: str, n: int) -> dict[str, float]:
    """One-by-one adds: the rate, and per add the producer's CPU and Redis's time."""
    import redis

    flush(url)
    system.add_one(10)  # connected, scripts loaded
    server = redis.Redis.from_url(url)
    server.config_resetstat()
    started, cpu = time.perf_counter(), time.process_time()
    system.add_one(n)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    stats = server.info("commandstats")
    scripts = [
        stats[f"cmdstat_{name}"] for name in ("evalsha", "eval") if f"cmdstat_{name}" in stats
    ]
    counted = scripts or [entry for name, entry in stats.items() if "config" not in name]
    redis_us = sum(float(entry["usec"]) for entry in counted)
    return {"add1_per_s": n / elapsed, "add1_cpu_us": cpu / n * 1e6, "add1_redis_us": redis_us / n}


def command_counts(url: str) -> tuple[int, int]:
    """Every command's calls, and the script calls, since the last CONFIG RESETSTAT."""
    import redis

    stats = redis.Redis.from_url(url).info("commandstats")
    total = sum(int(entry["calls"]) for entry in stats.values())
    scripts = sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval")
    )
    return total, scripts


def measure_herd(system: System, url: str, idle: int, samples: int) -> dict[str, float]:
    """Commands and scripts per add with ``idle`` idle workers (see the module doc)."""
    import redis

    flush(url)
    COUNT.value = 0
    processes = start_workers(system, idle)
    try:
        warm = 0
        while warm < idle * 2:
            system.send(0.0)
            warm += 1
            wait_count(warm, timeout=10)
        time.sleep(0.5)  # every worker back to waiting
        done = COUNT.value
        redis.Redis.from_url(url).config_resetstat()
        for n in range(samples):
            system.send(0.0)
            wait_count(done + n + 1, timeout=10)
            time.sleep(LATENCY_GAP)
        total, scripts = command_counts(url)
    finally:
        stop_workers(processes)
    return {"cmds_per_add": total / samples, "scripts_per_add": scripts / samples}


def run_system(
    name: str, url: str, jobs: int, workers: int, samples: int, idle: int = 0
) -> dict[str, Any]:
    global COUNT, LATENCIES
    COUNT = _fork.Value("q", 0)
    LATENCIES = _fork.Array("d", max(samples, 1), lock=False)
    result: dict[str, Any] = {"system": name}

    flush(url)
    system = SYSTEMS[name](url)
    started = time.perf_counter()
    system.enqueue(jobs)
    result["enqueue_s"] = time.perf_counter() - started
    started = time.perf_counter()
    processes = start_workers(system, workers)
    drained = wait_count(jobs, timeout=600)
    result["drain_s"] = time.perf_counter() - started
    stop_workers(processes)
    if not drained:
        result["error"] = f"drained {COUNT.value} of {jobs}"
        return result

    flush(url)
    COUNT.value = 0
    processes = start_workers(system, 1)
    try:
        # Warm up until the idle worker takes jobs, then measure.
        warm = 0
        while True:
            system.send(0.0)
            warm += 1
            if wait_count(warm, timeout=3):
                break
            if warm > 20:
                result["error"] = "the latency worker never started"
                return result
        time.sleep(0.2)
        COUNT.value = 0
        for _ in range(samples):
            done = COUNT.value
            system.send(time.time())
            wait_count(done + 1, timeout=10)
            time.sleep(LATENCY_GAP)
        latencies = sorted(LATENCIES[: min(COUNT.value, samples)])
    finally:
        stop_workers(processes)
        system.close()
    if latencies:
        result["p50_ms"] = statistics.median(latencies) * 1000
        result["p99_ms"] = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    system = SYSTEMS[name](url)
    try:
        result.update(measure_add_one(system, url, samples * 10))
        if idle:
            result.update(measure_herd(system, url, idle, samples))
    finally:
        system.close()
    return result


def run_burst(url: str, count: int, workers: int) -> dict[str, Any]:
    global COUNT, LATENCIES
    import redis

    import disquette

    COUNT = _fork.Value("q", 0)
    LATENCIES = _fork.Array("d", 1, lock=False)
    flush(url)
    server = redis.Redis.from_url(url)
    behind = disquette.ManualClock(time.time() - 3600)
    with disquette.connect(f"{url}?prefix=bench", clock=behind) as client:
        delayed = client.delay(1)
        for start in range(0, count, 1000):
            delayed.add_many([0.0] * min(1000, count - start), QUEUE)
    server.config_set("slowlog-log-slower-than", 10_000)
    server.config_set("slowlog-max-len", 10_000)
    server.slowlog_reset()
    started = time.perf_counter()
    processes = start_workers(Disquette(url), workers)
    deadline = time.monotonic() + 1800
    drained = False
    while not drained and time.monotonic() < deadline:
        drained = wait_count(count, timeout=1)
        if not any(process.is_alive() for process in processes):
            break
    elapsed = time.perf_counter() - started
    exits = [process.exitcode for process in processes]
    stop_workers(processes)
    slow = server.slowlog_get(10_000)
    longest = max((entry["duration"] for entry in slow), default=0)
    worst = max(slow, key=lambda entry: entry["duration"], default=None)
    return {
        "jobs": count,
        "drained": COUNT.value if not drained else True,
        "worker_exits": exits,
        "drain_per_s": count / elapsed,
        "longest_ms": longest / 1000,
        "over_50ms": sum(1 for entry in slow if entry["duration"] > 50_000),
        "over_10ms": len(slow),
        "worst": repr(worst["command"][:60]) if worst else "",
    }


def run_memory(url: str, count: int) -> dict[str, Any]:
    import redis

    import disquette

    flush(url)
    server = redis.Redis.from_url(url)
    with disquette.connect(f"{url}?prefix=mem") as client:
        client.add(b"0123456789abcdef", QUEUE)
        before = server.info("memory")["used_memory"]
        for start in range(0, count, 1000):
            client.add_many([b"0123456789abcdef"] * min(1000, count - start), QUEUE)
        used = server.info("memory")["used_memory"] - before
        assert client.qlen(QUEUE) == count + 1
    return {"jobs": count, "bytes_per_job": used / count, "used_memory_mb": used / 2**20}


# -- the driver ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not on PATH")
    port = free_port()
    process = subprocess.Popen(
        [
            binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(directory), "--logfile", "",
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    for _ in range(500):
        with contextlib.suppress(redis.ConnectionError):
            if redis.Redis.from_url(url).ping():
                return process, url
        time.sleep(0.01)
    process.kill()
    sys.exit("redis-server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--only", default=",".join(SYSTEMS))
    parser.add_argument("--memory", type=int, default=0, help="measure bytes per queued job")
    parser.add_argument("--idle", type=int, default=0, help="idle workers for the herd count")
    parser.add_argument("--rounds", type=int, default=1, help="alternate the systems R times")
    parser.add_argument("--baseline", help="another checkout's src: adds disquette@base")
    parser.add_argument("--burst", type=int, default=0, help="jobs coming due at once")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        if args.run == "memory":
            print(json.dumps(run_memory(args.url, args.memory)))
        elif args.run == "burst":
            print(json.dumps(run_burst(args.url, args.burst, args.workers)))
        else:
            report = run_system(
                args.run, args.url, args.jobs, args.workers, args.samples, args.idle
            )
            print(json.dumps(report))
        return

    directory = Path(tempfile.mkdtemp(prefix="bench-redis-"))
    server, url = start_redis(directory)
    try:
        if args.memory:
            report = _child("memory", url, args)
            print(
                f"{report['jobs']} queued no-op jobs: {report['bytes_per_job']:.0f} bytes each "
                f"({report['used_memory_mb']:.0f} MiB used_memory)"
            )
            return
        if args.burst:
            for name in ["disquette", BASE] if args.baseline else ["disquette"]:
                report = _child(name, url, args, run="burst")
                print(f"{name}: {report}")
            return
        names = args.only.split(",")
        if args.baseline:
            names.insert(names.index("disquette") + 1 if "disquette" in names else 0, BASE)
        rounds: list[dict[str, dict[str, Any]]] = []
        for n in range(args.rounds):
            # Every other round in reverse order: no system always runs first.
            order = names if n % 2 == 0 else names[::-1]
            rounds.append({name: _child(name, url, args) for name in order})
        results = [median_report([r[name] for r in rounds]) for name in names]
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(directory, ignore_errors=True)
    print_table(results, args)


#: The name of the baseline build's disquette in the table (``--baseline``).
BASE = "disquette@base"


def median_report(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One system's reports over the rounds: the median of each figure."""
    good = [r for r in reports if "error" not in r] or reports[:1]
    merged: dict[str, Any] = dict(good[0])
    for key, value in good[0].items():
        if isinstance(value, float) and all(key in r for r in good):
            merged[key] = statistics.median(r[key] for r in good)
    return merged


def _child(name: str, url: str, args: argparse.Namespace, run: str | None = None) -> dict[str, Any]:
    run = run or ("disquette" if name == BASE else name)
    command = [
        sys.executable, __file__, "--run", run, "--url", url, "--jobs", str(args.jobs),
        "--workers", str(args.workers), "--samples", str(args.samples),
        "--memory", str(args.memory), "--idle", str(args.idle), "--burst", str(args.burst),
    ]  # fmt: skip
    env = dict(os.environ)
    if name == BASE:
        env["PYTHONPATH"] = args.baseline
    print(f"running {name}...", file=sys.stderr, flush=True)
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"system": name, "error": (done.stderr or done.stdout)[-400:]}
    report: dict[str, Any] = json.loads(lines[-1])
    report["system"] = name
    return report


def print_table(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    n = args.jobs
    ours = next((r for r in results if r["system"] == "disquette" and "error" not in r), None)
    print(
        f"\n{n} no-op jobs, {args.workers} worker processes, {args.samples} latency samples"
        f", medians of {args.rounds} round(s)"
    )
    header = (
        f"{'system':<14} {'enqueue/s':>10} {'drain/s':>9} {'e2e/s':>8} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'add1/s':>7} {'cpu us':>7} {'redis us':>8} {'x e2e':>7} {'x drain':>8}"
        + (f" {'cmd/add':>8} {'lua/add':>8}" if args.idle else "")
    )
    print(header)
    print("-" * len(header))
    for r in results:
        if "enqueue_s" not in r or "drain_s" not in r:
            print(f"{r['system']:<14} error: {r.get('error', '?')!r}")
            continue
        e2e = n / (r["enqueue_s"] + r["drain_s"])
        drain = n / r["drain_s"]
        ratio_e2e = ratio_drain = ""
        if ours is not None and r is not ours:
            ratio_e2e = f"{n / (ours['enqueue_s'] + ours['drain_s']) / e2e:.1f}"
            ratio_drain = f"{n / ours['drain_s'] / drain:.1f}"
        p50 = f"{r['p50_ms']:.2f}" if "p50_ms" in r else "-"
        p99 = f"{r['p99_ms']:.2f}" if "p99_ms" in r else "-"
        add1 = f"{r['add1_per_s']:.0f}" if "add1_per_s" in r else "-"
        cpu = f"{r['add1_cpu_us']:.1f}" if "add1_cpu_us" in r else "-"
        redis_us = f"{r['add1_redis_us']:.1f}" if "add1_redis_us" in r else "-"
        herd = ""
        if args.idle:
            herd = f" {r.get('cmds_per_add', 0):>8.1f} {r.get('scripts_per_add', 0):>8.1f}"
        print(
            f"{r['system']:<14} {n / r['enqueue_s']:>10.0f} {drain:>9.0f} {e2e:>8.0f} "
            f"{p50:>7} {p99:>7} {add1:>7} {cpu:>7} {redis_us:>8} "
            f"{ratio_e2e:>7} {ratio_drain:>8}{herd}" + (f"  ({r['error']})" if "error" in r else "")
        )
    print("x = disquette's rate / the peer's, same run")
    print("cpu us, redis us: per one-by-one add, the producer's CPU time and Redis's")
    if args.idle:
        print(
            f"cmd/add, lua/add: Redis commands and script calls per add, {args.idle} idle workers"
        )


if __name__ == "__main__":
    main()
