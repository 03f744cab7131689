"""Flow limits across worker processes (issue 16): every process obeys the limits kept in
the store, measured from the handlers' own start and end records."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from disquette import JobState, connect
from tests.servers import postgres, redis

from .conftest import wait_until
from .test_processes import APP, ROOT, processes

pytestmark = pytest.mark.slow

__all__ = ["processes"]  # the fixture, imported for these tests


def start_worker(url: str, *options: str) -> subprocess.Popen[bytes]:
    """``python -m disquette worker`` on the test handlers, importing this tree's code."""
    command = [sys.executable, "-m", "disquette", "worker", APP, "--url", url, *options]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    env.pop("DISQUETTE_QUEUES", None)
    return subprocess.Popen(command, cwd=ROOT, env=env)


def _records(log: Path) -> list[tuple[float, float]]:
    return [
        (float(start), float(end))
        for path in log.glob("*.log")
        for start, end in (line.split() for line in path.read_text().splitlines())
    ]


def _most_at_once(records: list[tuple[float, float]]) -> int:
    """The most handlers running at once (an end before a start at the same instant)."""
    events = sorted([(start, 1) for start, _ in records] + [(end, -1) for _, end in records])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store that several processes share."""
    if request.param == "postgres":
        return postgres.conformance_url(tmp_path)
    if request.param == "redis":
        return redis.conformance_url(tmp_path)
    return f"sqlite:///{tmp_path / 'jobs.db'}"


def test_eight_processes_of_sixteen_slots_never_run_more_than_the_limit(
    tmp_path: Path, shared_url: str, processes: list[subprocess.Popen[bytes]]
) -> None:
    log = tmp_path / "log"
    log.mkdir()
    with connect(shared_url) as client:
        client.set_limits("limited", concurrency=3)
        ids = client.type("timed").add_many([{"sleep": 0.02, "log": str(log)}] * 60, "limited")
        supervisor = start_worker(shared_url, "-q", "limited", "-c", "16", "-p", "8")
        processes.append(supervisor)
        wait_until(
            lambda: all(client.show(i).state is JobState.DONE for i in ids),
            timeout=120,
            what="every job",
        )
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(60) == 0
    records = _records(log)
    assert len(records) == 60
    assert _most_at_once(records) <= 3


def test_a_rate_of_ten_a_second_allows_at_most_sixty_starts_in_five_seconds(
    tmp_path: Path, sqlite_url: str, processes: list[subprocess.Popen[bytes]]
) -> None:
    log = tmp_path / "log"
    log.mkdir()
    with connect(sqlite_url) as client:
        client.type("timed").add_many([{"sleep": 0, "log": str(log)}] * 300, "rated")
        since = time.time()  # the bucket is filled after this
        client.set_limits("rated", rate=(10, 1.0))
        for _ in range(2):
            processes.append(start_worker(sqlite_url, "-q", "rated", "-c", "16", "-p", "2"))
        wait_until(lambda: len(_records(log)) >= 20, timeout=60, what="twenty starts")
        while time.time() < since + 5.2:  # until the five seconds have passed
            time.sleep(0.1)
        for supervisor in processes:
            supervisor.send_signal(signal.SIGTERM)
        for supervisor in processes:
            assert supervisor.wait(60) == 0
    starts = [start for start, _ in _records(log) if start <= since + 5]
    assert len(starts) <= 60
