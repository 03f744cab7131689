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


def test_the_wheel_declares_the_command_and_the_plugins(dist: Dist) -> None:
    with zipfile.ZipFile(dist.wheel) as wheel:
        entry_points = wheel.read("disquette-0.1.0.dist-info/entry_points.txt").decode()
        metadata = wheel.read("disquette-0.1.0.dist-info/METADATA").decode()
    assert "disquette = disquette.cli:main" in entry_points
    assert "disquette = disquette.testing.pytest_plugin" in entry_points
    extras = ["postgres", "redis", "server", "django", "flask", "starlette", "prometheus", "otel"]
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
