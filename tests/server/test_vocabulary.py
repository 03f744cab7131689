"""Disque's vocabulary (``disquette.disque``) both ways: every error with a Disque reply
comes back as the same error, and SHOW as the server encodes it reads back as the job."""

from __future__ import annotations

import hiredis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from disquette.disque import (
    ERRORS,
    FOREVER,
    STATE_NAMES,
    ErrorCode,
    Refused,
    error_for,
    parse_ids,
    parse_show,
    reply_for,
)
from disquette.errors import (
    DisquetteError,
    InvalidJobId,
    InvalidQueueName,
    InvalidState,
    JobNotFound,
    NotReplicated,
    QueueFull,
    QueuePaused,
    StoreError,
    StoreUnavailable,
    WorkingTooLate,
)
from disquette.job import Job, JobState, new_job_id
from disquette.server.commands.jobs import encode_show
from disquette.server.protocol import refusal

JOB_ID = new_job_id(3600, 30)

#: The replies the server sent before they had one home: unchanged, byte for byte.
DISQUE_REPLIES = {
    QueuePaused("q"): b"-PAUSED Queue paused in input, try later\r\n",
    QueueFull("q", 5): b"-MAXLEN Queue is already longer than the specified MAXLEN count\r\n",
    NotReplicated(2, 1, "sqlite"): (
        b"-NOREPL Not enough reachable nodes for the requested replication level\r\n"
    ),
    InvalidJobId("nope"): b"-BADID Invalid Job ID format.\r\n",
    JobNotFound(JOB_ID): b"-NOJOB Job not known in the context of this node.\r\n",
    WorkingTooLate(JOB_ID): (
        b"-TOOLATE Half of job TTL already elapsed, you are no longer allowed to postpone "
        b"the next delivery.\r\n"
    ),
    InvalidQueueName(b"\x00", "not a name this store keeps"): (
        b"-ERR invalid queue name: not a name this store keeps\r\n"
    ),
}


@pytest.mark.parametrize("error", list(DISQUE_REPLIES), ids=lambda e: type(e).__name__)
def test_the_server_answers_each_error_as_disque(error: DisquetteError) -> None:
    assert refusal(error) == DISQUE_REPLIES[error]


@pytest.mark.parametrize("code", ERRORS, ids=lambda code: code.error.__name__)
def test_every_error_reply_round_trips(code: ErrorCode) -> None:
    """error -> reply -> error: the same class, the same reply, the fields the command gave."""
    error = code.make(Refused(code.start + " why", JOB_ID, "emails", 7, 2))
    text = reply_for(error)
    assert text.startswith(code.start)
    back = error_for(text, job_id=JOB_ID, queue="emails", max_len=7, replicate=2)
    assert type(back) is code.error
    assert reply_for(back) == text
    assert {type(e) for e in DISQUE_REPLIES} >= {code.error}  # its text is pinned above


def test_replies_without_a_row() -> None:
    assert isinstance(error_for("NOAUTH Authentication required."), StoreUnavailable)
    assert isinstance(error_for("LEAVING this node is leaving"), StoreUnavailable)
    assert error_for("ERR something else") is None
    other = StoreError("sqlite", "disk full")
    assert reply_for(other) == f"ERR {other}"
    # TOOLATE is a refused WORKING: still an InvalidState for callers that catch that.
    assert isinstance(error_for("TOOLATE Half of job TTL"), InvalidState)


def test_ids_are_checked_before_anything() -> None:
    assert parse_ids([JOB_ID.encode()]) == [JOB_ID]
    for bad in (b"", b"D-" + b"x" * 38, JOB_ID.encode()[:-1], JOB_ID.encode()[:-1] + b"\xff"):
        with pytest.raises(InvalidJobId):
            parse_ids([JOB_ID.encode(), bad])


NOW = 1_700_000_000.25


def _read(data: bytes) -> list[object]:
    reader = hiredis.Reader()
    reader.feed(data)
    reply = reader.gets()
    assert isinstance(reply, list)
    return reply


@given(
    state=st.sampled_from([JobState.QUEUED, JobState.ACTIVE, JobState.SCHEDULED, JobState.DONE]),
    body=st.binary(max_size=64),
    retry=st.integers(min_value=0, max_value=3600),
    ttl=st.one_of(st.none(), st.integers(min_value=2, max_value=30 * 86400)),
    counters=st.tuples(st.integers(0, 5), st.integers(0, 5)),
    delay=st.integers(min_value=1, max_value=3600),
)
def test_show_round_trips(
    state: JobState,
    body: bytes,
    retry: int,
    ttl: int | None,
    counters: tuple[int, int],
    delay: int,
) -> None:
    """encode_show (the server) then parse_show (the disque:// store): the same job, as far
    as SHOW tells (whole seconds, Disque's three states)."""
    created = NOW - 10
    nacks, more = counters if state is not JobState.SCHEDULED else (0, 0)
    job = Job(
        JOB_ID,
        "emails",
        body,
        state=state,
        created_at=created,
        run_at=NOW + delay if state is JobState.SCHEDULED else created,
        retry_after=float(retry),
        expires_at=None if ttl is None else float(int(NOW) + ttl),
        nacks=nacks,
        additional_deliveries=more,
        attempts=0 if state is JobState.SCHEDULED else 1 + nacks + more,
    )
    if state is JobState.SCHEDULED:
        job.run_at = created + delay + 10  # its delay, counted from its creation
    if state is JobState.ACTIVE:
        job.lease_until = NOW + retry
    back = parse_show(_read(encode_show(job, NOW, "a" * 40)), NOW)
    assert (back.id, back.queue, back.raw_body) == (job.id, job.queue, job.raw_body)
    assert STATE_NAMES[back.state] == STATE_NAMES[job.state]
    if state is JobState.SCHEDULED:
        assert back.state is JobState.SCHEDULED
        assert back.run_at == pytest.approx(job.run_at, abs=0.01)
    assert back.retry_after == retry
    assert (back.nacks, back.additional_deliveries) == (nacks, more)
    if ttl is None:
        assert back.expires_at is None
    else:
        assert back.expires_at == NOW + ttl
    if state is JobState.ACTIVE:
        assert back.lease_until == pytest.approx(job.lease_until, abs=0.01)
    assert FOREVER == 10 * 365 * 86400
