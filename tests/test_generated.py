"""The sync flavor is generated; a stale copy would be a second, drifting implementation.

The generator also checks itself: a substitution that matches nothing, asyncio left in the
generated text, or a line-dropping marker in a source each stop it with exit status 1.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts/unasync.py"


def test_generated_sync_code_is_current() -> None:
    check = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr


@pytest.fixture
def unasync(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A fresh copy of the generator module, for tests to adjust."""
    spec = importlib.util.spec_from_file_location("unasync_under_test", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_an_unused_substitution_fails_naming_the_pattern(
    unasync: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(unasync, "SUBSTITUTIONS", [*unasync.SUBSTITUTIONS, (r"\bnowhere_x\b", "y")])
    assert unasync.main(check=True) == 1
    assert "unused substitution: \\bnowhere_x\\b" in capsys.readouterr().err


def test_asyncio_left_in_generated_text_fails_naming_file_and_line(
    unasync: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the class rename: every other asyncio spelling is left behind.
    monkeypatch.setattr(unasync, "SUBSTITUTIONS", [(r"\bAsync([A-Z]\w*)", r"\1")])
    source = ROOT / "src/leaky.py"
    text = (
        "import asyncio\n"
        "class AsyncThing:\n"
        "    async def run(self) -> None:\n"
        "        async with self.lock:\n"
        "            async for _ in self.items:\n"
        "                await asyncio.sleep(0)\n"
        "    def fine(self) -> None:\n"
        "        pass\n"
    )
    with pytest.raises(unasync.GeneratorError) as raised:
        unasync.generate({source: text})
    problems = str(raised.value).splitlines()
    assert [problem.split(": ")[0] for problem in problems] == [
        f"src/leaky.py:{number}" for number in (1, 3, 4, 5, 6)
    ]
    assert all("asyncio leaks into sync code" in problem for problem in problems)


def test_allowed_asyncio_mentions_pass(
    unasync: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(unasync, "SUBSTITUTIONS", [(r"\bAsync([A-Z]\w*)", r"\1")])
    text = '"""This file is the asyncio source; the sync twin is generated."""\nAsyncX = 1\n'
    assert unasync.generate({ROOT / "src/fine.py": text})


def test_a_drop_marker_fails_naming_file_and_line(
    unasync: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(unasync, "SUBSTITUTIONS", [(r"\bAsync([A-Z]\w*)", r"\1")])
    marker = "# unasync" + ": drop"
    text = f"AsyncX = 1\ny = 2  {marker}\n"
    with pytest.raises(unasync.GeneratorError, match=r"src/marked\.py:2: drop marker"):
        unasync.generate({ROOT / "src/marked.py": text})
