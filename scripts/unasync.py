#!/usr/bin/env python3
"""Generate the sync flavor from the asyncio source (as httpcore's scripts/unasync.py).

    python scripts/unasync.py          # rewrite the generated files
    python scripts/unasync.py --check  # exit 1 if a generated file is stale (run by the tests)

Each ``x_async.py`` under the roots below is a source; ``x.py`` beside it is its generated
twin (psycopg's layout), so a module and its sync flavour sit side by side.
The source names its flavour-specific pieces ``Async*``/``async_*`` and imports them from
``disquette._concurrency``, which holds both twins; the substitutions below map the names.

The generator keeps itself honest, and exits 1 naming the problem when:
- a substitution matches nowhere in the sources (it is dead, or a rename broke it);
- generated text still says ``asyncio``, ``await``, ``async def/with/for`` (a flavour leak);
- a source carries a line-dropping marker (flavour code belongs in ``_concurrency.py``).
Each output goes through ``ruff check --fix --select F401,I001`` and ``ruff format``, so an
import only one flavour uses disappears from the other.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE_ROOTS = [ROOT / "src/disquette", ROOT / "tests"]
SOURCE_SUFFIX = "_async.py"

SUBSTITUTIONS = [
    # AsyncStore -> Store, AsyncClient -> Client, psycopg's AsyncConnection -> Connection...
    (r"\bAsync([A-Z]\w*)", r"\1"),
    # async_sleep -> sleep: _concurrency.py's function twins.
    (r"\basync_(\w+)", r"\1"),
    (r"\bconnect_async\b", "connect"),
    # Source modules in imports: from .client_async import ... -> from .client import ...
    (r"\b(\w+)_async(?=\s+import\b)", r"\1"),
    (r"\bopen_async_store\b", "open_store"),
    (r"\bStopAsyncIteration\b", "StopIteration"),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\b__aiter__\b", "__iter__"),
    (r"\b__anext__\b", "__next__"),
    (r"\baclose\b", "close"),
    (r"\basync def\b", "def"),
    (r"\basync with\b", "with"),
    (r"\basync for\b", "for"),
    (r"\bawait ", ""),
    (r"asyncio flavor", "sync flavor"),
    # Store-specific driver names go below, one line each.
    (r"\bredis\.asyncio\b", "redis"),
    (r"\bAwaitable\[(\w+)\]", r"\1"),  # postgres: Callable[..., Awaitable[T]] -> T
]

#: What generated text must not say: each is a piece of the asyncio flavour left behind.
LEAK = re.compile(r"\basyncio\b|\bawait |\basync (?:def|with|for)\b")

#: Line fragments a leak may legitimately match, each with its reason.
LEAK_ALLOWED: dict[str, str] = {
    "This file is the asyncio source": "a module docstring names the source it is generated from",
    "drivers have an asyncio API": "the stores package docstring says why its stores are generated",
    "(sync or asyncio)": "an error message that names both flavours",
}

#: The retired line-dropping marker (spelled in two pieces so this file does not carry it).
MARKER = "# unasync" + ": drop"


class GeneratorError(Exception):
    """A problem that makes the generated code untrustworthy; the message names it."""


@dataclass
class Run:
    """What one generation pass saw: substitution use counts and the problems found."""

    used: dict[str, int] = field(default_factory=lambda: {p: 0 for p, _ in SUBSTITUTIONS})
    problems: list[str] = field(default_factory=list)


def _ruff() -> list[str]:
    """The ruff command: the one beside this Python, else the one on PATH."""
    beside = Path(sys.executable).parent / "ruff"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("ruff")
    if found is None:
        raise GeneratorError("ruff is needed to tidy generated code: pip install ruff")
    return [found]


def tidy(text: str, target: Path) -> str:
    """Drop unused imports, sort the rest and format, as ruff would for ``target``."""
    name = str(target)
    fixed = subprocess.run(
        [*_ruff(), "check", "--fix", "--exit-zero", "--quiet", "--select", "F401,I001",
         "--stdin-filename", name, "-"],
        input=text, capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    if fixed.returncode != 0:
        raise GeneratorError(f"ruff check failed on {name}: {fixed.stderr.strip()}")
    formatted = subprocess.run(
        [*_ruff(), "format", "--quiet", "--stdin-filename", name, "-"],
        input=fixed.stdout, capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    if formatted.returncode != 0:
        raise GeneratorError(f"ruff format failed on {name}: {formatted.stderr.strip()}")
    return formatted.stdout


def unasync_text(text: str, source: Path, run: Run | None = None) -> str:
    """Apply the substitutions to one source's text; record use counts and problems in ``run``."""
    run = run if run is not None else Run()
    shown = _shown(source)
    for number, line in enumerate(text.splitlines(), 1):
        if MARKER in line:
            run.problems.append(
                f"{shown}:{number}: drop marker: move flavour code to _concurrency.py"
            )
    out = text
    for pattern, replacement in SUBSTITUTIONS:
        out, count = re.subn(pattern, replacement, out)
        run.used[pattern] += count
    for number, line in enumerate(out.splitlines(), 1):
        if LEAK.search(line) and not _allowed(line):
            run.problems.append(f"{shown}:{number}: asyncio leaks into sync code: {line.strip()}")
    header = f"# Generated by scripts/unasync.py from {shown}: do not edit.\n"
    if len(header) > 101:  # past ruff's line length (100)
        header = f"# Generated by scripts/unasync.py from {shown}:\n# do not edit.\n"
    return header + out


def _shown(source: Path) -> str:
    return str(source.relative_to(ROOT)) if source.is_relative_to(ROOT) else str(source)


def _allowed(line: str) -> bool:
    return any(part in line for part in LEAK_ALLOWED)


def generate(sources: dict[Path, str]) -> dict[Path, str]:
    """Map each source path to its generated text, or raise naming every problem."""
    run = Run()
    texts = {source: unasync_text(text, source, run) for source, text in sources.items()}
    run.problems.extend(
        f"unused substitution: {pattern}" for pattern, count in run.used.items() if not count
    )
    if run.problems:
        raise GeneratorError("\n".join(run.problems))
    return texts


def twin(source: Path) -> Path:
    """The generated file beside a source: ``x_async.py`` -> ``x.py``."""
    return source.with_name(source.name[: -len(SOURCE_SUFFIX)] + ".py")


def sources_on_disk() -> list[Path]:
    """Every ``*_async.py`` source under the roots."""
    return sorted(path for root in SOURCE_ROOTS for path in root.rglob(f"*{SOURCE_SUFFIX}"))


def main(check: bool) -> int:
    sources = {source: source.read_text() for source in sources_on_disk()}
    try:
        texts = generate(sources)
        expected = {twin(source): tidy(text, twin(source)) for source, text in texts.items()}
    except GeneratorError as exc:
        print(exc, file=sys.stderr)
        return 1
    stale = [
        target
        for target, content in expected.items()
        if not target.exists() or target.read_text() != content
    ]
    stale += orphans(set(expected))
    if check and stale:
        for path in stale:
            print(f"stale generated file: {path.relative_to(ROOT)}", file=sys.stderr)
        print("run: python scripts/unasync.py", file=sys.stderr)
        return 1
    for target in stale:
        if target in expected:
            target.write_text(expected[target])
        else:
            target.unlink()
    return 0


def orphans(expected: set[Path]) -> list[Path]:
    """Generated files whose source is gone (their header names it)."""
    return sorted(
        path
        for root in SOURCE_ROOTS
        for path in root.rglob("*.py")
        if path not in expected and path.read_text().startswith("# Generated by scripts/unasync.py")
    )


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv[1:]))
