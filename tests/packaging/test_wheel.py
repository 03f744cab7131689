"""The wheel and sdist as users get them: their files, and the wheel at work in a clean
virtualenv (``disquette demo``, and an import that pulls in no optional dependency)."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

from .conftest import ROOT, Dist, Venv

#: Modules of optional dependencies (the extras): ``import disquette`` must import none.
OPTIONAL = ["psycopg", "psycopg_pool", "redis", "hiredis", "uvloop", "django", "flask"]
OPTIONAL += ["starlette", "prometheus_client", "opentelemetry", "jinja2", "uvicorn"]
OPTIONAL += ["pytest", "hypothesis"]  # the conformance suite's (extra conformance)


def package_data() -> set[str]:
    """Every file of the package that is not Python source: SQL, Lua, py.typed..."""
    source = ROOT / "src"
    return {
        path.relative_to(source).as_posix()
        for path in (source / "disquette").rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc")
    }


def test_the_wheel_carries_the_package_data(dist: Dist) -> None:
    names = set(zipfile.ZipFile(dist.wheel).namelist())
    data = package_data()
    assert {"disquette/py.typed", "disquette/stores/sqlite/schema.sql"} <= data
    assert any(name.endswith(".lua") for name in data)
    dashboard = {"disquette/web/templates/base.html", "disquette/web/static/htmx.min.js"}
    assert dashboard <= data
    assert data <= names, sorted(data - names)
    assert "disquette/testing/pytest_plugin.py" in names
    suite = {name for name in names if name.startswith("disquette/testing/conformance/")}
    source = ROOT / "src" / "disquette" / "testing" / "conformance"
    assert {f"disquette/testing/conformance/{path.name}" for path in source.glob("*.py")} == suite
    assert {
        "disquette/testing/conformance/plugin.py",
        "disquette/testing/conformance/test_leases_async.py",
    } <= suite


def test_the_wheel_declares_the_command_and_the_plugins(dist: Dist) -> None:
    with zipfile.ZipFile(dist.wheel) as wheel:
        entry_points = wheel.read("disquette-0.1.0.dist-info/entry_points.txt").decode()
        metadata = wheel.read("disquette-0.1.0.dist-info/METADATA").decode()
    assert "disquette = disquette.cli:main" in entry_points
    assert "disquette = disquette.testing.pytest_plugin" in entry_points
    extras = ["postgres", "redis", "server", "django", "flask", "starlette", "prometheus", "otel"]
    extras.append("conformance")
    for extra in [*extras, "all"]:
        assert f"Provides-Extra: {extra}" in metadata
    assert "<" not in "".join(line for line in metadata.splitlines() if "Requires-Dist" in line)


def test_the_sdist_carries_sources_tests_and_docs_but_no_local_state(dist: Dist) -> None:
    with tarfile.open(dist.sdist) as sdist:
        names = {name.partition("/")[2] for name in sdist.getnames()}
    assert {"pyproject.toml", "README.md", "constraints.txt", "mkdocs.yml"} <= names
    assert {"src/disquette/stores/sqlite/schema.sql", "tests/conftest.py"} <= names
    assert any(name.startswith("docs/") for name in names)
    assert not [name for name in names if name.startswith(".venv") or name.endswith(".db")]


def test_the_demo_runs_from_the_installed_wheel(venv: Venv) -> None:
    demo = venv.run("disquette", "demo", "--jobs", "200", "--paced", "20", "--rate", "1000")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "220 / 220" in demo.stdout


def test_import_pulls_in_no_optional_dependency(venv: Venv) -> None:
    check = (
        "import importlib.util, sys\n"
        f"optional = {OPTIONAL!r}\n"
        "missing = [m for m in optional if importlib.util.find_spec(m) is None]\n"
        "assert not missing, f'extras not installed, the check would prove nothing: {missing}'\n"
        "import disquette, disquette.testing, disquette.stores\n"
        "print(disquette.__file__)\n"
        "print(' '.join(sorted(set(optional) & set(sys.modules))))\n"
    )
    found = venv.run(venv.python, "-c", check)
    assert found.returncode == 0, found.stderr
    where, imported = found.stdout.splitlines()
    assert "site-packages" in where  # the wheel, not the work tree
    assert imported == ""


def test_the_pytest_plugin_loads_through_its_entry_point(venv: Venv, tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(
        "import disquette\n"
        "\n"
        "def test_fixture_from_the_plugin(disquette_client):\n"
        "    with disquette.connect() as jobs:\n"
        "        job_id = jobs.add('x', 'q')\n"
        "    assert disquette_client.show(job_id).body == 'x'\n"
    )
    run = venv.run(venv.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout


CONFORMANCE_CONFTEST = """
import itertools

from disquette.stores.memory import MemoryStore
from disquette.testing.conformance import ConformanceStore

pytest_plugins = ["disquette.testing.conformance.plugin"]

names = itertools.count()


def fresh_url(tmp_path):
    return f"memory://wheel-conformance-{next(names)}"


def pytest_disquette_conformance_stores(config):
    return [ConformanceStore("mem", fresh_url, MemoryStore.capabilities)]
"""


def test_the_conformance_suite_runs_from_the_installed_wheel(venv: Venv, tmp_path: Path) -> None:
    # As the author of another store runs it: from site-packages (the clean environment has
    # no other disquette), with --pyargs, its store declared in the project's conftest.
    (tmp_path / "conftest.py").write_text(CONFORMANCE_CONFTEST)
    (tmp_path / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    args = ["--pyargs", "disquette.testing.conformance", "-v", "-p", "no:cacheprovider"]
    run = venv.run(venv.python, "-m", "pytest", *args, "-k", "test_leases", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "test_leases_async.py::test_lease_expiry_redelivers_and_counts[mem] PASSED" in run.stdout
    assert " failed" not in run.stdout
