"""The packaged suite's module of this name (:mod:`disquette.testing.conformance`), run on
our five stores (see ``conftest.py``)."""

from disquette.testing.conformance.test_watch_asyncio import *  # noqa: F403
