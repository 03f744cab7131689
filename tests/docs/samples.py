"""The Python samples of the README and of the documentation pages under docs/.

A sample is a fenced ``python`` block. The samples of one page run in order in one
namespace (as a reader reads them), as ``__main__``. A block preceded by the line
``<!-- not-run: REASON -->`` is only compiled: the page says why it cannot run (a Django
settings module, a peer's code, a PostgreSQL DSN of the reader's).
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_RUN = re.compile(r"<!--\s*not-run:\s*(.+?)\s*-->")


@dataclass(frozen=True)
class Sample:
    """One python block of a page."""

    page: str
    index: int
    heading: str
    source: str
    #: Why it is only compiled, or None when it runs.
    not_run: str | None


def pages() -> list[Path]:
    """The README and every documentation page."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def samples(page: Path) -> list[Sample]:
    """The python blocks of a page, in order."""
    found: list[Sample] = []
    heading, previous = "", ""
    lines = iter(page.read_text().splitlines())
    name = page.relative_to(ROOT).as_posix()
    for line in lines:
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.strip() == "```python":
            indent = line[: len(line) - len(line.lstrip())]
            body = []
            for inner in lines:
                if inner.strip() == "```":
                    break
                body.append(inner.removeprefix(indent))
            reason = NOT_RUN.search(previous)
            source = textwrap.dedent("\n".join(body)) + "\n"
            found.append(
                Sample(name, len(found), heading, source, reason.group(1) if reason else None)
            )
        if line.strip():
            previous = line
    return found


def sample(page: str, heading: str, index: int = 0) -> str:
    """The source of the ``index``-th sample under ``heading`` of ``page``."""
    under = [s for s in samples(ROOT / page) if s.heading == heading]
    return under[index].source
