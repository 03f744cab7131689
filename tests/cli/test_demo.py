"""The demo behind ``disquette demo`` (:mod:`disquette.demo`), run in-process on a SQLite file."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from disquette import connect
from disquette.demo import DemoResult, results_table, show_demo


def test_show_demo_runs_every_job_and_agrees_with_the_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    output = io.StringIO()
    console = Console(file=output, width=120)
    # A high fail rate, so that some jobs use their 3 attempts and fail for good.
    agrees = show_demo(
        console, url, jobs=200, paced=20, rate=1000, workers=2, concurrency=8, fail_rate=0.5
    )
    assert agrees
    text = output.getvalue()
    assert "220 / 220" in text  # jobs finished
    assert "throughput (200 at once)" in text
    assert "latency p99 (1000/s)" in text
    with connect(url) as client:
        row = client.stats().by_queue()["demo"]
    assert row.failed > 0
    assert f"{row.done} / {row.failed}" in text


def test_results_table_leaves_out_what_was_not_measured() -> None:
    result = DemoResult(10, 9, 1, 2, 0.0, [], burst_jobs=0)
    output = io.StringIO()
    Console(file=output, width=120).print(results_table(result, 500.0, None))
    text = output.getvalue()
    assert "10 / 10" in text
    assert "throughput" not in text  # no burst
    assert "latency" not in text  # no paced jobs
    assert "the store says" not in text  # no row for the queue
    assert result.percentile(0.99) == 0.0
