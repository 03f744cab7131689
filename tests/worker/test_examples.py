"""The example app of the README works as its doc string says."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from disquette import JobState, connect_async
from disquette.worker import Worker

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
