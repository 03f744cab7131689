"""How the Redis store spells jobs: the packed ``m`` field, the rows the scripts return and
the arguments they take (both flavours share it; it imports no driver).

A job hash keeps what the scripts need as fields (see ``lua/common.lua``) and what never
changes packed in one ``m`` field, leaving out the options that have their default value
(:mod:`disquette.defaults`), so that a job with the usual options costs fewer bytes.
Decoding a claim's reply is a worker's hot path: keep it lean.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any, Final

from ... import defaults
from ...errors import JobNotFound, QueueFull, QueuePaused
from ...job import DEPENDENCY_POLICIES, DependencyPolicy, Encoding, Job, JobState, decode_progress

#: Fields of a job hash, in the order the reading scripts return them after the id.
FIELDS: Final = (
    "q", "m", "t", "st", "r", "n", "k", "ad", "ec", "le", "lu", "res", "re", "fa", "sq", "nx",
    "cr", "pg", "hd", "do",
)  # fmt: skip
#: Where a row (id, then FIELDS) holds the job's enqueue sequence.
SEQ_AT: Final = 1 + FIELDS.index("sq")
ROW_WIDTH: Final = len(FIELDS) + 1
#: A claimed job: queue index, id, m t r n k ad ec le lu nx cr pg hd do (see claim.lua).
CLAIM_ROW_WIDTH: Final = 16
#: Values a job hash leaves out (``DEFAULTS`` in ``common.lua``, filled from the same
#: module when the scripts load), so that a job with the usual options costs fewer bytes.
DEFAULT_PRIORITY: Final = defaults.PRIORITY
DEFAULT_RETRY_AFTER: Final = defaults.RETRY_AFTER
DEFAULT_MAX_ATTEMPTS: Final = defaults.MAX_ATTEMPTS
DEFAULT_RESULT_TTL: Final = defaults.RESULT_TTL
#: A state as the ``st`` field spells it, and back.
STATE_LETTERS: Final = {
    JobState.SCHEDULED: "s",
    JobState.QUEUED: "q",
    JobState.ACTIVE: "a",
    JobState.DONE: "d",
    JobState.FAILED: "f",
    JobState.CANCELLED: "c",
    JobState.WAITING: "w",
}
STATES: Final = {
    b"s": JobState.SCHEDULED,
    b"q": JobState.QUEUED,
    b"a": JobState.ACTIVE,
    b"d": JobState.DONE,
    b"f": JobState.FAILED,
    b"c": JobState.CANCELLED,
    b"w": JobState.WAITING,
}


def queue_base(prefix: str, queue: str) -> str:
    """The common start of a queue's keys: ``<prefix>{<queue>}:``, the tag that keeps them
    in one Cluster slot (``%`` and ``}`` escaped, as ``common.lua`` does)."""
    return prefix + "{" + queue.replace("%", "%25").replace("}", "%7D") + "}:"


_HEAD: Final = struct.Struct(">BBd")
_INT: Final = struct.Struct(">i")
_FLOAT: Final = struct.Struct(">d")
#: A unique job's states mask and key length, before the key (see add.lua).
_UNIQUE: Final = struct.Struct(">BH")
_SIZE: Final = struct.Struct(">I")
#: A job's parents block (see ``parse_parents`` in deps.lua): policy, count; then per
#: parent its queue's name length (0: the child's queue) before the name and the id.
_PARENTS: Final = struct.Struct(">BH")
_NAME: Final = struct.Struct(">H")
#: The ``do`` field's first byte: the policy's letter.
_POLICY_LETTERS: Final = {b"f"[0]: DEPENDENCY_POLICIES[0], b"r"[0]: DEPENDENCY_POLICIES[1]}
#: The length of a job id (``check_job_id``): the ``do`` field packs them without separator.
ID_LENGTH: Final = 40
# Which optional values follow the head of a packed record (in this order).
_HAS_PRIORITY, _HAS_RETRY_AFTER, _HAS_EXPIRES_AT, _HAS_MAX_ATTEMPTS, _HAS_RESULT_TTL = (
    1, 2, 4, 8, 16,
)  # fmt: skip


def pack_record(job: Job) -> bytes:
    """What never changes in a job, as the ``m`` field: flags, encoding, created_at, the
    options that differ from the defaults, then the body."""
    flags = 0
    tail = []
    if job.priority != DEFAULT_PRIORITY:
        flags |= _HAS_PRIORITY
        tail.append(_INT.pack(job.priority))
    if job.retry_after != DEFAULT_RETRY_AFTER:
        flags |= _HAS_RETRY_AFTER
        tail.append(_FLOAT.pack(job.retry_after))
    if job.expires_at is not None:
        flags |= _HAS_EXPIRES_AT
        tail.append(_FLOAT.pack(job.expires_at))
    if job.max_attempts != DEFAULT_MAX_ATTEMPTS:
        flags |= _HAS_MAX_ATTEMPTS
        tail.append(_INT.pack(job.max_attempts))
    if job.result_ttl != DEFAULT_RESULT_TTL:
        flags |= _HAS_RESULT_TTL
        tail.append(_FLOAT.pack(job.result_ttl))
    return _HEAD.pack(flags, int(job.encoding), job.created_at) + b"".join(tail) + job.raw_body


_ENCODINGS: Final = tuple(Encoding)  # by value: faster than Encoding(value)
#: An unpacked ``m`` field: encoding, created_at, priority, retry_after, expires_at,
#: max_attempts, result_ttl, body.
Record = tuple[Encoding, float, int, float, float | None, int, float, bytes]


def unpack_record(data: bytes) -> Record:
    """Invert :func:`pack_record`."""
    flags, encoding, created_at = _HEAD.unpack_from(data)
    at = _HEAD.size
    if not flags:  # the usual job: default options, no TTL
        return (
            _ENCODINGS[encoding], created_at, DEFAULT_PRIORITY, DEFAULT_RETRY_AFTER, None,
            DEFAULT_MAX_ATTEMPTS, DEFAULT_RESULT_TTL, data[at:],
        )  # fmt: skip
    priority, retry_after, expires_at = DEFAULT_PRIORITY, DEFAULT_RETRY_AFTER, None
    max_attempts, result_ttl = DEFAULT_MAX_ATTEMPTS, DEFAULT_RESULT_TTL
    if flags & _HAS_PRIORITY:
        (priority,) = _INT.unpack_from(data, at)
        at += 4
    if flags & _HAS_RETRY_AFTER:
        (retry_after,) = _FLOAT.unpack_from(data, at)
        at += 8
    if flags & _HAS_EXPIRES_AT:
        (expires_at,) = _FLOAT.unpack_from(data, at)
        at += 8
    if flags & _HAS_MAX_ATTEMPTS:
        (max_attempts,) = _INT.unpack_from(data, at)
        at += 4
    if flags & _HAS_RESULT_TTL:
        (result_ttl,) = _FLOAT.unpack_from(data, at)
        at += 8
    return (
        _ENCODINGS[encoding], created_at, priority, retry_after, expires_at, max_attempts,
        result_ttl, data[at:],
    )  # fmt: skip


def decode_text(value: bytes | None) -> str | None:
    """A reply's bytes as text, ``None`` (a field left out) as ``None``."""
    return None if value is None else value.decode()


def _float(value: bytes | None) -> float | None:
    return None if value is None else float(value)


def decode_headers(value: bytes | None) -> dict[str, str]:
    """The ``hd`` field (JSON text, left out when a job has none) as a job's headers."""
    return {} if value is None else json.loads(value)


def row_to_job(row: Sequence[Any], at: int = 0) -> Job | None:
    """The job in ``row[at:at + ROW_WIDTH]`` (id, then FIELDS), or None if it is missing."""
    (
        job_id, queue, packed, type_, state, run_at, attempts, nacks, additional_deliveries,
        error_count, last_error, lease_until, result, result_encoding, finished_at, _seq,
        no_expiry, cancel_requested, progress, headers, parents,
    ) = row[at : at + ROW_WIDTH]  # fmt: skip
    if queue is None:
        return None
    encoding, created_at, priority, retry_after, ttl_expiry, max_attempts, result_ttl, body = (
        unpack_record(packed)
    )
    job_state = STATES[state]
    if job_state is JobState.DONE or job_state is JobState.CANCELLED:
        expires_at = float(finished_at) + result_ttl
    elif job_state is JobState.FAILED or no_expiry is not None:
        expires_at = None
    else:
        expires_at = ttl_expiry
    job = Job(
        id=job_id.decode(),
        queue=queue.decode(),
        raw_body=body,
        encoding=encoding,
        type=decode_text(type_),
        priority=priority,
        state=job_state,
        created_at=created_at,
        run_at=float(run_at),
        retry_after=retry_after,
        expires_at=expires_at,
        max_attempts=max_attempts,
        result_ttl=result_ttl,
        attempts=int(attempts or 0),
        nacks=int(nacks or 0),
        additional_deliveries=int(additional_deliveries or 0),
        error_count=int(error_count or 0),
        last_error=decode_text(last_error),
        # Kept in the hash after the lease ends; +inf marks an at-most-once lease.
        lease_until=(
            float(lease_until)
            if job_state is JobState.ACTIVE and lease_until not in (None, b"+inf")
            else None
        ),
        raw_result=result,
        result_encoding=_ENCODINGS[int(result_encoding or 0)],
        finished_at=_float(finished_at),
        cancel_requested=cancel_requested is not None,
        progress=decode_progress(progress),
        headers=decode_headers(headers),
    )
    if parents is not None:
        job.depends_on, job.on_dependency_failure = decode_parents(parents)
    return job


def rows_to_jobs(rows: Sequence[Any]) -> list[Job]:
    """Every job present in a flat list of rows."""
    jobs = []
    for at in range(0, len(rows), ROW_WIDTH):
        job = row_to_job(rows, at)
        if job is not None:
            jobs.append(job)
    return jobs


def claimed_jobs(rows: Sequence[Any], queues: Sequence[str]) -> list[Job]:
    """The jobs of claim.lua's reply (rows of CLAIM_ROW_WIDTH): a worker's hot path.

    ``Job`` is called positionally, each argument named by its comment: keywords made this
    function about 45% slower on CPython 3.11 (timed over 100k rows). Every field is
    checked against a keyword-built job in ``tests/stores/test_redis_codec.py``.
    """
    jobs = []
    active = JobState.ACTIVE
    for at in range(0, len(rows), CLAIM_ROW_WIDTH):
        (
            index, job_id, packed, type_, run_at, attempts, nacks, additional_deliveries,
            error_count, last_error, lease_until, no_expiry, cancel_requested, progress, headers,
            parents,
        ) = rows[at : at + CLAIM_ROW_WIDTH]  # fmt: skip
        encoding, created_at, priority, retry_after, expires_at, max_attempts, result_ttl, body = (
            unpack_record(packed)
        )
        job = Job(
            job_id.decode(),  # id
            queues[index - 1],  # queue
            body,  # raw_body
            encoding,  # encoding
            None if type_ is None else type_.decode(),  # type
            priority,  # priority
            active,  # state
            created_at,  # created_at
            float(run_at),  # run_at
            retry_after,  # retry_after
            None if no_expiry is not None else expires_at,  # expires_at
            max_attempts,  # max_attempts
            result_ttl,  # result_ttl
            int(attempts),  # attempts: a number, or text when a retried claim reads it back
            int(nacks) if nacks else 0,  # nacks
            int(additional_deliveries) if additional_deliveries else 0,  # additional_deliveries
            int(error_count) if error_count else 0,  # error_count
            None if last_error is None else last_error.decode(),  # last_error
            None if lease_until == b"+inf" else float(lease_until),  # lease_until
            None,  # raw_result
            Encoding.BYTES,  # result_encoding
            None,  # finished_at
            cancel_requested is not None,  # cancel_requested (a redelivered job's)
            None if progress is None else decode_progress(progress),  # progress
        )
        if headers is not None:  # most jobs have none: no call for them
            job.headers = json.loads(headers)
        if parents is not None:
            job.depends_on, job.on_dependency_failure = decode_parents(parents)
        jobs.append(job)
    return jobs


def decode_parents(value: bytes) -> tuple[tuple[str, ...], DependencyPolicy]:
    """A job's ``do`` field as its ``depends_on`` and ``on_dependency_failure``."""
    text = value.decode()
    parents = tuple(text[at : at + ID_LENGTH] for at in range(1, len(text), ID_LENGTH))
    return parents, _POLICY_LETTERS[value[0]]


def parents_block(job: Job, queues: dict[str, str] | None) -> bytes:
    """A job's parents as ``add.lua`` reads them (options flag 64); ``queues`` names the
    queue of each parent outside the job's own (a Cluster's; None on one server)."""
    block = [
        _PARENTS.pack(DEPENDENCY_POLICIES.index(job.on_dependency_failure), len(job.depends_on))
    ]
    for parent in job.depends_on:
        name = b""
        if queues is not None and queues.get(parent, job.queue) != job.queue:
            name = queues[parent].encode()
        block += [_NAME.pack(len(name)), name, parent.encode()]
    return b"".join(block)


def job_args(job: Job, queues: dict[str, str] | None = None) -> tuple[Any, ...]:
    """A job's values in the order ``add.lua`` reads them: id, m, run_at, options
    (``queues``: see :func:`parents_block`)."""
    flags = 0
    options = []
    if job.depends_on:
        flags |= 64
        options.append(parents_block(job, queues))
    if job.priority != DEFAULT_PRIORITY:
        flags |= 1
        options.append(_INT.pack(job.priority))
    if job.expires_at is not None:
        flags |= 2
        options.append(_FLOAT.pack(job.expires_at))
    if job.retry_after != DEFAULT_RETRY_AFTER:
        flags |= 4
        options.append(_FLOAT.pack(job.retry_after))
    if job.result_ttl != DEFAULT_RESULT_TTL:
        flags |= 8
        options.append(_FLOAT.pack(job.result_ttl))
    if job.unique_key is not None:
        flags |= 16
        key = job.unique_key.encode()
        options.append(_UNIQUE.pack(job.unique_states, len(key)) + key)
    if job.headers:
        flags |= 32
        headers = json.dumps(job.headers, ensure_ascii=False, separators=(",", ":")).encode()
        options.append(_SIZE.pack(len(headers)) + headers)
    if flags or job.type is not None:
        packed = bytes((flags,)) + b"".join(options) + (job.type or "").encode()
    else:
        packed = b""
    return job.id, pack_record(job), job.run_at, packed


def deliveries_of(
    job_ids: Sequence[str], attempts: Sequence[int | None] | None
) -> dict[str, int | str] | None:
    """The callers' delivery of each id as a script argument ("" acts by id), or None when
    every id acts by id. An id given twice keeps its first delivery."""
    if attempts is None:
        return None
    deliveries: dict[str, int | str] = {}
    for job_id, attempt in zip(job_ids, attempts, strict=True):
        deliveries.setdefault(job_id, "" if attempt is None else attempt)
    return deliveries


def id_queue_pairs(replies: list[Any]) -> dict[str, str]:
    """id -> queue from scripts' replies of ids and queues in turn (nack, enqueue)."""
    return {
        job_id.decode(): queue.decode()
        for reply in replies
        for job_id, queue in zip(reply[::2], reply[1::2], strict=True)
    }


def check_add(reply: Sequence[Any], max_len: int | None) -> dict[str, str]:
    """Raise what add.lua refused the batch for; else return id -> holder for the jobs it
    did not create because their unique key was held."""
    if len(reply) == 2 and reply[0] == b"ok":  # the usual answer: every job created
        return {}
    if reply[0] == b"full":
        raise QueueFull(reply[1].decode(), max_len or 0)
    if reply[0] == b"paused":
        raise QueuePaused(reply[1].decode())
    if reply[0] == b"missing":
        raise JobNotFound(reply[1].decode())
    pairs = reply[2:]
    return {pairs[i].decode(): pairs[i + 1].decode() for i in range(0, len(pairs), 2)}
