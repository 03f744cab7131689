"""The ``periodic`` and ``scheduler`` commands."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import disquette
from disquette import connect
from disquette.cli import main
from disquette.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from disquette.cli.run import load_app
from disquette.worker import as_registry

APP = """
from disquette import App
app = App({url!r})

@app.periodic(1, queue="beat")
def beat(job):
    return "ok"

app.periodic("{cron}", type="report", queue="reports", tz="Europe/Oslo")
"""


def _write_app(tmp_path: Path, cron: str = "30 2 * * *", module: str = "periodic_app") -> str:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    (tmp_path / f"{module}.py").write_text(APP.format(url=url, cron=cron))
    return url


def test_periodic_lists_schedules_last_and_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_app(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["periodic", "periodic_app:app"], catch_exceptions=False)
    assert result.exit_code == EXIT_OK, result.output
    assert "beat" in result.output
    assert "report" in result.output
    assert "never" in result.output


def test_bad_schedule_is_one_line_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_app(tmp_path, cron="99 * * * *", module="bad_periodic_app")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["periodic", "bad_periodic_app:app"])
    assert result.exit_code == EXIT_USAGE
    assert "invalid schedule '99 * * * *'" in result.output


def test_scheduler_command_fires_slots(tmp_path: Path) -> None:
    url = _write_app(tmp_path, module="cli_app")
    source = str(Path(disquette.__file__).resolve().parents[1])
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from disquette.cli import main; main()",
            "scheduler",
            "cli_app:app",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": source},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with connect(url) as jobs:
            while not jobs.qlen("beat"):
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(30)
    assert process.returncode == 0


@pytest.mark.parametrize("schedules", [True, False])
def test_a_worker_fires_the_apps_schedules_unless_told_not_to(
    tmp_path: Path, schedules: bool
) -> None:
    module = f"worker_app_{schedules}"
    url = _write_app(tmp_path, module=module)
    source = str(Path(disquette.__file__).resolve().parents[1])
    flag = [] if schedules else ["--no-schedules"]
    command = "from disquette.cli import main; main()"
    process = subprocess.Popen(
        [sys.executable, "-c", command, "worker", f"{module}:app", "-q", "beat", *flag],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": source},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with connect(url) as jobs:
            # The worker is up once it ran a job of ours; then two slots go by.
            ours = jobs.type("beat").add(None, "beat")
            assert jobs.wait(ours, timeout=60) == "ok"
            time.sleep(2.5)
            beat = jobs.stats().by_queue()["beat"]
            fired = beat.scheduled + beat.queued + beat.active + beat.done - 1
    finally:
        process.terminate()
        process.wait(30)
    assert process.returncode == 0
    assert (fired > 0) is schedules, fired


def _registered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An app's schedules registered in its SQLite store, as its schedulers would."""
    url = _write_app(tmp_path, module="registered_app")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISQUETTE_URL", url)
    with connect(url) as jobs:
        schedules = as_registry(load_app("registered_app:app")).schedules
        jobs.store.register_schedules([item.info() for item in schedules])
    return url


def test_schedules_list_pause_resume_and_fire_without_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _registered(tmp_path, monkeypatch)
    runner = CliRunner()
    listed = runner.invoke(main, ["schedules"], catch_exceptions=False)
    assert listed.exit_code == EXIT_OK, listed.output
    assert "beat" in listed.output
    assert "report" in listed.output
    assert "yes" not in listed.output
    assert runner.invoke(main, ["schedules", "pause", "beat"]).exit_code == EXIT_OK
    paused = runner.invoke(main, ["periodic", "registered_app:app"], catch_exceptions=False)
    assert paused.exit_code == EXIT_OK, paused.output
    assert "paused" in paused.output
    assert [line for line in paused.output.splitlines() if "beat" in line and "yes" in line]
    assert runner.invoke(main, ["schedules", "resume", "beat"]).exit_code == EXIT_OK
    fired = runner.invoke(main, ["schedules", "--url", url, "fire", "report"])
    assert fired.exit_code == EXIT_OK, fired.output
    with connect(url) as jobs:
        job = jobs.show(fired.output.strip())
        assert (job.queue, job.type) == ("reports", "report")
        assert not any(info.paused for info in jobs.schedules())


@pytest.mark.parametrize("action", ["pause", "resume", "fire"])
def test_unknown_schedule_is_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    _registered(tmp_path, monkeypatch)
    result = CliRunner().invoke(main, ["schedules", action, "nope"])
    assert result.exit_code == EXIT_FAILED
    assert result.output.strip() == "Error: no schedule named 'nope' in the store"
