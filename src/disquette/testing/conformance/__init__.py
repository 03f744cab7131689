"""The store conformance suite: the tests every disquette store passes, for other stores too.

A store another package provides (a URL scheme registered through the ``disquette.stores``
entry point group, see :mod:`disquette.stores`) runs the suite from its own tests. Its root
``conftest.py`` loads the plugin and declares the stores to test, each with a function that
returns the URL of a fresh, empty store from the test's ``tmp_path``, and the store's
:class:`~disquette.stores.types.Capabilities`::

    from disquette.testing.conformance import ConformanceStore

    pytest_plugins = ["disquette.testing.conformance.plugin"]


    def fresh_acme_url(tmp_path):
        return f"acme:///{tmp_path / 'jobs.acme'}"  # a fresh, empty store


    def pytest_disquette_conformance_stores(config):
        return [ConformanceStore("acme", fresh_acme_url, AcmeStore.capabilities)]

then runs ``pytest --pyargs disquette.testing.conformance`` (or imports the tests into a
module of its own: ``from disquette.testing.conformance.test_leases import *``).

Every test runs once on each declared store (its test id names the store). A test that
needs a capability (``@pytest.mark.requires("results")``) a store states it lacks runs there
as a strict xfail with the capability's reason, so a store that understates itself is
noticed. Needs pytest and hypothesis (``pip install 'disquette[conformance]'``); nothing else
in disquette imports this package.
"""

from __future__ import annotations

try:
    import hypothesis  # noqa: F401  # the model test's
    import pytest  # noqa: F401
except ImportError as error:  # pragma: no cover - what a user without them sees
    raise ImportError(
        "disquette.testing.conformance needs pytest and hypothesis: "
        f"pip install 'disquette[conformance]' ({error})"
    ) from error

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ...stores.types import Capabilities

__all__ = ["UNKNOWN_ID", "ConformanceStore"]

#: A well-formed job id no store holds.
UNKNOWN_ID = "D-00000000-AAAAAAAAAAAAAAAAAAAAAAAA-0001"


@dataclass(frozen=True)
class ConformanceStore:
    """A store the suite runs on."""

    #: The name in the test ids (``test_ack_deletes[acme]``), and for ``-k``.
    name: str
    #: The URL of a fresh, empty store, given the test's ``tmp_path`` (called once a test).
    url: Callable[[Path], str]
    #: What the store states it can do: usually its class's ``capabilities``.
    capabilities: Capabilities = field(default_factory=Capabilities)
