"""Every Python sample of the README and of docs/ compiles, and every one that can run runs
(in a fresh directory, with no ``$DISQUETTE_URL``); the docs site builds with ``--strict``
in scripts/test."""

from __future__ import annotations

import ast
import asyncio
import inspect
import types
from pathlib import Path

import pytest

from disquette import App, Client

from .samples import ROOT, Sample, pages, samples

#: Names the samples leave to the reader, stubbed for the test.
STUBS = {"send": lambda body: None, "deliver": lambda address: None}


def _compile(item: Sample) -> types.CodeType:
    code: types.CodeType = compile(
        item.source,
        f"{item.page} sample {item.index} ({item.heading})",
        "exec",
        flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
    )
    return code


@pytest.mark.parametrize("page", pages(), ids=lambda page: page.relative_to(ROOT).as_posix())
def test_page_samples_run(page: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISQUETTE_URL", raising=False)
    monkeypatch.delenv("DISQUETTE_EAGER", raising=False)
    namespace: dict[str, object] = {"__name__": "__main__", **STUBS}
    try:
        for item in samples(page):
            code = _compile(item)
            if item.not_run is not None:
                continue
            result = eval(code, namespace)  # a coroutine when the sample awaits at top level
            if inspect.iscoroutine(result):
                asyncio.run(result)
    finally:
        for value in namespace.values():
            if isinstance(value, App | Client):
                value.close()


def test_the_docs_have_samples_and_say_why_some_do_not_run() -> None:
    every = [item for page in pages() for item in samples(page)]
    assert len(every) > 30
    assert all(item.not_run for item in every if "django.tasks" in item.source)
    assert sum(item.not_run is None for item in every) > 20
