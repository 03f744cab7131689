"""The built distributions, and a clean virtualenv with the wheel installed from them.

The virtualenv uses the newest CPython 3.11 to 3.14 this machine has (the suite itself runs
on the development virtualenv's, so two versions are covered where two are installed; with
``DISQUETTE_TEST_ALL_PYTHONS=1``, every version found gets one), installs
``disquette[all,conformance]`` from the wheel with every package pinned by
``constraints.txt``, and is made once per session: the wheel tests and the Django 6 project
share it.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Dist:
    """A wheel and an sdist built from the work tree."""

    wheel: Path
    sdist: Path


@dataclass(frozen=True)
class Venv:
    """A clean virtualenv with the wheel installed (extras ``all`` and ``conformance``)."""

    path: Path
    version: tuple[int, int]

    @property
    def python(self) -> Path:
        """The virtualenv's interpreter."""
        return self.path / "bin" / "python"

    def run(
        self, *args: str | Path, cwd: Path | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a command from the virtualenv's ``bin`` with a clean environment."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "DISQUETTE"))}
        env["PATH"] = f"{self.path / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        command = [str(arg) for arg in args]
        return subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-d", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return Dist(wheel, sdist)


def _version(python: str) -> tuple[int, int] | None:
    """The interpreter's version, or None when it does not run (a pyenv shim of a version
    that is not selected, say)."""
    try:
        found = subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except OSError:
        return None
    parts = found.stdout.split()
    return (int(parts[0]), int(parts[1])) if found.returncode == 0 and len(parts) == 2 else None


def pythons() -> dict[tuple[int, int], str]:
    """One CPython per minor version from 3.11 to 3.14, found on PATH or under pyenv."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = [f"python3.{minor}" for minor in range(14, 10, -1)]
    candidates += sorted(glob.glob(f"{root}/versions/3.1[1-4]*/bin/python3"), reverse=True)
    candidates.append(getattr(sys, "_base_executable", sys.executable))
    found: dict[tuple[int, int], str] = {}
    for python in candidates:
        version = _version(python)
        if version and (3, 11) <= version <= (3, 14):
            found.setdefault(version, python)
    return found


#: ``DISQUETTE_TEST_ALL_PYTHONS=1`` runs the wheel checks on every Python found, not only
#: on the newest (each costs a virtualenv and an install).
ALL_PYTHONS: Final = os.environ.get("DISQUETTE_TEST_ALL_PYTHONS", "") == "1"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``venv`` by the Python versions to check."""
    if "venv" in metafunc.fixturenames:
        found = sorted(pythons())
        chosen = found if ALL_PYTHONS else found[-1:]
        ids = [f"py{major}.{minor}" for major, minor in chosen]
        metafunc.parametrize("venv", chosen, ids=ids, indirect=True, scope="session")


def make_venv(dist: Dist, version: tuple[int, int], where: Path) -> Venv:
    """A virtualenv of that Python with the wheel installed (extras ``all`` and
    ``conformance``: pytest and hypothesis)."""
    path = where / "venv"
    subprocess.run([pythons()[version], "-m", "venv", str(path)], check=True, capture_output=True)
    made = Venv(path, version)
    installed = made.run(
        made.python,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",  # byte-compiling Django alone takes longer than the install
        "-c",
        ROOT / "constraints.txt",
        # conformance: pytest (to check the plugin loads through its entry point) and
        # hypothesis, to run the conformance suite from the wheel.
        f"disquette[all,conformance] @ {dist.wheel.as_uri()}",
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr
    return made


_made: dict[tuple[int, int], Venv] = {}


def _venv_of(version: tuple[int, int], dist: Dist, factory: pytest.TempPathFactory) -> Venv:
    if version not in _made:
        _made[version] = make_venv(dist, version, factory.mktemp(f"venv{version[1]}"))
    return _made[version]


@pytest.fixture(scope="session")
def venv(
    request: pytest.FixtureRequest, dist: Dist, tmp_path_factory: pytest.TempPathFactory
) -> Venv:
    """The clean virtualenv of one Python version (see ``pytest_generate_tests``)."""
    return _venv_of(request.param, dist, tmp_path_factory)


@pytest.fixture(scope="session")
def newest_venv(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """The clean virtualenv of the newest Python found (Django 6 needs 3.12+)."""
    return _venv_of(max(pythons()), dist, tmp_path_factory)


def wheel_name(text: str) -> str:
    """A distribution name as wheel file names spell it."""
    return re.sub(r"[-_.]+", "_", text).lower()
