"""The packaged conformance suite, as the author of a third-party store runs it.

The author's package is real: installed as pip would (a package and its ``.dist-info`` with
a ``disquette.stores`` entry point) in a directory on ``PYTHONPATH``; the project's
``conftest.py`` loads the suite's plugin and declares its store, and ``pytest --pyargs
disquette.testing.conformance`` runs the suite in a subprocess (``pytester``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import disquette

pytest_plugins = ["pytester"]

#: The author's store package: ``acme://`` is the memory store under another scheme, and
#: ``lazyacme://`` the same with an ``ack`` that does nothing.
PACKAGE = """
from disquette.stores import StoreKind

KIND = StoreKind("acme_store.store")
LAZY = StoreKind("acme_store.lazy")
"""

STORE = """
from disquette.stores.memory import open_memory_store


def open_url(url, clock):
    return open_memory_store("acme-" + url.partition("://")[2], clock)
"""

LAZY = """
import threading

from disquette.stores.memory import MemoryStore

_named = {}
_lock = threading.Lock()


class LazyStore(MemoryStore):
    def ack(self, job_ids, results=None, *, connection=None, attempts=None):
        return []  # the bug: the jobs stay active


def open_url(url, clock):
    with _lock:
        return _named.setdefault(url, LazyStore(clock, url=url))
"""

ENTRY_POINTS = """
[disquette.stores]
acme = acme_store:KIND
lazyacme = acme_store:LAZY
"""

#: The project's conftest: its store, with the capabilities its class states (or fewer).
CONFTEST = """
import itertools
import os

import pytest

from disquette.stores.memory import MemoryStore
from disquette.testing.conformance import ConformanceStore

pytest_plugins = ["disquette.testing.conformance.plugin"]

SCHEME = "@SCHEME@"
CAPABILITIES = @CAPABILITIES@
names = itertools.count()


def fresh_url(tmp_path):
    return f"{SCHEME}://conformance-{os.getpid()}-{next(names)}"


def pytest_disquette_conformance_stores(config):
    return [ConformanceStore("acme", fresh_url, CAPABILITIES)]


@pytest.fixture
def clock():
    return "the project's own clock, which the suite's tests must not get"
"""

#: Where a lost ack shows (the suite's other test of results, a ``wait`` on the manual clock,
#: would wait for ever on a store that forgets its acks).
LOST_ACKS = "test_results and not wait_times_out"


def install(root: Path) -> None:
    """Write the acme-store distribution as pip would install it into ``root``."""
    package = root / "acme_store"
    package.mkdir(parents=True)
    for name, text in {"__init__": PACKAGE, "store": STORE, "lazy": LAZY}.items():
        (package / f"{name}.py").write_text(text)
    info = root / "acme_store-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-store\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    (info / "RECORD").write_text("")


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """The author's project, its store package installed on ``PYTHONPATH``."""
    site = pytester.path / "site"
    install(site)
    source = str(Path(disquette.__file__).parents[1])
    path = [str(site), source, os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path))
    pytester.makeini("[pytest]\n")
    return pytester


def declare(project: pytest.Pytester, scheme: str, capabilities: str) -> None:
    """Write the project's conftest: its store under ``scheme``, with ``capabilities``."""
    conftest = CONFTEST.replace("@SCHEME@", scheme).replace("@CAPABILITIES@", capabilities)
    project.makeconftest(conftest)


def run_suite(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    """``pytest --pyargs disquette.testing.conformance`` in the project, in a subprocess."""
    return project.runpytest_subprocess(
        "--pyargs", "disquette.testing.conformance", "-p", "no:cacheprovider", "-q", *args
    )


def test_a_store_that_keeps_the_semantics_passes_the_whole_suite(
    project: pytest.Pytester,
) -> None:
    declare(project, "acme", "MemoryStore.capabilities")
    result = run_suite(project)  # a few seconds on a memory store
    outcomes = result.parseoutcomes()
    assert result.ret == 0, result.stdout.str()
    assert set(outcomes) == {"passed"}
    assert outcomes["passed"] >= 280  # sync and asyncio flavours, and the model test


def test_a_store_that_forgets_its_acks_fails(project: pytest.Pytester) -> None:
    declare(project, "lazyacme", "MemoryStore.capabilities")
    result = run_suite(project, "-k", LOST_ACKS)
    outcomes = result.parseoutcomes()
    assert result.ret == 1
    assert outcomes["failed"] >= 6
    result.stdout.fnmatch_lines(["FAILED *test_ack_tells_which_ids_became_done[[]acme[]]*"])


def test_its_capabilities_decide_the_strict_xfails(project: pytest.Pytester) -> None:
    # Stated to lack failure bookkeeping: the tests needing it are strict xfails there. The
    # memory store has it, so they pass: XPASS(strict), which fails the run.
    declare(project, "acme", "MemoryStore.capabilities.replace(failures=False)")
    result = run_suite(project, "-k", "test_failures", "-rX")
    outcomes = result.parseoutcomes()
    assert result.ret == 1
    assert outcomes["failed"] >= 2  # sync and asyncio
    assert "xfailed" not in outcomes
    result.stdout.fnmatch_lines(["*XPASS(strict)*acme lacks failures: keeps no error count*"])


def test_a_store_that_states_what_it_lacks_gets_xfails(project: pytest.Pytester) -> None:
    # The lazy store, honest about it: the tests needing results become strict xfails.
    declare(project, "lazyacme", "MemoryStore.capabilities.replace(results=False)")
    result = run_suite(project, "-k", LOST_ACKS)
    outcomes = result.parseoutcomes()
    assert result.ret == 1, "ack_tells_which_ids_became_done needs no capability: it fails"
    assert outcomes["xfailed"] >= 4


def test_importing_the_suite_without_pytest_says_what_to_install() -> None:
    source = str(Path(disquette.__file__).parents[1])
    check = (
        "import sys\n"
        "sys.modules['pytest'] = None  # as if it were not installed\n"
        "import disquette, disquette.testing\n"
        "try:\n"
        "    import disquette.testing.conformance\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    env = dict(os.environ, PYTHONPATH=source)
    run = subprocess.run(
        [sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert "needs pytest and hypothesis: pip install 'disquette[conformance]'" in run.stdout
