"""How the store's claim statements are run and their rows read: whole jobs for ``claim``,
:class:`~disquette.stores.types.Delivery`\\ s for ``claim_deliveries``.

Both kinds run the same statements (``CLAIMS``: the queue's order, pause, limits, holder),
those of ``claim_deliveries`` returning ten columns instead of the whole row: reading a
column back costs sqlite3 about a tenth of a microsecond, and a :class:`~disquette.job.Job`
made of 30 of them costs more than leasing it (the Disque server's GETJOB needs five).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, Final, Generic, TypeVar

from ...errors import StoreError
from ...job import Job
from .._sql import COLUMNS, DEPENDENCY_COLUMNS, SEQ, row_to_job
from ..types import Delivery
from .database import CLAIMS, QUERIES

T = TypeVar("T")


class ClaimRows(Generic[T]):
    """A kind of claim: its statements (by one job, no holder: see ``CLAIMS``), where
    their rows hold the lease's end, ``seq`` and ``result_ttl`` (what the store keeps of a
    claim), the delivery order of the rows (an itemgetter: the sort key runs in C, half
    the cost of a function per row), and what the claim makes of its rows."""

    __slots__ = ("lease", "make", "order", "seq", "statements", "ttl")

    def __init__(
        self,
        statements: dict[tuple[bool, bool], str],
        lease: int,
        seq: int,
        ttl: int,
        order: Callable[[Any], Any],
        make: Callable[[list[Any]], Iterable[T]],
    ) -> None:
        self.statements = statements
        self.lease = lease
        self.seq = seq
        self.ttl = ttl
        self.order = order
        self.make = make


def returning_deliveries(sql: str) -> str:
    """A claim statement returning what ``claim_deliveries`` reads (the block
    ``claim_deliveries_returning``) instead of whole rows: the claim's logic stays the one
    statement's, whatever its variant."""
    if sql.count(_RETURNING_ROWS) != 1:
        raise StoreError("schema.sql", f"a claim statement should hold {_RETURNING_ROWS!r} once")
    return sql.replace(_RETURNING_ROWS, QUERIES["claim_deliveries_returning"])


_RETURNING_ROWS: Final = f"RETURNING {COLUMNS}, {DEPENDENCY_COLUMNS};"

#: ``claim``: whole jobs, from rows of :data:`~disquette.stores._sql.COLUMNS` (lease_until
#: 18, result_ttl 12; priority 5, run_at 8).
JOBS: Final[ClaimRows[Job]] = ClaimRows(
    CLAIMS, 18, SEQ, 12, operator.itemgetter(5, 8, SEQ), partial(map, row_to_job)
)

#: ``claim_deliveries``: rows in the order of ``claim_deliveries_returning``, a Delivery's
#: five fields first, each made in C (no Python-level ``__new__`` per row).
DELIVERIES: Final[ClaimRows[Delivery]] = ClaimRows(
    {key: returning_deliveries(sql) for key, sql in CLAIMS.items()},
    8,
    7,
    9,
    operator.itemgetter(5, 6, 7),
    lambda rows: map(partial(tuple.__new__, Delivery), map(operator.itemgetter(slice(5)), rows)),
)
