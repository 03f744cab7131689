"""A worker's presence in the store (issue 14): it registers as it starts, is listed while
it runs, is gone after a clean stop, and its outcomes are in the stored rollups; the
Prometheus ``disquette_workers`` gauge counts the registrations."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import disquette
from disquette import Job, Worker, metrics
from disquette.errors import JobFailed
from disquette.stores.types import JobFilter
from disquette.worker.presence import Rollups

from .conftest import wait_until


def _workers_gauge(client: disquette.Client) -> float:
    text = generate_latest(metrics.registry(client)).decode()
    values = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "disquette_workers"
    ]
    assert len(values) == 1
    return values[0]


def test_worker_registers_heartbeats_and_leaves(tmp_path: Path) -> None:
    def works(job: Job) -> None:
        return None

    def breaks(job: Job) -> None:
        raise ValueError("no")

    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with disquette.connect(url) as client:
        worker = Worker(
            client, {"works": works, "breaks": breaks}, queues=["p", "q"], concurrency=3
        )
        worker.start()
        try:
            wait_until(lambda: client.workers(), what="the worker's registration")
            (info,) = client.workers()
            assert (info.host, info.pid, info.queues) == (
                socket.gethostname(),
                os.getpid(),
                ("p", "q"),
            )
            assert (info.concurrency, info.version) == (3, disquette.__version__)
            assert _workers_gauge(client) == 1
            jobs = client.max_attempts(1)
            done = [jobs.type("works").add(i, "p") for i in range(3)]
            broken = jobs.type("breaks").add(0, "q")
            for job_id in done:
                client.wait(job_id, timeout=20)
            with pytest.raises(JobFailed):
                client.wait(broken, timeout=20)
        finally:
            worker.stop()
        assert client.workers() == []
        assert _workers_gauge(client) == 0
        # The last rollups were flushed at the stop, and outlive the worker.
        for resolution in ("minute", "hour"):
            rows = client.rollups(resolution)
            summary = {(r.queue, r.type): (r.completed, r.errors, sum(r.histogram)) for r in rows}
            assert summary == {("p", "works"): (3, 0, 3), ("q", "breaks"): (0, 1, 1)}
        assert client.count(JobFilter(error="ValueError")).value == 1


def test_rollups_put_back_after_a_failed_flush() -> None:
    rollups = Rollups()
    job = Job(id="D-00000000-AAAAAAAAAAAAAAAAAAAAAAAA-0001", queue="q", raw_body=b"", type=None)
    rollups.record(job, True, 0.02, 125.0)
    rollups.record(job, False, 400.0, 130.0)
    rows = rollups.take()
    assert rollups.take() == []
    rollups.put_back(rows)
    again = rollups.take()
    assert again == rows
    minute = next(row for row in again if row.resolution == "minute")
    assert (minute.start, minute.type, minute.completed, minute.errors) == (120.0, "", 1, 1)
    assert (minute.p50, minute.p99) == (0.025, float("inf"))
