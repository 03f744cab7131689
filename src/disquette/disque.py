"""Disque's vocabulary, shared by ``disquette server`` and the ``disque://`` store.

One home for what both sides of the Disque protocol must agree on: the defaults (port,
TTL, RETRY), the ten-year TTL that stands for "none", the job states as Disque names them,
the shape of job ids and what they tell (the node that made them, whether the job can be
redelivered), the ADDJOB the store sends (:func:`addjob_request`), SHOW's fields in both
directions (:func:`show_entries` for the server, :func:`parse_show` for the store), and
the error replies in both directions: one table, :data:`ERRORS`, read by
:func:`reply_for` (an error raised, as the server answers it) and :func:`error_for` (an
error reply, as the store raises it).

It encodes no RESP itself (the server's :mod:`disquette.server.protocol` does) and
depends on nothing but :mod:`disquette.errors` and :mod:`disquette.job`, so both sides
import it without importing each other.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Final, NamedTuple

from .errors import (
    DisquetteError,
    InvalidJobId,
    InvalidQueueName,
    JobNotFound,
    NotReplicated,
    QueueFull,
    QueuePaused,
    StoreUnavailable,
    WorkingTooLate,
)
from .job import MAX_SECONDS, Job, JobState, check_job_id

DEFAULT_PORT: Final = 7711
#: ADDJOB's TTL when none is given: one day.
DEFAULT_TTL: Final = 86400
#: The longest default RETRY.
MAX_RETRY_DEFAULT: Final = 300
#: Disque's TTLs are whole seconds; a job without one lives ten years (our longest duration).
FOREVER: Final = int(MAX_SECONDS)
#: How long before its requeue time Disque wakes a delivered job (JOB_WILLQUEUE_ADVANCE,
#: SHOW's ``next-awake-within``).
WAKE_ADVANCE_MS: Final = 500


def default_retry(ttl: int) -> int:
    """Disque's RETRY when ADDJOB gives none: a tenth of the TTL, between 1 and 300 s."""
    return max(1, min(ttl // 10, MAX_RETRY_DEFAULT))


#: Disque's job states, as our states map onto them (done and cancelled jobs are
#: "acked", and gone: both are final).
DISQUE_STATES: Final[dict[str, frozenset[JobState]]] = {
    "wait-repl": frozenset(),
    "active": frozenset({JobState.SCHEDULED, JobState.ACTIVE, JobState.FAILED, JobState.WAITING}),
    "queued": frozenset({JobState.QUEUED}),
    "acked": frozenset({JobState.DONE, JobState.CANCELLED}),
}
#: The Disque name of each of our states.
STATE_NAMES: Final[dict[JobState, str]] = {
    state: name for name, states in DISQUE_STATES.items() for state in states
}


# -- ids -----------------------------------------------------------------------------------


def parse_ids(raw_ids: Sequence[bytes]) -> list[str]:
    """Job ids as a command's arguments; every one is checked first (one bad id and the
    command does nothing): :class:`~disquette.errors.InvalidJobId` for any without
    Disque's shape (see :func:`disquette.job.check_job_id`; ids are ASCII)."""
    ids = []
    for raw in raw_ids:
        try:
            ids.append(check_job_id(raw.decode("ascii")))
        except UnicodeDecodeError:
            raise InvalidJobId(raw) from None
    return ids


def id_node_prefix(job_id: str) -> str:
    """The 8 hex digits of the node that made the job (``D-<prefix>-...``)."""
    return job_id[2:10]


def id_is_leased(job_id: str) -> bool:
    """Whether the job can be redelivered (RETRY > 0): the id's last hex digit is odd."""
    return bool(int(job_id[-1], 16) & 1)


# -- ADDJOB --------------------------------------------------------------------------------


def whole_seconds(value: float) -> int:
    """Disque's whole seconds, never earlier than asked."""
    return math.ceil(value - 1e-9)


def addjob_request(
    job: Job, body: bytes, timeout_ms: int, *, max_len: int | None, replicate: int
) -> tuple[str | bytes | int, ...]:
    """The ADDJOB that adds ``job`` with ``body`` (what the ``disque://`` store sends and
    the server's ``parse_addjob`` reads back): its times as whole seconds from its
    ``created_at``, REPLICATE for ``replicate`` extra copies, MAXLEN when given."""
    ttl = (
        FOREVER
        if job.expires_at is None
        else max(1, whole_seconds(job.expires_at - job.created_at))
    )
    delay = max(0, whole_seconds(job.run_at - job.created_at))
    retry = whole_seconds(job.retry_after)
    request: list[str | bytes | int] = ["ADDJOB", job.queue, body, timeout_ms]
    request += ["TTL", ttl, "RETRY", retry]
    if delay:
        request += ["DELAY", min(delay, ttl - 1)]
    if replicate > 0:
        request += ["REPLICATE", replicate + 1]
    elif retry == 0:
        request += ["REPLICATE", 1]  # Disque requires it for at-most-once jobs
    if max_len is not None:
        request += ["MAXLEN", max_len]
    return tuple(request)


# -- SHOW ----------------------------------------------------------------------------------

#: A SHOW value: an integer, a string, ``None`` (a null) or a list of strings.
ShowValue = int | str | bytes | None | list[str]


def show_entries(job: Job, now: float, node_id: str) -> list[tuple[str, ShowValue]]:
    """SHOW's 15 fields for one job, in Disque's order (the server encodes them), then
    ``headers`` for a job that has some, as names and values in turn (as HGETALL): one
    more field, after Disque's, that a Disque client reading SHOW by name passes over."""
    # Whole seconds, as Disque: etime and its clock are both whole seconds.
    ttl = FOREVER if job.expires_at is None else max(0, int(job.expires_at - math.floor(now)))
    # As Disque: a delayed job is (re)queued when its delay ends, and wakes then; any
    # other job wakes 500 ms before its requeue time (JOB_WILLQUEUE_ADVANCE).
    requeue: int | None = None
    if job.state is JobState.SCHEDULED:
        requeue = max(0, int((job.run_at - now) * 1000))
    elif job.state is JobState.ACTIVE and job.lease_until is not None:
        requeue = max(0, int((job.lease_until - now) * 1000))
    elif job.state is JobState.QUEUED and job.retry_after > 0:
        requeue = int(job.retry_after * 1000)
    awake = requeue
    if requeue is not None and job.state is not JobState.SCHEDULED:
        awake = max(0, requeue - WAKE_ADVANCE_MS)
    entries: list[tuple[str, ShowValue]] = [
        ("id", job.id),
        ("queue", job.queue),
        ("state", STATE_NAMES[job.state]),
        ("repl", 1),
        ("ttl", ttl),
        ("ctime", int(job.created_at * 1_000_000_000)),
        ("delay", max(0, round(job.run_at - job.created_at)) if not job.attempts else 0),
        ("retry", int(job.retry_after)),
        ("nacks", job.nacks),
        ("additional-deliveries", job.additional_deliveries),
        ("nodes-delivered", [node_id]),
        ("nodes-confirmed", []),
        ("next-requeue-within", requeue),
        ("next-awake-within", awake),
        ("body", job.raw_body),
    ]
    if job.headers:
        entries.append(("headers", [text for pair in job.headers.items() for text in pair]))
    return entries


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def show_fields(reply: list[Any]) -> dict[str, Any]:
    """SHOW's flat name/value array (as hiredis parses it), as a mapping."""
    return {_text(reply[i]): reply[i + 1] for i in range(0, len(reply) - 1, 2)}


def parse_show(reply: list[Any], now: float) -> Job:
    """The job a SHOW reply describes, its times counted from ``now``; its body is the
    bytes the server keeps (``raw_body``), as Disque knows no encodings."""
    fields = show_fields(reply)
    state_name = _text(fields["state"])
    delay = int(fields.get("delay") or 0)
    nacks = int(fields.get("nacks") or 0)
    more = int(fields.get("additional-deliveries") or 0)
    awake, requeue = fields.get("next-awake-within"), fields.get("next-requeue-within")
    state = JobState.QUEUED
    if state_name == "acked":
        state = JobState.DONE
    elif state_name in ("active", "wait-repl"):
        # Disque keeps a delayed job "active" with its requeue time at the end of the
        # delay and wakes it then; a delivered job wakes 500 ms before its requeue.
        state = JobState.ACTIVE
        if (
            delay > 0
            and not nacks
            and not more
            and isinstance(awake, int)
            and isinstance(requeue, int)
            and awake > 0
            and requeue <= delay * 1000
            and abs(awake - requeue) < WAKE_ADVANCE_MS // 2
        ):
            state = JobState.SCHEDULED
    ttl = int(fields.get("ttl") or 0)
    delivered = state is JobState.ACTIVE or nacks or more
    headers = fields.get("headers") or []
    return Job(
        id=_text(fields["id"]),
        queue=_text(fields.get("queue") or b""),
        raw_body=fields.get("body") or b"",
        state=state,
        created_at=now,
        run_at=(
            now + awake / 1000 if state is JobState.SCHEDULED and isinstance(awake, int) else now
        ),
        retry_after=float(fields.get("retry") or 0),
        expires_at=None if ttl >= FOREVER - 86400 else now + ttl,
        attempts=(1 if delivered else 0) + nacks + more,
        nacks=nacks,
        additional_deliveries=more,
        lease_until=(
            now + requeue / 1000 if state is JobState.ACTIVE and isinstance(requeue, int) else None
        ),
        headers={_text(headers[i]): _text(headers[i + 1]) for i in range(0, len(headers) - 1, 2)},
    )


# -- errors --------------------------------------------------------------------------------


class Refused(NamedTuple):
    """What a refusal was about, for :func:`error_for` to fill the error's fields."""

    text: str
    job_id: str
    queue: str
    max_len: int
    replicate: int


class ErrorCode(NamedTuple):
    """One Disque error reply and the error it stands for, both ways."""

    #: How the reply starts (its prefix, or more when Disque's prefix is the generic ERR).
    start: str
    error: type[DisquetteError]
    #: The reply's text (without ``-`` and CRLF) for an error raised.
    reply: Callable[[Any], str]
    #: The error for a reply received.
    make: Callable[[Refused], DisquetteError]


#: Disque's error replies and our errors, one row each: the server answers an error with
#: its row's reply, the ``disque://`` store raises a reply's row's error.
ERRORS: Final[tuple[ErrorCode, ...]] = (
    ErrorCode(
        "PAUSED",
        QueuePaused,
        lambda exc: "PAUSED Queue paused in input, try later",
        lambda refused: QueuePaused(refused.queue),
    ),
    ErrorCode(
        "MAXLEN",
        QueueFull,
        lambda exc: "MAXLEN Queue is already longer than the specified MAXLEN count",
        lambda refused: QueueFull(refused.queue, refused.max_len),
    ),
    ErrorCode(
        "NOREPL",
        NotReplicated,
        lambda exc: "NOREPL Not enough reachable nodes for the requested replication level",
        lambda refused: NotReplicated(refused.replicate, 0, f"disque ({refused.text})"),
    ),
    ErrorCode(
        "BADID",
        InvalidJobId,
        lambda exc: "BADID Invalid Job ID format.",
        lambda refused: InvalidJobId(refused.job_id),
    ),
    ErrorCode(
        "NOJOB",
        JobNotFound,
        lambda exc: "NOJOB Job not known in the context of this node.",
        lambda refused: JobNotFound(refused.job_id),
    ),
    ErrorCode(
        "TOOLATE",
        WorkingTooLate,
        lambda exc: (
            "TOOLATE Half of job TTL already elapsed, you are no longer allowed to postpone "
            "the next delivery."
        ),
        lambda refused: WorkingTooLate(refused.job_id),
    ),
    ErrorCode(
        "ERR invalid queue name",
        InvalidQueueName,
        lambda exc: f"ERR invalid queue name: {exc.reason}",
        lambda refused: InvalidQueueName(
            refused.queue, _reason(refused.text, "ERR invalid queue name")
        ),
    ),
)


def _reason(text: str, start: str) -> str:
    """What a reply says after its ``start`` (and a colon)."""
    return text[len(start) :].lstrip(":").strip() or text


#: Replies that only the store reads (the server sends NOAUTH from its session): the
#: server cannot serve now.
_UNAVAILABLE: Final = ("NOAUTH", "LEAVING", "OOM")


def reply_for(exc: BaseException) -> str:
    """The text of Disque's error reply for an error (``-`` and CRLF left to the caller):
    its :data:`ERRORS` row's, else ``ERR`` and the error's message."""
    for code in ERRORS:
        if isinstance(exc, code.error):
            return str(code.reply(exc))
    return f"ERR {exc}"


def error_for(
    text: str, *, job_id: str = "", queue: str = "", max_len: int = 0, replicate: int = 0
) -> DisquetteError | None:
    """The error an error reply stands for (its :data:`ERRORS` row's, filled with what the
    command was about), :class:`~disquette.errors.StoreUnavailable` for a server that
    cannot serve now, ``None`` for a reply with no typed error."""
    for code in ERRORS:
        if text.startswith(code.start):
            return code.make(Refused(text, job_id, queue, max_len, replicate))
    if text.split(" ", 1)[0] in _UNAVAILABLE:
        return StoreUnavailable(text)
    return None
