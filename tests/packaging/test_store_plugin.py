"""A third-party store plugs in through the ``disquette.stores`` entry point group.

The distribution here is real: a package and its ``.dist-info`` (what pip writes) in a
directory on ``sys.path``, found by ``importlib.metadata`` as any installed package is.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import disquette
from disquette.errors import InvalidURL

PACKAGE = '''
"""A store that keeps jobs in memory under another scheme."""

from disquette.stores import StoreKind

KIND = StoreKind("acme_store.store")
NOT_A_KIND = "acme_store.store"
'''

STORE = """
from disquette.stores.memory.store import open_url as open_memory


def open_url(url, clock):
    opened.append(url)
    return open_memory("memory://acme-" + url.partition("://")[2], clock)


opened = []
"""


def install_acme(root: Path) -> None:
    """Write the acme-store distribution as pip would install it into ``root``."""
    package = root / "acme_store"
    package.mkdir()
    (package / "__init__.py").write_text(PACKAGE)
    (package / "store.py").write_text(STORE)
    info = root / "acme_store-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-store\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent(
            """\
            [disquette.stores]
            acme = acme_store:KIND
            broken = acme_store:NOT_A_KIND
            """
        )
    )
    (info / "RECORD").write_text("")


@pytest.fixture
def acme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    install_acme(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.usefixtures("acme")
def test_an_installed_package_serves_its_scheme() -> None:
    with disquette.connect("acme://one") as jobs:
        job_id = jobs.add({"n": 1}, "q")
        job = jobs.get("q", timeout=0)
        assert (job.id, job.body) == (job_id, {"n": 1})
        jobs.ack(job)
    import acme_store.store  # type: ignore[import-not-found]  # installed by the fixture

    assert acme_store.store.opened == ["acme://one"]


@pytest.mark.usefixtures("acme")
async def test_the_async_client_opens_it_under_the_adapter() -> None:
    async with disquette.connect_async("acme://two") as jobs:
        job_id = await jobs.add("x", "q")
        assert (await jobs.get("q", timeout=0)).id == job_id


@pytest.mark.usefixtures("acme")
def test_an_unknown_scheme_lists_the_installed_ones() -> None:
    with pytest.raises(InvalidURL, match=r"known: .*disque, acme, broken\)"):
        disquette.connect("nosuch://x")


@pytest.mark.usefixtures("acme")
def test_an_entry_point_that_is_no_store_kind_is_refused() -> None:
    with pytest.raises(InvalidURL, match="is not a StoreKind"):
        disquette.connect("broken://x")


def test_without_the_package_its_scheme_is_unknown() -> None:
    with pytest.raises(InvalidURL, match="unknown store scheme 'acme'"):
        disquette.connect("acme://one")
