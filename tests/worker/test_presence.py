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


def test_rollups_sum_each_run_into_its_minute_and_hour() -> None:
    rollups = Rollups()
    job = Job(id="D-00000000-AAAAAAAAAAAAAAAAAAAAAAAA-0001", queue="q", raw_body=b"", type="t")
    other = Job(id="D-00000000-AAAAAAAAAAAAAAAAAAAAAAAA-0002", queue="r", raw_body=b"", type=None)
    # (ended at, job, ok, duration): across minutes, an hour, and a clock set back.
    runs = [
        (59.9, job, True, 0.0001),
        (60.0, job, False, 0.002),
        (61.0, other, True, 7.0),
        (3599.0, job, True, 0.0001),
        (3600.0, job, True, 0.0001),
        (61.5, job, True, 0.0001),
    ]
    for now, run_job, ok, duration in runs:
        rollups.record(run_job, ok, duration, now)
    rows = {(r.resolution, r.start, r.queue, r.type): r for r in rollups.take()}
    expected = {
        ("minute", 0.0, "q", "t"): (1, 0),
        ("minute", 60.0, "q", "t"): (1, 1),
        ("minute", 60.0, "r", ""): (1, 0),
        ("minute", 3540.0, "q", "t"): (1, 0),
        ("minute", 3600.0, "q", "t"): (1, 0),
        ("hour", 0.0, "q", "t"): (3, 1),
        ("hour", 0.0, "r", ""): (1, 0),
        ("hour", 3600.0, "q", "t"): (1, 0),
    }
    assert {key: (row.completed, row.errors) for key, row in rows.items()} == expected
    assert rows[("hour", 0.0, "q", "t")].histogram[:2] == (3, 1)
    assert rows[("hour", 0.0, "r", "")].histogram[11] == 1  # 7 s: the (5, 10] bucket
    assert sum(sum(row.histogram) for row in rows.values()) == 2 * len(runs)
    assert rollups.take() == []
