"""Headers on the command line: ``add --header NAME=VALUE`` (repeatable) and ``show``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from disquette import connect
from disquette.cli import EXIT_OK, EXIT_USAGE

from .test_cli import one_line_error, run


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A fresh SQLite store."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    connect(url).close()
    return url


def test_add_with_headers_and_show_them(url: str) -> None:
    added = run(
        "add", "q", "body", "--header", "traceparent=00-abc-01", "-H", "clé=a=b é", "-H",
        "empty=", "--header", "markup=[bold]x[/bold]", "--url", url,
    )  # fmt: skip
    assert added.exit_code == EXIT_OK, added.output
    job_id = added.stdout.strip()
    expected = {"traceparent": "00-abc-01", "clé": "a=b é", "empty": "", "markup": "[bold]x[/bold]"}
    with connect(url) as client:
        assert client.show(job_id).headers == expected
    shown = run("show", job_id, "--json", "--url", url)
    assert json.loads(shown.stdout)["headers"] == expected
    table = run("show", job_id, "--url", url)
    assert table.exit_code == EXIT_OK
    lines = table.stdout.splitlines()
    for name, value in expected.items():
        assert any(line.rstrip().endswith(f"{name}: {value}".rstrip()) for line in lines), name
    plain = run("add", "q", "no headers", "--url", url).stdout.strip()
    assert json.loads(run("show", plain, "--json", "--url", url).stdout)["headers"] == {}


def test_bad_headers_are_one_line_usage_errors(url: str) -> None:
    for args, message in [
        (["--header", "no-equals"], "is not NAME=VALUE"),
        (["--header", "=value"], "header name"),
        (["--header", f"big={'x' * 9000}"], "bytes in all"),
    ]:
        result = run("add", "q", "x", *args, "--url", url)
        assert result.exit_code == EXIT_USAGE, args
        assert message in one_line_error(result)
    with connect(url) as client:
        assert client.qlen("q") == 0
