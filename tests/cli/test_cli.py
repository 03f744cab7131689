"""The ``disquette`` command line: every command, its exit status, its one-line errors.

Most tests run the click command in-process on a SQLite file; a few run
``python -m disquette`` for real (the demo, Ctrl-C on ``stats --watch``, the entry point).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from disquette import JobState, connect
from disquette.cli import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    main,
)

from ..worker.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A fresh SQLite store."""
    return f"sqlite:///{tmp_path / 'cli.db'}"


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    """Invoke the CLI in-process."""
    return CliRunner().invoke(main, list(args), input=input, env=env, catch_exceptions=False)


def one_line_error(result: Result) -> str:
    """The error message, checking it is one line on stderr and nothing on stdout."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert result.stdout == ""
    return lines[0]


def test_every_command_has_help() -> None:
    def walk(group: click.Group, prefix: list[str]) -> list[list[str]]:
        paths = []
        for name, command in group.commands.items():
            paths.append([*prefix, name])
            if isinstance(command, click.Group):
                paths.extend(walk(command, [*prefix, name]))
        return paths

    paths = walk(main, [])
    assert {"worker", "add", "get", "ack", "nack", "show", "stats", "failed", "pause"} <= {
        path[0] for path in paths
    }
    assert {"resume", "recover-stale", "demo"} <= {path[0] for path in paths}
    assert ["failed", "retry"] in paths
    assert ["failed", "delete"] in paths
    for path in [[], *paths]:
        result = run(*path, "--help")
        assert result.exit_code == EXIT_OK, path
        assert "Usage: " in result.output


def test_add_get_ack_show(url: str) -> None:
    added = run("add", "jobs", '{"to": "ada"}', "--json", "--type", "mail", "--url", url)
    assert added.exit_code == EXIT_OK
    job_id = added.stdout.strip()
    assert len(job_id) == 40
    got = run("get", "other", "jobs", "--url", url)
    assert got.exit_code == EXIT_OK
    assert got.stdout == f'{job_id}\tjobs\t{{"to": "ada"}}\n'
    assert run("ack", job_id, "--result", '{"ok": true}', "--url", url).exit_code == EXIT_OK
    shown = run("show", job_id, "--json", "--url", url)
    fields = json.loads(shown.stdout)
    assert (fields["state"], fields["type"], fields["body"], fields["result"]) == (
        "done",
        "mail",
        {"to": "ada"},
        {"ok": True},
    )
    table = run("show", job_id, "--url", url)
    assert table.exit_code == EXIT_OK
    assert job_id in table.stdout
    assert "done" in table.stdout
    assert run("wait", job_id, "--url", url).stdout == '{"ok": true}\n'


def test_add_takes_every_option_and_stdin(url: str) -> None:
    options = ["--delay", "60", "--retry-after", "5", "--ttl", "3600", "--result-ttl", "10"]
    options += ["--max-len", "10", "--priority", "3", "--type", "t", "--max-attempts", "4"]
    result = run("add", "q", "-", *options, "--url", url, input="from stdin")
    assert result.exit_code == EXIT_OK, result.output
    with connect(url) as client:
        job = client.show(result.stdout.strip())
    assert job.body == "from stdin"
    assert (job.state, job.retry_after, job.priority, job.type, job.max_attempts) == (
        JobState.SCHEDULED,
        5,
        3,
        "t",
        4,
    )
    assert job.result_ttl == 10
    assert job.expires_at == pytest.approx(job.created_at + 3600)


def test_exit_statuses_and_one_line_errors(url: str, tmp_path: Path) -> None:
    missing = "D-00000000-AAAAAAAAAAAAAAAAAAAAAAAA-0001"
    cases = [
        (["stats", "--url", "bogus://x"], EXIT_USAGE, "invalid store URL"),
        (["stats", "--url", f"sqlite:///{tmp_path}/no/such/dir.db"], EXIT_UNAVAILABLE, "unreach"),
        (["show", "not-an-id", "--url", url], EXIT_USAGE, "invalid job id"),
        (["show", missing, "--url", url], EXIT_FAILED, "no job with id"),
        (["ack", missing, "--url", url], EXIT_FAILED, "no job with id"),
        (["get", "q", "--url", url], EXIT_TIMEOUT, "no job in q"),
        (["get", "q", "--timeout", "0.05", "--url", url], EXIT_TIMEOUT, "within 0.05s"),
        (["add", "q", "{", "--json", "--url", url], EXIT_USAGE, "not JSON"),
        (["add", "q", "x", "--ttl", "0", "--url", url], EXIT_USAGE, "ttl"),
        (["add", "bad\nqueue", "x", "--url", url], EXIT_USAGE, "invalid queue name"),
        (["add", "q", "x", "--replicate", "2", "--url", url], EXIT_FAILED, "replicate=2"),
        (["failed", "retry", "--url", url], EXIT_USAGE, "--all"),
        (["failed", "retry", missing, "--url", url], EXIT_FAILED, "no job"),
    ]
    for args, status, message in cases:
        result = run(*args)
        assert result.exit_code == status, (args, result.output)
        assert message in one_line_error(result), args
    # click's own usage errors exit 2 too.
    assert run("add", "q", "x", "--priority", "high").exit_code == EXIT_USAGE
    assert run("no-such-command").exit_code == EXIT_USAGE


def test_queue_full_and_wait_outcomes(url: str) -> None:
    assert run("add", "q", "a", "--max-len", "1", "--url", url).exit_code == EXIT_OK
    full = run("add", "q", "b", "--max-len", "1", "--url", url)
    assert full.exit_code == EXIT_FAILED
    assert "max_len=1" in one_line_error(full)
    job_id = run("add", "r", "x", "--max-attempts", "1", "--url", url).stdout.strip()
    timed_out = run("wait", job_id, "--timeout", "0.05", "--url", url)
    assert timed_out.exit_code == EXIT_TIMEOUT
    with connect(url) as client:
        client.fail(client.get("r"), "boom")
    failed = run("wait", job_id, "--url", url)
    assert failed.exit_code == EXIT_FAILED
    assert "boom" in one_line_error(failed)


def test_failed_list_retry_delete(url: str) -> None:
    with connect(url) as client:
        ids = client.max_attempts(1).type("t").add_many(["a", "b", "c"], "q")
        other = client.max_attempts(1).add("d", "other")
        for _ in range(4):
            job = client.get("q", "other")
            client.fail(job, f"Traceback...\nValueError: {job.body}")
    listed = run("failed", "--url", url)
    assert listed.exit_code == EXIT_OK
    assert "4 failed job(s)" in listed.stdout
    assert "ValueError: a" in listed.stdout
    as_json = run("failed", "--queue", "q", "--json", "--url", url)
    assert [json.loads(line)["id"] for line in as_json.stdout.splitlines()] == ids
    assert run("failed", "retry", ids[0], "--url", url).stdout == "1 job(s) retried\n"
    assert run("failed", "--queue", "q", "retry", "--all", "--url", url).exit_code == EXIT_OK
    assert run("failed", "delete", "--all", "--url", url).stdout == "1 job(s) deleted\n"
    with connect(url) as client:
        assert [client.show(i).state for i in ids] == [JobState.QUEUED] * 3
        assert client.failed() == []
        with pytest.raises(KeyError):
            client.show(other)
        not_failed = run("failed", "delete", ids[0], "--url", url)
        assert not_failed.exit_code == EXIT_FAILED
        assert "cannot delete as failed" in one_line_error(not_failed)


def test_pause_resume_qlen_peek_nack_delete_recover_stale_stats(url: str) -> None:
    ids = [run("add", "q", f"job {n}", "--url", url).stdout.strip() for n in range(3)]
    assert run("pause", "q", "--url", url).exit_code == EXIT_OK
    assert run("get", "q", "--url", url).exit_code == EXIT_TIMEOUT
    stats = run("stats", "--url", url)
    assert stats.exit_code == EXIT_OK
    assert "q*" in stats.stdout
    assert "* paused" in stats.stdout
    assert run("resume", "q", "--url", url).exit_code == EXIT_OK
    assert run("qlen", "q", "--url", url).stdout == "3\n"
    peeked = run("peek", "q", "--count", "2", "--json", "--url", url).stdout.splitlines()
    assert [json.loads(line)["body"] for line in peeked] == ["job 0", "job 1"]
    got = run("get", "q", "--count", "2", "--url", url).stdout.splitlines()
    assert [line.split("\t")[0] for line in got] == ids[:2]
    assert run("nack", ids[0], "--url", url).exit_code == EXIT_OK
    assert run("delete", ids[2], "--url", url).exit_code == EXIT_OK
    assert run("recover-stale", "--max-age", "0", "--url", url).stdout == "1\n"
    assert run("qlen", "q", "--url", url).stdout == "2\n"
    table = run("stats", "--url", url).stdout
    assert "queued" in table
    assert "q" in table


def test_url_from_the_environment(url: str) -> None:
    job_id = run("add", "q", "x", env={"DISQUETTE_URL": url}).stdout.strip()
    with connect(url) as client:
        assert client.show(job_id).body == "x"


def test_worker_app_errors_are_one_line_usage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    (tmp_path / "broken_app.py").write_text("import json\nraise RuntimeError('at import')\n")
    (tmp_path / "empty_app.py").write_text("handlers = {}\nnumber = 3\n")
    monkeypatch.chdir(tmp_path)
    cases = [
        ("no_such_module:app", "cannot import 'no_such_module'"),
        ("broken_app:app", "RuntimeError: at import"),
        ("empty_app:missing", "has no attribute 'missing'"),
        ("empty_app:handlers", "has no handlers"),
        ("empty_app:number", "not an App or a mapping"),
        ("empty_app", "has no attribute 'app'"),
    ]
    for app, message in cases:
        result = run("worker", app, "--url", url)
        assert result.exit_code == EXIT_USAGE, (app, result.output)
        assert message in one_line_error(result), app
    bad_url = run("worker", "tests.worker.apps:handlers", "--url", "nope://")
    assert bad_url.exit_code == EXIT_USAGE
    assert "invalid store URL" in one_line_error(bad_url)
    unreachable = f"sqlite:///{tmp_path}/no/such/dir/jobs.db"
    for processes in ("1", "3"):
        down = run("worker", "tests.worker.apps:handlers", "-p", processes, "--url", unreachable)
        assert down.exit_code == EXIT_UNAVAILABLE
        assert "store unreachable" in one_line_error(down)


def python_m(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "disquette", *args],
        cwd=kwargs.pop("cwd", ROOT),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_demo_runs_and_exits_zero(tmp_path: Path) -> None:
    demo = python_m("demo", "--jobs", "500", "--paced", "50", "--rate", "1000", cwd=tmp_path)
    stdout, stderr = demo.communicate(timeout=60)
    assert demo.returncode == EXIT_OK, stderr
    assert "results" in stdout
    assert "550 / 550" in stdout
    assert "latency p99" in stdout
    assert "jobs/s" in stdout
    assert list(tmp_path.iterdir()) == [], "the demo leaves nothing behind"


@pytest.mark.slow
def test_python_m_entry_point_and_ctrl_c_on_stats_watch(url: str, tmp_path: Path) -> None:
    version = python_m("--version")
    assert version.communicate(timeout=30)[0].startswith("disquette")
    assert version.returncode == EXIT_OK
    output = tmp_path / "watch.out"
    with output.open("w") as stdout:
        watch = subprocess.Popen(
            [sys.executable, "-m", "disquette", "stats", "--watch", "--interval", "0.1"],
            env={**os.environ, "PYTHONPATH": str(ROOT), "DISQUETTE_URL": url},
            stdout=stdout,
        )
    try:
        wait_until(lambda: output.read_text().count("disquette stats") >= 2, what="refreshes")
        watch.send_signal(signal.SIGINT)
        assert watch.wait(30) == EXIT_OK
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()


def test_migrate_applies_postgres_migrations_once_and_explains_other_stores(url: str) -> None:
    from tests.servers.postgres import fresh_url

    postgres = fresh_url(migrate="false")
    first = run("migrate", "--url", postgres)
    assert (first.exit_code, first.stdout.strip()) == (EXIT_OK, "1, 2, 3")
    again = run("migrate", "--url", postgres)
    assert (again.exit_code, again.stdout.strip()) == (EXIT_OK, "up to date")
    sqlite = run("migrate", "--url", url)
    assert sqlite.exit_code == EXIT_OK
    assert sqlite.stdout.startswith("nothing to migrate: the sqlite store")
