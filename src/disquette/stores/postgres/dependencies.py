"""Job dependencies in the PostgreSQL store: what an add makes of each job of a batch with
``depends_on``, once the parents it names are locked (both flavours).

The add (``inserts_async.py``), in one transaction: ``lock_parents`` locks the parents the
jobs table holds and marks the pending ones ``has_children``; ``done_parents`` finds those
done (with a later snapshot); :func:`admit` then gives each job its state, walking the
batch in order (an earlier job of the batch counts as a parent); ``insert_dependants``
inserts them. A parent's end resolves its children in the statement that ends it
(``resolve_children``, ``sql/009_dependencies.sql``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from ...errors import JobNotFound
from ...job import Job, JobState
from .._sql import POLICIES, STATE_CODES
from ..types import dependency_error
from .statements import unique_insert_params

_DONE: Final = STATE_CODES[JobState.DONE]
_FAILED: Final = STATE_CODES[JobState.FAILED]
_CANCELLED: Final = STATE_CODES[JobState.CANCELLED]
_WAITING: Final = STATE_CODES[JobState.WAITING]
#: States whose job has not ended: a child waits for a parent in one of them.
PENDING_CODES: Final = frozenset(
    STATE_CODES[state]
    for state in (JobState.SCHEDULED, JobState.QUEUED, JobState.ACTIVE, JobState.WAITING)
)


@dataclasses.dataclass(slots=True)
class Admission:
    """How one job of the batch is inserted: its state code and the columns that go with
    it (a job without parents is inserted as usual)."""

    state: int
    expires_at: float | None
    #: Parents still pending (waiting jobs only).
    pending: int | None = None
    #: A later job of the batch waits for this one.
    has_children: bool = False
    last_error: str | None = None
    finished_at: float | None = None


def outside_parents(jobs: Sequence[Job]) -> list[str]:
    """The parents that are not an earlier job of the batch (the store must hold them),
    each once, in order."""
    earlier: set[str] = set()
    outside: dict[str, None] = {}
    for job in jobs:
        for parent in job.depends_on:
            if parent not in earlier:
                outside[parent] = None
        earlier.add(job.id)
    return list(outside)


def admit(jobs: Sequence[Job], found: Mapping[str, int], now: float) -> dict[str, Admission]:
    """Each job's :class:`Admission`, by id: ``found`` holds the state code of each parent
    the store holds (done ones as done). ``JobNotFound`` naming the first parent that is
    neither there nor an earlier job of the batch, before anything else."""
    earlier: set[str] = set()
    for job in jobs:
        for parent in job.depends_on:
            if parent not in earlier and parent not in found:
                raise JobNotFound(parent)
        earlier.add(job.id)
    parented = {parent for job in jobs for parent in job.depends_on}
    states = dict(found)
    admissions: dict[str, Admission] = {}
    for job in jobs:
        admission = _admit_one(job, states, now)
        admission.has_children = job.id in parented and admission.state in PENDING_CODES
        states[job.id] = admission.state
        admissions[job.id] = admission
    return admissions


def _admit_one(job: Job, states: Mapping[str, int], now: float) -> Admission:
    pending = 0
    for parent in job.depends_on:
        state = states[parent]
        if state in (_FAILED, _CANCELLED):
            if job.on_dependency_failure == "fail":
                failed = state == _FAILED
                return Admission(
                    state,
                    None if failed else now + job.result_ttl,
                    last_error=dependency_error(parent, "failed" if failed else "cancelled"),
                    finished_at=now,
                )
        elif state != _DONE:
            pending += 1
    if pending:
        return Admission(_WAITING, job.expires_at, pending=pending)
    return Admission(1 if job.run_at <= now else 0, job.expires_at)


def dependant_params(
    jobs: Sequence[Job], now: float, channel: str, admissions: Mapping[str, Admission]
) -> dict[str, Any]:
    """The parameters of ``insert_dependants`` for ``jobs`` (each with its admission)."""
    params = unique_insert_params(jobs, now, channel)
    chosen = [admissions[job.id] for job in jobs]
    params["states"] = [admission.state for admission in chosen]
    params["expires_at"] = [admission.expires_at for admission in chosen]
    params["depends_on"] = [json.dumps(job.depends_on) if job.depends_on else None for job in jobs]
    params["policies"] = [
        POLICIES.index(job.on_dependency_failure) if job.depends_on else None for job in jobs
    ]
    params["pending"] = [admission.pending for admission in chosen]
    params["has_children"] = [admission.has_children for admission in chosen]
    params["last_errors"] = [admission.last_error for admission in chosen]
    params["finished_at"] = [admission.finished_at for admission in chosen]
    return params


def orphaned(jobs: Sequence[Job], existing: Mapping[str, str]) -> str | None:
    """A job of the batch that a later one waits for but that was not added, its unique
    key held by another job (the add is then refused, as if it were unknown)."""
    for job in jobs:
        for parent in job.depends_on:
            if parent in existing:
                return parent
    return None
