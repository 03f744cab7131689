"""The packaged suite's module of this name (:mod:`disquette.testing.conformance`), run on
our five stores (see ``conftest.py``)."""

from disquette.testing.conformance.test_deliveries_async import *  # noqa: F403
