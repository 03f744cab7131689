"""Prometheus metrics: counts where clients and workers act, the store's gauges at scrape
time, capped labels, and a worker with ``--processes`` adding up its children's counts."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import disquette
from disquette import Job, ManualClock, Worker, metrics
from disquette.errors import JobFailed, QueueFull, QueuePaused

from .server.conftest import free_port
from .worker.conftest import wait_until

ROOT = Path(__file__).resolve().parent.parent
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(client: disquette.Client | None = None) -> Samples:
    return parse(generate_latest(metrics.registry(client)).decode())


@pytest.fixture(autouse=True)
def enabled() -> None:
    metrics.enable()


def test_clients_count_adds_refusals_deliveries_and_settles() -> None:
    with disquette.connect("memory://metrics-client") as client:
        jobs = client.type("mail")
        jobs.add_many([1, 2, 3], "m-count")
        with pytest.raises(QueueFull):
            jobs.max_len(3).add(4, "m-count")
        client.set_pause("m-paused", "in")
        with pytest.raises(QueuePaused):
            jobs.add(5, "m-paused")
        first, second = client.get_many("m-count", count=2, timeout=0)
        client.ack(first)
        client.nack(second)
        third = client.get("m-count", timeout=0)
        client.fail(third, "gave up")  # max_attempts 1: failed for good
        samples = scrape()
    labels = {"queue": "m-count", "type": "mail"}
    assert value(samples, "disquette_jobs_added_total", **labels) == 3
    assert value(samples, "disquette_jobs_add_rejected_total", queue="m-count", reason="queue_full")
    assert value(
        samples, "disquette_jobs_add_rejected_total", queue="m-paused", reason="queue_paused"
    )
    assert value(samples, "disquette_jobs_delivered_total", **labels) == 3
    assert value(samples, "disquette_job_wait_seconds_count", **labels) == 3
    assert value(samples, "disquette_jobs_completed_total", **labels) == 1
    assert value(samples, "disquette_jobs_nacked_total", **labels) == 1
    assert value(samples, "disquette_jobs_failed_total", **labels) == 0  # retried, not failed
    with disquette.connect("memory://metrics-client") as client:
        job = client.type("mail").max_attempts(1).add(6, "m-final")
        client.fail(client.get("m-final", timeout=0), "boom")
        assert client.show(job).state is disquette.JobState.FAILED
        samples = scrape()
    assert value(samples, "disquette_jobs_failed_total", queue="m-final", type="mail") == 1


async def test_workers_count_durations_errors_and_timeouts(tmp_path: Path) -> None:
    def works(job: Job) -> None:
        return None

    def breaks(job: Job) -> None:
        raise KeyError("customer")

    async def sleeps(job: Job) -> None:
        import asyncio

        await asyncio.sleep(30)

    handlers = {"works": works, "breaks": breaks, "sleeps": sleeps}
    async with disquette.connect_async(f"sqlite:///{tmp_path / 'jobs.db'}") as client:
        worker = Worker(client, handlers, queues=["m-worker"], exec_timeout=0.2)
        await worker.start_async()
        try:
            jobs = client.max_attempts(1)
            ids = [
                await jobs.type("works").add(1, "m-worker"),
                await jobs.type("breaks").add(2, "m-worker"),
                await jobs.type("sleeps").add(3, "m-worker"),
            ]
            assert await client.wait(ids[0], timeout=20) is None
            for job_id in ids[1:]:
                with pytest.raises(JobFailed):
                    await client.wait(job_id, timeout=20)
        finally:
            await worker.stop_async()
    samples = scrape()

    def count(name: str, type_: str, **labels: str) -> float:
        return value(samples, name, queue="m-worker", type=type_, **labels)

    assert count("disquette_job_duration_seconds_count", "works", outcome="ok") == 1
    assert count("disquette_job_duration_seconds_count", "breaks", outcome="error") == 1
    assert count("disquette_job_duration_seconds_count", "sleeps", outcome="timeout") == 1
    assert count("disquette_job_errors_total", "breaks", error_type="KeyError") == 1
    assert count("disquette_job_errors_total", "sleeps", error_type="HandlerTimeout") == 1
    assert count("disquette_jobs_timed_out_total", "sleeps") == 1
    assert count("disquette_jobs_failed_total", "breaks") == 1
    assert count("disquette_jobs_completed_total", "works") == 1


def test_store_gauges_are_read_at_scrape_time() -> None:
    clock = ManualClock()
    with disquette.connect("memory://", clock=clock) as client:
        client.add_many(["a", "b"], "m-gauge")
        client.delay(60).add("later", "m-gauge")
        client.ack(client.get("m-gauge", timeout=0))
        clock.advance(90)  # the oldest ready job has waited 90 s
        client.set_pause("m-gauge", "out")
        samples = scrape(client)
        assert value(samples, "disquette_store_up") == 1
        # Counted from the store, so a job added now shows at the next scrape.
        client.add("c", "m-gauge")
        after = scrape(client)

    def jobs(samples: Samples, state: str) -> float:
        return value(samples, "disquette_queue_jobs", queue="m-gauge", state=state)

    assert (jobs(samples, "queued"), jobs(samples, "done")) == (2, 1)
    assert value(samples, "disquette_queue_latency_seconds", queue="m-gauge") == 90
    assert value(samples, "disquette_queue_paused", queue="m-gauge") == 1
    assert jobs(after, "queued") == 3


def test_label_values_are_capped_per_process() -> None:
    capped = metrics._Capped(2)
    assert [capped(name) for name in ("a", "b", "c", "a", None)] == [
        "a",
        "b",
        metrics.OTHER,
        "a",
        metrics.UNKNOWN,
    ]


def test_worker_processes_add_up_on_one_metrics_port(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    env.pop(metrics.MULTIPROC_DIR, None)
    worker = subprocess.Popen(
        [
            *(sys.executable, "-m", "disquette", "worker", "tests.worker.apps:handlers"),
            *("--url", url, "--processes", "2", "--metrics-port", str(port)),
        ],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        with disquette.connect(url) as client:
            ids = client.type("quick").add_many(list(range(40)), "default")
            for job_id in ids:
                client.wait(job_id, timeout=60)

        def scraped() -> Samples:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                return parse(reply.read().decode())

        def completed() -> float:
            try:
                samples = scraped()
            except OSError:
                return 0.0
            return value(samples, "disquette_jobs_completed_total", queue="default", type="quick")

        # Workers ack in batches: the count catches up with the results shortly after.
        wait_until(lambda: completed() == 40, 30, "40 completions on /metrics")
        samples = scraped()
        assert value(samples, "disquette_queue_jobs", queue="default", state="done") == 40
        assert value(samples, "disquette_store_up") == 1
        durations = value(
            samples,
            "disquette_job_duration_seconds_count",
            queue="default",
            type="quick",
            outcome="ok",
        )
        assert durations == 40
    finally:
        worker.terminate()
        _, errors = worker.communicate(timeout=30)
    assert worker.returncode == 0, errors.decode()
