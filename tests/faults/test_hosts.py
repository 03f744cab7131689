"""The suite's own rule: without root it skips loudly, except under ``CI=true``, where it
fails (a CI run must not pass without the fault scenarios)."""

from __future__ import annotations

import os

import pytest

from . import hosts


def test_without_root_the_suite_skips_saying_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="network namespaces need root"):
        hosts.check_namespaces()


def test_without_root_the_suite_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="network namespaces need root"):
        hosts.check_namespaces()
