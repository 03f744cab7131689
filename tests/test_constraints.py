"""The documented commands install exactly the pins in constraints.txt.

A fresh clone once failed because an open range (``redis>=5.0``) resolved to a new release;
pinning everything the commands install, and checking here that the test environment is
what the pins say, keeps an upstream release out until the pins are refreshed on purpose.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

from packaging.markers import Marker

ROOT = Path(__file__).resolve().parent.parent


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        requirement, _, marker = line.partition(";")
        if requirement and (not marker or Marker(marker.strip()).evaluate()):
            name, sep, version = requirement.strip().partition("==")
            assert sep, f"constraints.txt pins exact versions only: {line!r}"
            pins[_normalize(name)] = version
    return pins


def test_every_installed_package_is_the_pinned_release() -> None:
    pins = _pins()
    installed = {
        _normalize(dist.metadata["Name"]): dist.version
        for dist in importlib.metadata.distributions()
        if _normalize(dist.metadata["Name"]) != "disquette"
    }
    unpinned = sorted(set(installed) - set(pins))
    assert not unpinned, f"installed but not in constraints.txt: {unpinned}"
    drifted = {name: (version, pins[name]) for name, version in installed.items()}
    drifted = {name: pair for name, pair in drifted.items() if pair[0] != pair[1]}
    assert not drifted, f"installed version differs from the pin: {drifted}"


def test_the_package_itself_keeps_open_ranges() -> None:
    """Users install disquette beside their own pins: only lower bounds, never ``==``."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements.extend(extra)
    for group in tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"].values():
        requirements.extend(item for item in group if isinstance(item, str))
    assert requirements
    for requirement in requirements:
        specifier = requirement.split(";")[0]
        assert "==" not in specifier, requirement
        assert "<" not in specifier, requirement
