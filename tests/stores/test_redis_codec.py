"""The Redis store's codec without a server: every field of a decoded job lands where it
belongs (``claimed_jobs`` calls ``Job`` positionally, for speed, so a slip would be silent).
"""

from __future__ import annotations

from disquette.job import Encoding, Job, JobState
from disquette.stores.redis.codec import (
    CLAIM_ROW_WIDTH,
    ROW_WIDTH,
    claimed_jobs,
    job_args,
    pack_record,
    row_to_job,
    unpack_record,
)

#: A job whose every field differs from its default and from the others.
JOB = Job(
    id="id-1",
    queue="q2",
    raw_body=b"body",
    encoding=Encoding.JSON,
    type="kind",
    priority=7,
    state=JobState.ACTIVE,
    created_at=11.0,
    run_at=12.0,
    retry_after=13.0,
    expires_at=14.0,
    max_attempts=15,
    result_ttl=16.0,
    attempts=17,
    nacks=18,
    additional_deliveries=19,
    error_count=20,
    last_error="oops",
    lease_until=21.0,
    cancel_requested=True,
    progress={"done": 3},
    headers={"k": "v", "é": "日本"},
    depends_on=(
        "D-00000000-AAAAAAAAAAAAAAAAAAAAAAAA-0001",
        "D-00000000-BBBBBBBBBBBBBBBBBBBBBBBB-0002",
    ),
    on_dependency_failure="run",
)
#: JOB's headers as the "hd" field holds them.
HEADERS_FIELD = '{"k":"v","é":"日本"}'.encode()
#: JOB's parents as the "do" field holds them: the policy's letter, then the ids.
PARENTS_FIELD = b"r" + "".join(JOB.depends_on).encode()


def test_a_packed_record_unpacks_to_the_same_values() -> None:
    assert unpack_record(pack_record(JOB)) == (
        Encoding.JSON, 11.0, 7, 13.0, 14.0, 15, 16.0, b"body",
    )  # fmt: skip


def test_a_claimed_row_fills_every_field_by_name() -> None:
    row = [
        2, b"id-1", pack_record(JOB), b"kind", b"12", b"17", b"18", b"19", b"20", b"oops",
        b"21", None, b"1", b'{"done":3}', HEADERS_FIELD, PARENTS_FIELD,
    ]  # fmt: skip
    assert len(row) == CLAIM_ROW_WIDTH
    assert claimed_jobs(row, ["q1", "q2"]) == [JOB]


def test_a_read_row_fills_every_field_by_name() -> None:
    row = [
        b"id-1", b"q2", pack_record(JOB), b"kind", b"a", b"12", b"17", b"18", b"19", b"20",
        b"oops", b"21", None, None, None, b"5", None, b"1", b'{"done":3}', HEADERS_FIELD,
        PARENTS_FIELD,
    ]  # fmt: skip
    assert len(row) == ROW_WIDTH
    assert row_to_job(row) == JOB
    assert row_to_job([None] * ROW_WIDTH) is None


def test_job_args_carry_headers_in_the_options_only_when_there_are_some() -> None:
    plain = Job(id="id-2", queue="q", raw_body=b"x")
    assert job_args(plain)[3] == b""
    carrying = Job(id="id-3", queue="q", raw_body=b"x", headers=JOB.headers)
    options = job_args(carrying)[3]
    assert options == bytes((32,)) + len(HEADERS_FIELD).to_bytes(4, "big") + HEADERS_FIELD


def test_job_args_carry_parents_first_in_the_options_only_when_there_are_some() -> None:
    (first, second) = JOB.depends_on
    child = Job(id="id-4", queue="q", raw_body=b"x", depends_on=(first,))
    block = bytes((0,)) + (1).to_bytes(2, "big") + (0).to_bytes(2, "big") + first.encode()
    assert job_args(child)[3] == bytes((64,)) + block
    # On a Cluster, a parent outside the child's queue is named with its queue.
    both = Job(id="id-5", queue="q", raw_body=b"x", depends_on=(first, second))
    options = job_args(both, {first: "q", second: "other"})[3]
    assert options == (
        bytes((64, 0)) + (2).to_bytes(2, "big")
        + (0).to_bytes(2, "big") + first.encode()
        + (5).to_bytes(2, "big") + b"other" + second.encode()
    )  # fmt: skip
    assert job_args(Job(id="id-6", queue="q", raw_body=b"x"))[3] == b""
