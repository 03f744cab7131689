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
from disquette.cli.common import EXIT_OK, EXIT_USAGE

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
