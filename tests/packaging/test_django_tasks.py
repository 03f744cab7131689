"""The ``django.tasks`` backend in a Django 6 project (in the clean virtualenv of the wheel,
whose newer Python has Django 6): tasks enqueued, run by ``manage.py disquette worker``,
their results read back through ``get_result``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from ..contrib.conftest import DJANGO_PROJECT
from .conftest import Venv


def test_a_django_6_project_runs_its_tasks_on_disquette(newest_venv: Venv, tmp_path: Path) -> None:
    venv = newest_venv
    if venv.version < (3, 12):
        pytest.fail("Django 6 needs Python 3.12+: install one (pyenv) for this test")
    url = f"sqlite:///{tmp_path / 'tasks.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "DISQUETTE"))}
    env |= {"SHOP_DISQUETTE_URL": url, "PATH": f"{venv.path / 'bin'}:{env['PATH']}"}
    with (tmp_path / "worker.log").open("w") as log:
        worker = subprocess.Popen(
            [venv.python, "manage.py", "disquette", "worker", "-c", "4"],
            cwd=DJANGO_PROJECT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        scenario = subprocess.run(
            [venv.python, "tasks_scenario.py"],
            cwd=DJANGO_PROJECT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0, (tmp_path / "worker.log").read_text()
    assert scenario.returncode == 0, scenario.stderr
    out = json.loads(scenario.stdout)
    assert set(out["first"].values()) == {"READY"}
    assert out["report_job"] == ["reports", 50]  # Django 50 (sooner) is disquette 50
    assert out["add"] == {"status": "SUCCESSFUL", "errors": [], "value": 3}
    assert out["later"] == {"status": "SUCCESSFUL", "errors": [], "value": 5}
    assert out["report"] == {"status": "SUCCESSFUL", "errors": [], "value": {"report": "sales"}}
    assert out["explode"] == {"status": "FAILED", "errors": ["builtins.ValueError"]}
    assert out["attempt"]["value"] == "first attempt 1"
    assert out["mismatch_checked"] is True
