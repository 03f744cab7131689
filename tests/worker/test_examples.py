"""The example app works as its doc string says, and so does the documented worker sample."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from disquette import JobState, connect, connect_async
from disquette.worker import Worker

from ..docs.samples import sample
from .conftest import wait_until

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "app.py"


def load_example(monkeypatch: pytest.MonkeyPatch, url: str) -> ModuleType:
    monkeypatch.setenv("DISQUETTE_URL", url)
    spec = importlib.util.spec_from_file_location("example_app", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_example_app_jobs_run_retry_and_finish(
    monkeypatch: pytest.MonkeyPatch, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    example = load_example(monkeypatch, sqlite_url)
    example.main()
    ids = [line.split()[1] for line in capsys.readouterr().out.splitlines() if "queued" in line]
    assert len(ids) == 4
    # The worker records the first failure through a client whose backoff is short.
    async with connect_async(sqlite_url, backoff_base=0.01) as client:
        worker = Worker(client, example.app)
        assert worker.queues == ["mail", "images"]
        await worker.start_async()
        try:
            results = [await client.wait(job_id, timeout=30) for job_id in ids]
        finally:
            await worker.stop_async()
        grace = await client.show(ids[1])
    assert results[0] == "welcome email sent to ada@example.com"
    assert results[3] == {"image": "ada.png", "size": [128, 128]}
    assert (grace.state, grace.error_count, grace.attempts) == (JobState.DONE, 1, 2)
    assert "ConnectionError: SMTP server busy" in str(grace.last_error)
    example.app.close()


def test_example_app_in_eager_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISQUETTE_EAGER", "1")
    example = load_example(monkeypatch, "")
    job_id = example.send_welcome_email.add({"to": "ada@example.com"})
    assert example.app.client.show(job_id).result == "welcome email sent to ada@example.com"
    with pytest.raises(ConnectionError):
        example.send_welcome_email.add({"to": "grace@example.com"})


# -- the documented worker sample (every README and docs sample runs in tests/docs) ---------

ROOT = EXAMPLE.parents[1]


@pytest.mark.slow
def test_first_worker_sample_adds_its_job_once_with_worker_processes(
    tmp_path: Path,
) -> None:
    """The first-worker tutorial's app.py: ``python app.py`` adds the job; ``disquette worker
    app -p 2`` imports the module in the supervisor and in each child, and adds nothing."""
    source = sample("docs/tutorials/first-worker.md", "Your first worker")
    (tmp_path / "deliveries.py").write_text(
        "def deliver(address):\n"
        "    with open('delivered.txt', 'a') as log:\n"
        "        print(address, file=log)\n"
    )
    (tmp_path / "app.py").write_text("from deliveries import deliver\n" + source)
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    env = {**os.environ, "DISQUETTE_URL": url, "PYTHONPATH": str(ROOT / "src")}
    env.pop("DISQUETTE_QUEUES", None)
    producer = subprocess.run(
        [sys.executable, "app.py"], cwd=tmp_path, env=env, capture_output=True, timeout=60
    )
    assert producer.returncode == 0, producer.stderr
    log = tmp_path / "worker.log"
    with log.open("wb") as stderr:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "disquette", "worker", "app", "-p", "2"],
            cwd=tmp_path,
            env=env,
            stderr=stderr,
        )
    try:
        wait_until(lambda: log.read_text().count("worker started") == 2, what="two workers")
        delivered = tmp_path / "delivered.txt"
        wait_until(delivered.exists, what="the job to run")
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(60) == 0
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
    with connect(url) as client:
        rows = client.stats().by_queue()
    assert sum(row.done + row.queued + row.active + row.scheduled for row in rows.values()) == 1
    assert delivered.read_text() == "ada@example.com\n"
