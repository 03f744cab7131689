"""The ``disquette`` command line: every command, its exit status, its one-line errors.

Most tests run the click command in-process on a SQLite file; a few run
``python -m disquette`` for real (the demo, Ctrl-C on ``stats --watch``, the entry point).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

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
    """A fresh SQLite store (its file exists: commands that only read refuse a missing one)."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    connect(url).close()
    return url


def run(*args: str, input: str | bytes | None = None, env: dict[str, str] | None = None) -> Result:
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
        assert "store refused: cannot open SQLite file" in one_line_error(down)


def python_m(*args: str, cwd: Path = ROOT) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "disquette", *args],
        cwd=cwd,
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
    from disquette.stores.postgres.statements import migrations
    from tests.servers.postgres import fresh_url

    postgres = fresh_url(migrate="false")
    schema = parse_qs(urlsplit(postgres).query)["schema"][0]
    versions = [version for version, _name, _text in migrations()]
    assert versions == list(range(1, len(versions) + 1))
    latest, applied = versions[-1], ", ".join(map(str, versions))
    first = run("migrate", "--url", postgres)
    said = f"schema {schema!r} at version {latest} (applied {applied})"
    assert (first.exit_code, first.stdout.strip()) == (EXIT_OK, said)
    again = run("migrate", "--url", postgres)
    said = f"schema {schema!r} already at version {latest}"
    assert (again.exit_code, again.stdout.strip()) == (EXIT_OK, said)
    sqlite = run("migrate", "--url", url)
    assert sqlite.exit_code == EXIT_OK
    assert sqlite.stdout.startswith("nothing to migrate: the sqlite store")


# -- bodies that are not text --------------------------------------------------------------

NOT_UTF8 = bytes([0xFF, 0xFE, 0x00, 0x80, 0x0A, 0xC3]) + b"tail"


def test_binary_bodies_round_trip_through_add_show_and_get(url: str) -> None:
    from_stdin = run("add", "q", "-", "--url", url, input=NOT_UTF8)
    assert from_stdin.exit_code == EXIT_OK, from_stdin.output
    # An argument that is not UTF-8 reaches Python surrogate-escaped, as argv does.
    from_argv = run("add", "q", os.fsdecode(NOT_UTF8), "--url", url)
    assert from_argv.exit_code == EXIT_OK, from_argv.output
    encoded = base64.b64encode(NOT_UTF8).decode()
    from_base64 = run("add", "q", encoded, "--base64", "--url", url)
    # base64 on stdin, wrapped as base64(1) wraps it, with its newline.
    wrapped = "\n".join(encoded[i : i + 4] for i in range(0, len(encoded), 4)) + "\n"
    from_base64_stdin = run("add", "q", "-", "--base64", "--url", url, input=wrapped)
    ascii_as_bytes = run("add", "q", base64.b64encode(b"plain").decode(), "--base64", "--url", url)
    ids = [
        result.stdout.strip()
        for result in (from_stdin, from_argv, from_base64, from_base64_stdin, ascii_as_bytes)
    ]
    with connect(url) as client:
        assert [client.show(job_id).body for job_id in ids] == [NOT_UTF8] * 4 + [b"plain"]
    for job_id in ids[:4]:
        shown = json.loads(run("show", job_id, "--json", "--url", url).stdout)
        assert (shown["body"], shown["encoding"]) == ({"base64": encoded}, "bytes")
        table = run("show", job_id, "--url", url)
        assert table.exit_code == EXIT_OK
        assert f'{{"base64": "{encoded}"}}' in table.stdout
    got = run("get", "q", "--count", "4", "--json", "--url", url).stdout.splitlines()
    bodies = [json.loads(line)["body"] for line in got]
    assert [base64.b64decode(body["base64"]) for body in bodies] == [NOT_UTF8] * 4
    line = run("get", "q", "--url", url).stdout
    assert line == f"{ids[4]}\tq\tplain\n"  # bytes that are text print as text
    run("nack", *ids[:4], "--url", url)
    line = run("get", "q", "--url", url).stdout
    assert line == f"{ids[0]}\tq\tbase64:{encoded}\n"
    text = run("add", "q", "-", "--url", url, input="caf\u00e9\r\n".encode())
    with connect(url) as client:
        assert client.show(text.stdout.strip()).body == "caf\u00e9\r\n"  # UTF-8: text, exactly


def test_add_refuses_bad_base64_and_base64_with_json(url: str) -> None:
    bad = run("add", "q", "not base64!", "--base64", "--url", url)
    assert bad.exit_code == EXIT_USAGE
    assert "not base64" in one_line_error(bad)
    both = run("add", "q", "e30=", "--base64", "--json", "--url", url)
    assert both.exit_code == EXIT_USAGE
    assert "--json and --base64" in one_line_error(both)
    json_bytes = run("add", "q", "-", "--json", "--url", url, input=b'{"a": "\xc3\xa9"}')
    with connect(url) as client:
        assert client.show(json_bytes.stdout.strip()).body == {"a": "\u00e9"}
        assert client.qlen("q") == 1


# -- the store a command reads ---------------------------------------------------------------


def test_read_only_commands_refuse_a_missing_sqlite_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISQUETTE_URL", raising=False)
    job_id = "D-00000000-AAAAAAAAAAAAAAAAAAAAAAAA-0001"
    commands = [
        ["stats"],
        ["failed"],
        ["failed", "retry", "--all"],
        ["failed", "delete", job_id],
        ["show", job_id],
        ["wait", job_id],
        ["peek", "q"],
        ["qlen", "q"],
        ["ack", job_id],
        ["nack", job_id],
        ["delete", job_id],
        ["recover-stale"],
    ]
    default = tmp_path / "disquette.db"
    elsewhere = tmp_path / "elsewhere.db"
    for args in commands:
        for url_args, path in (([], default), (["--url", "sqlite:///elsewhere.db"], elsewhere)):
            result = run(*args, *url_args)
            assert result.exit_code == EXIT_UNAVAILABLE, (args, result.output)
            assert f"no SQLite store at {path}" in one_line_error(result), args
    assert list(tmp_path.iterdir()) == [], "nothing was created"
    # Commands that write create the store, as before.
    assert run("add", "q", "x").exit_code == EXIT_OK
    assert run("qlen", "q").stdout == "1\n"


def test_stats_and_failed_name_the_store_they_read(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "cli.db"
    for args in (["stats"], ["failed"], ["stats", "--url", "sqlite:///cli.db"]):
        result = run(*args, "--url", url, env={"COLUMNS": "200"})
        assert result.exit_code == EXIT_OK, result.output
        assert str(path) in result.stdout.splitlines()[0], args


def test_stats_names_a_postgresql_store_without_its_password() -> None:
    from tests.servers.postgres import fresh_url

    postgres = urlsplit(fresh_url())
    if postgres.password is None:  # trust authentication: any password is accepted
        user, _, host = postgres.netloc.rpartition("@")
        postgres = postgres._replace(netloc=f"{user}:s3cret-word@{host}")
    result = run("stats", "--url", postgres.geturl(), env={"COLUMNS": "300"})
    assert result.exit_code == EXIT_OK, result.output
    title = result.stdout.splitlines()[0]
    assert "postgresql://" in title
    assert postgres.hostname is not None
    assert postgres.hostname in title
    assert postgres.password is not None
    assert postgres.password not in result.stdout


def test_failed_job_ids_never_wrap(url: str) -> None:
    with connect(url) as client:
        ids = client.max_attempts(1).type("a_rather_long_job_type_name").add_many(["a", "b"], "q")
        for _ in ids:
            client.fail(client.get("q"), "Traceback...\nValueError: " + "much to say " * 20)
    for columns in ("80", "60", "120"):
        listed = run("failed", "--url", url, env={"COLUMNS": columns})
        assert listed.exit_code == EXIT_OK
        lines = listed.stdout.splitlines()
        for job_id in ids:
            assert any(job_id in line for line in lines), (columns, listed.stdout)
        assert "ValueError: much to say" in listed.stdout, columns
        shown = run("show", ids[0], "--url", url, env={"COLUMNS": "50"})
        assert any(ids[0] in line for line in shown.stdout.splitlines()), shown.stdout


# -- errors --------------------------------------------------------------------------------


def test_a_missing_driver_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cases = [
        ("postgresql://127.0.0.1:1/none", "psycopg", "postgres", "postgres"),
        ("redis://127.0.0.1:1/0", "redis", "redis", "redis"),
        ("disque://127.0.0.1:1", "hiredis", "disque", "server"),
    ]
    for url, driver, module, extra in cases:
        with monkeypatch.context() as patch:
            patch.setitem(sys.modules, driver, None)  # import driver: ModuleNotFoundError
            # Every module of the store's package: the driver's importers run again.
            package = f"disquette.stores.{module}."
            for name in [name for name in sys.modules if name.startswith(package)]:
                patch.delitem(sys.modules, name)
            result = run("qlen", "q", "--url", url)
        assert result.exit_code == EXIT_USAGE, result.output
        assert f"pip install 'disquette[{extra}]'" in one_line_error(result), url


def test_an_error_in_the_app_module_shows_its_traceback_on_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    (tmp_path / "failing_app.py").write_text(
        "import json\n\n\ndef setup():\n    raise RuntimeError('at import')\n\n\nsetup()\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISQUETTE_TRACEBACK", raising=False)
    plain = run("worker", "failing_app:app", "--url", url)
    assert plain.exit_code == EXIT_USAGE
    line = one_line_error(plain)
    assert "RuntimeError: at import" in line
    assert "--traceback or DISQUETTE_TRACEBACK=1 shows where" in line
    for args, env in ((["--traceback"], None), ([], {"DISQUETTE_TRACEBACK": "1"})):
        sys.modules.pop("failing_app", None)
        shown = run(*args, "worker", "failing_app:app", "--url", url, env=env)
        assert shown.exit_code == EXIT_USAGE
        assert shown.stderr.startswith("Traceback (most recent call last):"), shown.stderr
        assert 'failing_app.py", line 8, in <module>' in shown.stderr
        assert 'failing_app.py", line 5, in setup' in shown.stderr
        assert "<frozen importlib" not in shown.stderr
        last = shown.stderr.strip().splitlines()[-1]
        assert last == "Error: error importing 'failing_app': RuntimeError: at import"


def test_add_after_makes_a_job_wait_for_its_parents() -> None:
    url = "memory://cli-dependencies"
    parent = run("add", "jobs", "first", "--url", url).stdout.strip()
    child = run("add", "jobs", "second", "--after", parent, "--url", url).stdout.strip()
    assert json.loads(run("show", child, "--json", "--url", url).stdout)["state"] == "waiting"
    assert run("get", "jobs", "--url", url).stdout.startswith(parent)
    assert run("ack", parent, "--url", url).exit_code == EXIT_OK
    assert run("get", "jobs", "--url", url).stdout.startswith(child)
    refused = CliRunner().invoke(main, ["add", "jobs", "x", "--after", "nope", "--url", url])
    assert refused.exit_code != EXIT_OK
