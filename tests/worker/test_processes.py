"""Worker processes for real: ``python -m disquette worker`` on a SQLite file, killed with
SIGKILL, stopped with SIGTERM, frozen with SIGSTOP, and a supervisor of four processes."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from disquette import Client, JobState, connect

from .conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.worker.apps:handlers"

pytestmark = pytest.mark.slow


def start_worker(
    url: str, *options: str, app: str = APP, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """``python -m disquette worker`` on the test handlers (or ``app``), from the
    repository root (its log to ``log`` when given)."""
    command = [sys.executable, "-m", "disquette", "worker", app, "--url", url, *options]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DISQUETTE_QUEUES", None)
    if log is None:
        return subprocess.Popen(command, cwd=ROOT, env=env)
    with log.open("ab") as stderr:
        return subprocess.Popen(command, cwd=ROOT, env=env, stderr=stderr)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; any still running at the end is killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def blocking_body(tmp_path: Path, name: str) -> dict[str, str]:
    return {"started": str(tmp_path / f"{name}.started"), "release": str(tmp_path / "release")}


def test_sigkill_mid_job_the_job_is_redelivered_after_its_lease_and_completed(
    tmp_path: Path, sqlite_url: str, processes: list[subprocess.Popen[bytes]]
) -> None:
    with connect(sqlite_url) as client:
        job_id = client.type("blocking").retry_after(1).add(blocking_body(tmp_path, "j"), "default")
        first = start_worker(sqlite_url)
        processes.append(first)
        wait_until((tmp_path / "j.started.1").exists, what="the first attempt to start")
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert client.show(job_id).state is JobState.ACTIVE  # leased by a dead worker
        (tmp_path / "release").touch()
        second = start_worker(sqlite_url)
        processes.append(second)
        result = client.wait(job_id, timeout=30)
        job = client.show(job_id)
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
    assert result["attempt"] == 2
    assert result["pid"] == second.pid
    assert (job.state, job.attempts, job.additional_deliveries) == (JobState.DONE, 2, 1)


def test_sigterm_drains_gracefully(
    tmp_path: Path, sqlite_url: str, processes: list[subprocess.Popen[bytes]]
) -> None:
    with connect(sqlite_url) as client:
        ids = [
            client.type("blocking").add(blocking_body(tmp_path, f"j{n}"), "default")
            for n in range(4)
        ]
        worker = start_worker(sqlite_url, "--concurrency", "1", "--prefetch", "3")
        processes.append(worker)
        wait_until((tmp_path / "j0.started.1").exists, what="the first job to start")
        wait_until(lambda: _states(client, ids).count(JobState.ACTIVE) == 4, what="prefetch")
        worker.send_signal(signal.SIGTERM)
        # The three prefetched jobs go back at once; the running one goes on.
        wait_until(lambda: _states(client, ids).count(JobState.QUEUED) == 3, what="the NACKs")
        assert worker.poll() is None
        assert client.show(ids[0]).state is JobState.ACTIVE
        (tmp_path / "release").touch()
        assert worker.wait(30) == 0
        jobs = [client.show(job_id) for job_id in ids]
    assert (jobs[0].state, jobs[0].result["attempt"]) == (JobState.DONE, 1)
    assert [(job.state, job.nacks) for job in jobs[1:]] == [(JobState.QUEUED, 1)] * 3


def test_a_second_sigterm_gives_the_running_job_back(
    tmp_path: Path, sqlite_url: str, processes: list[subprocess.Popen[bytes]]
) -> None:
    with connect(sqlite_url) as client:
        job_id = client.type("blocking").add(blocking_body(tmp_path, "j"), "default")
        log = tmp_path / "worker.log"
        worker = start_worker(sqlite_url, log=log)
        processes.append(worker)
        wait_until((tmp_path / "j.started.1").exists, what="the job to start")
        worker.send_signal(signal.SIGTERM)
        # Signals do not queue: send the second once the first was handled.
        wait_until(lambda: "worker stopping" in log.read_text(), what="the first signal")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
        job = client.show(job_id)
    assert (job.state, job.nacks, job.attempts) == (JobState.QUEUED, 1, 1)


def test_a_frozen_worker_stops_heartbeating_and_its_job_goes_to_another(
    tmp_path: Path, sqlite_url: str, processes: list[subprocess.Popen[bytes]]
) -> None:
    with connect(sqlite_url) as client:
        job_id = client.type("blocking").retry_after(1).add(blocking_body(tmp_path, "j"), "default")
        frozen = start_worker(sqlite_url)
        processes.append(frozen)
        wait_until((tmp_path / "j.started.1").exists, what="the first attempt to start")
        frozen.send_signal(signal.SIGSTOP)
        try:
            other = start_worker(sqlite_url)
            processes.append(other)
            wait_until((tmp_path / "j.started.2").exists, timeout=30, what="the redelivery")
            (tmp_path / "release").touch()
            result = client.wait(job_id, timeout=30)
        finally:
            frozen.send_signal(signal.SIGCONT)
        assert result["pid"] == other.pid
        for process in (frozen, other):
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0
        assert client.show(job_id).state is JobState.DONE


def _states(client: Client, ids: list[str]) -> list[JobState]:
    return [client.show(job_id).state for job_id in ids]


def test_ten_thousand_jobs_four_processes_random_failures_none_lost_none_twice(
    tmp_path: Path, sqlite_url: str, processes: list[subprocess.Popen[bytes]]
) -> None:
    log = tmp_path / "log"
    log.mkdir()
    total = 10_000
    with connect(sqlite_url) as client:
        producer = client.type("scripted").max_attempts(2)
        ids: dict[str, int] = {}
        for first in range(0, total, 1000):
            bodies = [{"n": n, "log": str(log)} for n in range(first, first + 1000)]
            ids.update(
                zip(producer.add_many(bodies, "default"), range(first, first + 1000), strict=True)
            )
        supervisor = start_worker(sqlite_url, "--processes", "4", "--log-level", "error")
        processes.append(supervisor)

        def finished() -> bool:
            row = client.stats().by_queue()["default"]
            return row.done + row.failed == total

        wait_until(finished, timeout=120, what="every job to finish")
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(60) == 0
        outcomes = {}
        for job_id, n in ids.items():
            job = client.show(job_id)
            outcomes[n] = job
    executions: collections.Counter[tuple[str, str]] = collections.Counter()
    pids = set()
    for path in log.iterdir():
        pids.add(path.stem)
        for line in path.read_text().splitlines():
            job_id, _attempt, outcome = line.split()
            executions[(job_id, outcome)] += 1
    assert len(pids) >= 2, "the jobs were spread over several processes"
    for n, job in outcomes.items():
        if n % 7 == 0:
            assert (job.state, job.error_count) == (JobState.FAILED, 2), n
            assert executions[(job.id, "error")] == 2
            assert executions[(job.id, "ok")] == 0
        elif n % 5 == 0:
            assert (job.state, job.error_count, job.result) == (JobState.DONE, 1, n * 2), n
            assert executions[(job.id, "error")] == 1
            assert executions[(job.id, "ok")] == 1
        else:
            assert (job.state, job.error_count, job.result) == (JobState.DONE, 0, n * 2), n
            assert executions[(job.id, "ok")] == 1
            assert executions[(job.id, "error")] == 0
    expected = sum(2 if n % 7 == 0 or n % 5 == 0 else 1 for n in range(total))
    assert sum(executions.values()) == expected


def test_supervisor_replaces_a_killed_child_and_a_stuck_one(
    tmp_path: Path, sqlite_url: str, processes: list[subprocess.Popen[bytes]]
) -> None:
    with connect(sqlite_url) as client:
        supervisor = start_worker(
            sqlite_url, "--processes", "2", "--exec-timeout", "0.3", "--grace", "1"
        )
        processes.append(supervisor)
        quick = client.type("quick").add("warm-up", "default")
        assert client.wait(quick, timeout=30) == "warm-up"
        children = _children(supervisor.pid)
        assert len(children) == 2
        os.kill(children[0], signal.SIGKILL)
        wait_until(
            lambda: len(set(_children(supervisor.pid)) - set(children)) == 1,
            what="a replacement for the killed child",
        )
        # A sync handler stuck past its exec timeout: the job fails, its process is replaced.
        before = set(_children(supervisor.pid))
        stuck = client.type("stuck").max_attempts(1).add(None, "default")
        wait_until(lambda: client.show(stuck).state is JobState.FAILED, what="the timeout")
        assert "exec timeout" in str(client.show(stuck).last_error)
        wait_until(
            lambda: len(set(_children(supervisor.pid)) - before) == 1,
            what="a replacement for the child with the stuck thread",
        )
        after = client.type("quick").add("still working", "default")
        assert client.wait(after, timeout=30) == "still working"
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(30) == 0
    assert not _children(supervisor.pid)


def _children(pid: int) -> list[int]:
    """Live child pids of ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return sorted(found)


@pytest.mark.parametrize(
    ("signum", "status"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)], ids=["TERM", "INT"]
)
def test_exit_status_after_a_signal_is_the_same_with_and_without_a_supervisor(
    tmp_path: Path,
    sqlite_url: str,
    processes: list[subprocess.Popen[bytes]],
    signum: signal.Signals,
    status: int,
) -> None:
    """SIGTERM is how service managers stop a worker: a success (0). Ctrl-C (SIGINT) is an
    interruption: 130, as the shell reports it. The supervisor of ``-p`` says what it does."""
    queues = ["--queues", "mail,nosuchqueue"]
    plain_log = tmp_path / "plain.log"
    plain = start_worker(sqlite_url, *queues, app="tests.worker.apps:app", log=plain_log)
    processes.append(plain)
    wait_until(lambda: "worker started" in plain_log.read_text(), what="the worker to start")
    text = plain_log.read_text()
    assert "no handler declares queue 'nosuchqueue' (the handlers declare: mail)" in text
    assert "'mail'" not in text, "the declared queue is not warned about"
    plain.send_signal(signum)
    assert plain.wait(30) == status

    log = tmp_path / "supervisor.log"
    supervisor = start_worker(sqlite_url, "--processes", "2", log=log)
    processes.append(supervisor)
    wait_until(lambda: log.read_text().count("worker started") == 2, what="two workers")
    supervisor.send_signal(signum)
    assert supervisor.wait(30) == status
    text = log.read_text()
    said = f"supervisor received {signum.name}: stopping 2 worker process(es)"
    assert said in text, text
    assert text.count("worker stopping: finishing running jobs") == 2
    assert "exited (1 still running)" in text
    assert "exited (0 still running)" in text
    assert text.rstrip().endswith("supervisor stopped: every worker process exited")


def test_supervisor_gives_a_killed_childs_jobs_back_at_once(
    tmp_path: Path, sqlite_url: str, processes: list[subprocess.Popen[bytes]]
) -> None:
    """Killed mid-job, a child's job goes to its replacement in seconds, not after its lease
    (retry_after 300 s, the default), and runs to the end once."""
    with connect(sqlite_url) as client:
        blocking = client.type("blocking")
        first = blocking.add(blocking_body(tmp_path, "a"), "default")
        second = blocking.add(blocking_body(tmp_path, "b"), "default")
        supervisor = start_worker(
            sqlite_url, "--processes", "2", "--concurrency", "1", "--prefetch", "0"
        )
        processes.append(supervisor)
        started = [tmp_path / "a.started.1", tmp_path / "b.started.1"]
        wait_until(lambda: all(path.exists() for path in started), what="both jobs to start")
        children = _children(supervisor.pid)
        victim, busy = (int(path.read_text()) for path in started)
        assert victim != busy  # one job each: the other child cannot take the job back
        assert {victim, busy} <= set(children)
        os.kill(victim, signal.SIGKILL)
        # Not 300 s: the supervisor released the dead child's lease.
        wait_until((tmp_path / "a.started.2").exists, timeout=30, what="the job given back")
        replacement = int((tmp_path / "a.started.2").read_text())
        assert replacement not in children
        (tmp_path / "release").touch()
        assert client.wait(first, timeout=30) == {"attempt": 2, "pid": replacement}
        assert client.wait(second, timeout=30) == {"attempt": 1, "pid": busy}
        job = client.show(first)
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(30) == 0
    assert (job.state, job.attempts, job.additional_deliveries) == (JobState.DONE, 2, 1)
    finished = (tmp_path / "a.started.finished").read_text().splitlines()
    assert finished == [f"2 {replacement}"]  # the killed attempt never finished


def test_supervisors_sharing_a_host_and_a_pid_never_share_a_lease_holder(tmp_path: Path) -> None:
    """Supervisors in containers are often pid 1 on hosts of one name: if their children
    shared holder ids, one supervisor's release would take another's running jobs."""
    from disquette.worker import Supervisor

    seen = tmp_path / "holders"
    record = "import os, sys; open(sys.argv[1], 'a').write(os.environ['DISQUETTE_HOLDER'] + '\\n')"
    for _ in range(2):  # two supervisors of one process: the same host name and pid
        child = Supervisor([sys.executable, "-c", record, str(seen)], 1)._spawn()
        assert child.wait(30) == 0
    first, second = seen.read_text().split()
    assert first != second
    assert first.startswith(f"{os.uname().nodename}:{os.getpid()}:")
