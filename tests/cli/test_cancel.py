"""``disquette cancel`` and what ``show`` says of a cancelled job and of progress."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from disquette import JobState, connect
from disquette.cli import EXIT_FAILED, EXIT_OK

from .test_cli import one_line_error, run


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A fresh SQLite store."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    connect(url).close()
    return url


def test_cancel_a_queued_and_a_running_job_then_show_them(url: str) -> None:
    queued = run("add", "q", "later", "--delay", "60", "--url", url).stdout.strip()
    running = run("add", "r", "now", "--url", url).stdout.strip()
    with connect(url) as client:
        job = client.get("r")
        client.progress(job, {"done": 2, "of": 5})
    result = run("cancel", queued, running, "--url", url)
    assert result.exit_code == EXIT_OK, result.output
    assert result.stdout == f"{queued}\tcancelled\n{running}\tcancel requested\n"
    shown = json.loads(run("show", running, "--json", "--url", url).stdout)
    assert (shown["state"], shown["cancel_requested"], shown["progress"]) == (
        "active", True, {"done": 2, "of": 5},
    )  # fmt: skip
    table = run("show", running, "--url", url).stdout
    assert "cancel_requested" in table
    assert "progress" in table
    assert json.loads(run("show", queued, "--json", "--url", url).stdout)["state"] == "cancelled"
    with connect(url) as client:
        client.ack_cancelled(job)
        assert client.show(running).state is JobState.CANCELLED
    waited = run("wait", queued, "--url", url)
    assert waited.exit_code == EXIT_FAILED
    assert "was cancelled" in one_line_error(waited)
    assert "cancel" in run("stats", "--url", url).stdout


def test_cancelling_an_unknown_or_finished_job_is_a_one_line_error(url: str) -> None:
    missing = "D-00000000-AAAAAAAAAAAAAAAAAAAAAAAA-0001"
    unknown = run("cancel", missing, "--url", url)
    assert unknown.exit_code == EXIT_FAILED
    assert "no job with id" in one_line_error(unknown)
    job_id = run("add", "q", "x", "--url", url).stdout.strip()
    assert run("cancel", job_id, "--url", url).exit_code == EXIT_OK
    again = run("cancel", job_id, "--url", url)
    assert again.exit_code == EXIT_FAILED
    assert "it is cancelled" in one_line_error(again)
