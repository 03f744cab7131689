"""How the store's claim statements are run and their rows read: whole jobs for ``claim``,
:class:`~disquette.stores.types.Delivery`\\ s for ``claim_deliveries``.

Both kinds run the same statements (``CLAIMS``: the queue's order, pause, limits, holder).
A claim of one job is one ``UPDATE ... RETURNING``. A claim of more reads the rows first,
by the statement's own subquery (``SELECT ... ORDER BY ... LIMIT``), then runs the
statement without ``RETURNING``, in one transaction: ``RETURNING`` buffers each row in an
ephemeral table (and loads every old column for it), and its rows come in no particular
order, so they had to carry the sort key too (callgrind, ``claim_deliveries`` of 50 jobs:
48.5k -> 41.1k instructions per job, four columns fewer included).

Each column read costs sqlite3 about 940 instructions (a GIL release and two calls under
the connection's mutex), so a kind reads only what it needs: a :class:`~disquette.job.Job`
needs the whole row; the Disque server's GETJOB needs four columns (the queue is the
claim's own) and the lease's end.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from functools import partial
from itertools import repeat
from typing import Any, Final, Generic, TypeVar

from ...errors import StoreError
from ...job import Job
from .._sql import COLUMNS, DEPENDENCY_COLUMNS, SEQ, row_to_job
from ..types import Delivery
from .database import CLAIMS, QUERIES

T = TypeVar("T")

#: What a claim sets that a kind reads, as SQL over the row before the claim: the
#: ``SELECT`` of a claim of several jobs reads the row as the claim leaves it. Each must be
#: the claim statement's own assignment (checked below, at import).
_AFTER_CLAIM: Final = {
    "state": "2",
    "attempts": "attempts + 1",
    "lease_until": "CASE WHEN retry_after > 0 THEN :now + retry_after END",
}


class ClaimRows(Generic[T]):
    """A kind of claim: its statements, where its rows hold the lease's end (and, for a
    kind whose jobs' acks the store remembers, ``seq`` and ``result_ttl``), and what the
    claim makes of its rows (and of the queue they were claimed from).

    ``one``: ``UPDATE ... RETURNING`` the kind's columns, by holder or none (``NULL`` in
    the text). ``select``: the rows a claim of several would take, in delivery order,
    read as the claim leaves them; ``update``: that claim, without ``RETURNING``.
    """

    __slots__ = ("lease", "leases", "make", "one", "select", "seq", "ttl", "update")

    def __init__(
        self,
        columns: str,
        lease: int,
        memo: tuple[int, int] | None,
        make: Callable[[list[Any], str], Iterable[T]],
    ) -> None:
        self.one = {
            anonymous: _returning(CLAIMS[True, anonymous], columns) for anonymous in (False, True)
        }
        self.update = {anonymous: _quiet(CLAIMS[False, anonymous]) for anonymous in (False, True)}
        self.select = _select(CLAIMS[False, False], columns)
        self.lease = lease
        #: What reads a row's lease end (``lease``), in C.
        self.leases = operator.itemgetter(lease)
        self.seq, self.ttl = memo if memo is not None else (-1, -1)
        self.make = make

    @property
    def remembered(self) -> bool:
        """Whether the store remembers these claims' ``seq`` and ``result_ttl``."""
        return self.seq >= 0


_RETURNING_ROWS: Final = f"RETURNING {COLUMNS}, {DEPENDENCY_COLUMNS};"
_SUBQUERY: Final = "WHERE seq IN (\n    SELECT seq FROM jobs\n"


def _block_text(block: str) -> str:
    """A block of ``schema.sql`` that is no statement, on one line, without comments."""
    lines = (line for line in block.splitlines() if not line.lstrip().startswith("--"))
    return " ".join(" ".join(lines).split()).removesuffix(";")


def _checked(sql: str, part: str) -> None:
    if sql.count(part) != 1:
        raise StoreError("schema.sql", f"a claim statement should hold {part!r} once")


def _returning(sql: str, columns: str) -> str:
    """A claim statement returning ``columns`` instead of whole rows."""
    _checked(sql, _RETURNING_ROWS)
    return sql.replace(_RETURNING_ROWS, f"RETURNING {columns};")


def _quiet(sql: str) -> str:
    """A claim statement returning nothing."""
    _checked(sql, _RETURNING_ROWS)
    return sql.replace(_RETURNING_ROWS, ";")


def _select(sql: str, columns: str) -> str:
    """The subquery of a claim statement of several jobs (which rows it takes), reading
    ``columns`` of them as the claim leaves them, in delivery order (its ``ORDER BY``)."""
    _checked(sql, _SUBQUERY)
    _checked(sql, _RETURNING_ROWS)
    subquery = sql[sql.index(_SUBQUERY) + len("WHERE seq IN (\n") : sql.index(_RETURNING_ROWS)]
    subquery = subquery.rstrip().removesuffix(")")
    after = ", ".join(_AFTER_CLAIM.get(name, name) for name in columns.split(", "))
    return subquery.replace("SELECT seq FROM jobs", f"SELECT {after} FROM jobs", 1) + ";"


def _check_after_claim(sql: str) -> None:
    """Each of :data:`_AFTER_CLAIM` is an assignment of the claim statement's ``SET``."""
    assignments = " ".join(sql[sql.index("\nSET ") + 5 : sql.index(_SUBQUERY)].split())
    for name, value in _AFTER_CLAIM.items():
        if f"{name} = {value}" not in assignments.split(", "):
            raise StoreError("schema.sql", f"the claim should set {name} = {value}")


_check_after_claim(CLAIMS[False, False])

#: ``claim``: whole jobs, from rows of :data:`~disquette.stores._sql.COLUMNS` (lease_until
#: 18, result_ttl 12).
JOBS: Final[ClaimRows[Job]] = ClaimRows(
    f"{COLUMNS}, {DEPENDENCY_COLUMNS}", 18, (SEQ, 12), lambda rows, _: map(row_to_job, rows)
)

_new_delivery: Final = partial(tuple.__new__, Delivery)


def _deliveries(rows: list[Any], queue: str) -> Iterable[Delivery]:
    """Deliveries from rows of ``claim_deliveries_columns`` claimed from ``queue``, each
    made in C (transposed, the queue put in, no Python-level ``__new__`` per row)."""
    ids, bodies, nacks, additional, _ = zip(*rows, strict=True)
    return map(_new_delivery, zip(ids, repeat(queue), bodies, nacks, additional))


#: ``claim_deliveries``: rows of ``claim_deliveries_columns`` (lease_until 4). Their acks
#: are by id (the Disque server's ACKJOB): nothing to remember.
DELIVERIES: Final[ClaimRows[Delivery]] = ClaimRows(
    _block_text(QUERIES["claim_deliveries_columns"]), 4, None, _deliveries
)
