"""Partitions: workers on other hosts than their store, links cut and made slow and lossy.

The store (Redis, or PostgreSQL) is a server on a host of its own; workers and the producer
run on other hosts, each a separate process in its own network namespace.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .hosts import Host, Network, agent, stop, wait_for
from .services import acked as acked_ids
from .services import lines, look, runs, single_store

pytestmark = pytest.mark.slow


def _stats(path: Path) -> dict[str, int]:
    try:
        stats: dict[str, int] = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return stats


def _worker(host: Host, url: str, tmp: Path, *extra: str) -> tuple[Any, Path, Path]:
    runs_file, stats_file = tmp / f"runs-{host.name}", tmp / f"stats-{host.name}.json"
    process = host.popen(
        agent("worker", url, "--host", host.name, "--runs", str(runs_file),
              "--stats", str(stats_file), *extra),
        log=tmp / f"worker-{host.name}.log",
    )  # fmt: skip
    return process, runs_file, stats_file


STORES = ["redis", "postgres"]
NAMES = {"redis": "Redis", "postgres": "PostgreSQL"}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", STORES)
def test_a_late_ack_after_a_partition_is_refused_and_counted(
    network: Network, tmp_path: Path, record: Callable[..., None], kind: str
) -> None:
    store, first, second = network.host("store"), network.host("a"), network.host("b")
    with single_store(kind, store, tmp_path / "store") as url:
        _late_ack(store, first, second, url, tmp_path, record, NAMES[kind])


def _late_ack(
    store: Host,
    first: Host,
    second: Host,
    url: str,
    tmp_path: Path,
    record: Callable[..., None],
    name: str,
) -> None:
    release = tmp_path / "release"
    worker_a, runs_a, stats_a = _worker(
        first, url, tmp_path, "--concurrency", "1", "--wait-file", str(release)
    )
    acked, refused = tmp_path / "acked", tmp_path / "refused"
    store.run(agent("produce", url, "--count", "1", "--retry-after", "2",
                    "--acked", str(acked), "--refused", str(refused)))  # fmt: skip
    (job_id,) = acked_ids(acked)
    wait_for(lambda: bool(lines(runs_a)), 60, "worker a to start the job")
    first.cut()
    cut_at = time.monotonic()
    worker_b, runs_b, stats_b = _worker(second, url, tmp_path)
    # a's lease (2 s) runs out while it cannot reach the store: b gets the job, completes it.
    wait_for(lambda: look(store, url, acked)["jobs"][job_id]["state"] == "done", 60, "b to finish")
    recovered = time.monotonic() - cut_at
    first.heal()
    release.touch()
    # a's handler returns; its ack names delivery 1, which lost the lease to delivery 2.
    wait_for(lambda: _stats(stats_a).get("leases_lost") == 1, 90, "a's late ack to be refused")
    job = look(store, url, acked)["jobs"][job_id]
    assert job == {"state": "done", "attempts": 2, "result": "b"}, job
    assert [line.split()[1:] for line in lines(runs_a)] == [["1", "a"]]
    assert [line.split()[1:] for line in lines(runs_b)] == [["2", "b"]]
    assert worker_a.poll() is None, "the worker whose ack was refused stopped"
    # Both workers still work: a new job is done by one of them.
    store.run(agent("produce", url, "--count", "1", "--acked", str(acked),
                    "--refused", str(refused)))  # fmt: skip
    wait_for(lambda: look(store, url)["states"]["done"] == 2, 60, "a second job to be done")
    for process in (worker_a, worker_b):
        stop(process, signal.SIGTERM, wait=30)
        assert process.returncode == 0, process.returncode
    assert _stats(stats_a)["leases_lost"] == 1
    assert _stats(stats_b)["leases_lost"] == 0
    log = (tmp_path / "worker-a.log").read_text()
    assert "lost its lease" in log, log[-3000:]
    duplicates = sum(count - 1 for count in runs([runs_a, runs_b]).values())
    record(f"partition: worker cut mid-job ({name})", 2, len(acked_ids(acked)),
           look(store, url)["states"]["done"], 0, duplicates, recovered)  # fmt: skip


@pytest.mark.timeout(420)
@pytest.mark.parametrize("kind", STORES)
def test_every_job_finishes_over_slow_lossy_links(
    network: Network, tmp_path: Path, record: Callable[..., None], kind: str
) -> None:
    store = network.host("store")
    with single_store(kind, store, tmp_path / "store") as url:
        _slow_lossy(network, store, url, tmp_path, record, NAMES[kind])


def _slow_lossy(
    network: Network,
    store: Host,
    url: str,
    tmp_path: Path,
    record: Callable[..., None],
    name: str,
) -> None:
    count = 20_000
    producer = network.host("producer")
    workers = [network.host(f"w{i}") for i in range(3)]
    network.shape(delay_ms=50, loss_percent=1)
    started = [_worker(host, url, tmp_path, "--concurrency", "50") for host in workers]
    acked, refused = tmp_path / "acked", tmp_path / "refused"
    began = time.monotonic()
    producer.run(agent("produce", url, "--count", str(count), "--batch", "500",
                       "--acked", str(acked), "--refused", str(refused)), timeout=300)  # fmt: skip
    wait_for(lambda: look(store, url)["states"]["done"] >= count, 300, "every job to finish",
             pause=2)  # fmt: skip
    elapsed = time.monotonic() - began
    states = look(store, url)["states"]
    for process, _, _ in started:
        stop(process, signal.SIGTERM, wait=30)
    ran = runs([runs_file for _, runs_file, _ in started])
    assert len(acked_ids(acked)) == count
    assert states["done"] == count, states
    assert set(ran) == set(acked_ids(acked))
    duplicates = sum(n - 1 for n in ran.values())
    dropped, delayed = network.shaped()
    assert dropped > 0, "no packet was lost: the links were not shaped"
    assert delayed > 1000, "too few packets were delayed: the links were not shaped"
    record(f"{count} jobs, 50 ms delay + 1% loss on every link ({name})", count,
           len(acked_ids(acked)), states["done"], count - states["done"], duplicates,
           f"n/a ({elapsed:.0f} s in all)")  # fmt: skip
