"""Fixtures of the fault suite: a test network torn down whatever happens, and the table
of figures (scenario, jobs added, acknowledged adds, done, lost, duplicates, time to
recover) printed at the end of the run and kept in ``faults-table.md`` under pytest's
base temporary directory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from .hosts import Network, check_namespaces

COLUMNS = ("scenario", "added", "acked adds", "done", "lost", "duplicates", "recovery s")


@pytest.fixture
def network() -> Iterator[Network]:
    """A hub namespace with a bridge; hosts are added with ``network.host(name)``."""
    check_namespaces()
    net = Network().open()
    try:
        yield net
    finally:
        net.close()


@pytest.fixture(scope="session")
def table_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where scenarios append their row (JSON lines)."""
    return tmp_path_factory.getbasetemp() / "faults-table.jsonl"


@pytest.fixture
def record(table_file: Path) -> object:
    """``record(scenario, added, acked, done, lost, duplicates, recovery)``: one row."""

    def add(*values: object) -> None:
        with table_file.open("a") as out:
            out.write(json.dumps(dict(zip(COLUMNS, values, strict=True))) + "\n")

    return add


def render(rows: list[dict[str, object]]) -> str:
    """The rows as a Markdown table."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [row[name] for name in COLUMNS]
        lines.append(
            "| " + " | ".join(f"{c:.1f}" if isinstance(c, float) else str(c) for c in cells) + " |"
        )
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the figures of the scenarios that ran, and keep them as Markdown."""
    config = terminalreporter.config
    base = config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    source = base / "faults-table.jsonl"
    if not source.exists():
        return
    rows = [json.loads(line) for line in source.read_text().splitlines() if line]
    text = render(rows)
    (base / "faults-table.md").write_text(text + "\n")
    terminalreporter.write_sep("=", "faults across hosts")
    terminalreporter.write_line(text)
    terminalreporter.write_line(f"(kept in {base / 'faults-table.md'})")
