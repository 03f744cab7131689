"""``disquette limits``: list, set and clear queues' flow limits."""

from __future__ import annotations

from pathlib import Path

from disquette import connect
from disquette.cli import EXIT_OK, EXIT_USAGE
from disquette.stores.limits import QueueLimits

from .test_cli import one_line_error, run


def test_set_list_and_clear_limits(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    result = run("limits", "mail", "--concurrency", "3", "--rate", "10/1.5", "--url", url)
    assert result.exit_code == EXIT_OK, result.output
    assert result.stdout == "mail: concurrency 3, rate 10/1.5s\n"
    run("limits", "images", "--concurrency", "1", "--url", url)
    assert run("limits", "--url", url).stdout == (
        "images: concurrency 1\nmail: concurrency 3, rate 10/1.5s\n"
    )
    with connect(url) as client:
        assert client.limits()["mail"] == QueueLimits(3, (10, 1.5))
    assert run("limits", "mail", "--clear", "--url", url).stdout == ""
    assert run("limits", "--url", url).stdout == "images: concurrency 1\n"


def test_bad_limits_are_one_line_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    for args in (["--rate", "ten"], ["--rate", "10/0"], ["--concurrency", "0"]):
        result = run("limits", "q", *args, "--url", url)
        assert result.exit_code == EXIT_USAGE
        assert "invalid option" in one_line_error(result)
    assert run("limits", "--clear", "--url", url).exit_code == EXIT_USAGE
    assert run("limits", "q", "--clear", "--concurrency", "1", "--url", url).exit_code == (
        EXIT_USAGE
    )
