"""The job model: :class:`Job`, its states and its options (bodies and results are turned
into bytes by :mod:`disquette.encoding`)."""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
import operator
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Literal, NamedTuple

from .defaults import MAX_ATTEMPTS, PRIORITY, RESULT_TTL, RETRY_AFTER
from .encoding import MAX_PROGRESS_BYTES as MAX_PROGRESS_BYTES
from .encoding import Encoding as Encoding
from .encoding import decode_progress as decode_progress
from .encoding import decode_value as decode_value
from .encoding import encode_progress as encode_progress
from .encoding import encode_value as encode_value
from .errors import InvalidOption, InvalidQueueName
from .job_ids import check_job_id as check_job_id
from .job_ids import job_id_factory as job_id_factory
from .job_ids import new_job_id as new_job_id

#: Upper bound for any duration option: ten years. Anything longer is a unit mistake.
MAX_SECONDS: Final = 10 * 365 * 86400.0
MAX_QUEUE_NAME_BYTES: Final = 200
MAX_TYPE_NAME_BYTES: Final = 200
#: Default limit on an encoded body or result; ``connect(max_body_bytes=...)`` changes it.
DEFAULT_MAX_BODY_BYTES: Final = 16 * 1024 * 1024
#: Limit on a job's headers: the UTF-8 bytes of every key and value together.
MAX_HEADERS_BYTES: Final = 8 * 1024
PRIORITY_MIN: Final = -(2**31)
PRIORITY_MAX: Final = 2**31 - 1
#: Limit on a unique key (UTF-8 bytes, before ``unique_for``'s bucket is folded in).
MAX_UNIQUE_KEY_BYTES: Final = 256


class JobState(enum.StrEnum):
    """Where a job is in its lifecycle."""

    SCHEDULED = "scheduled"  #: waiting for its ``run_at`` (delay or retry backoff)
    QUEUED = "queued"  #: ready to be delivered
    ACTIVE = "active"  #: delivered and leased to a consumer
    DONE = "done"  #: acknowledged; kept for ``result_ttl`` so ``wait`` can see it
    FAILED = "failed"  #: attempts exhausted; kept until retried or deleted by hand
    CANCELLED = "cancelled"  #: cancelled (``cancel``); kept for ``result_ttl``, never delivered
    WAITING = "waiting"  #: added with ``depends_on``: waits for its parents to be done


#: Each state's bit in a job's ``unique_states``: 1 << its position here (the SQL stores'
#: state codes, so that their unique indexes test ``(unique_states >> state) & 1``).
_STATE_ORDER: Final = (
    "scheduled", "queued", "active", "done", "failed", "cancelled", "waiting"
)  # fmt: skip
#: The states a unique key always counts in (a job moving between them keeps its key).
PENDING_STATES: Final = frozenset(
    {JobState.SCHEDULED, JobState.QUEUED, JobState.ACTIVE, JobState.WAITING}
)
#: What becomes of a waiting job when one of its parents ends without being done (failed
#: for good, cancelled, deleted or expired): ``fail`` ends it too (``failed`` after a failed
#: parent, ``cancelled`` after the others), ``run`` counts that parent as finished.
DependencyPolicy = Literal["fail", "run"]
DEPENDENCY_POLICIES: Final[tuple[DependencyPolicy, ...]] = ("fail", "run")
#: The most parents one job may wait for.
MAX_DEPENDENCIES: Final = 1000


def state_bit(state: JobState) -> int:
    """The bit of ``state`` in a job's ``unique_states``."""
    return 1 << _STATE_ORDER.index(state.value)


def unique_mask(states: Iterable[JobState]) -> int:
    """``unique_states`` for these states (see :func:`state_bit`)."""
    mask = 0
    for state in states:
        mask |= state_bit(state)
    return mask


#: The states a unique key counts in unless the ``unique_states`` option says more.
DEFAULT_UNIQUE_MASK: Final = unique_mask(PENDING_STATES)


class AddResult(NamedTuple):
    """What an add did with one job: its id, and whether it was created. An add whose
    unique key another job of the queue holds creates nothing and answers that job's id."""

    id: str
    created: bool


def check_dependencies(depends_on: object, policy: object) -> tuple[str, ...]:
    """The parents of an ``add(..., depends_on=...)`` as a job keeps them (ids checked,
    repeats dropped, order kept); ``InvalidOption`` for anything else, or for a policy
    other than ``"fail"`` or ``"run"`` (:data:`DependencyPolicy`)."""
    if policy not in DEPENDENCY_POLICIES:
        raise InvalidOption("on_dependency_failure", policy, '"fail" or "run"')
    if isinstance(depends_on, str | bytes) or not isinstance(depends_on, Iterable):
        raise InvalidOption("depends_on", depends_on, "a list of job ids")
    parents = tuple(dict.fromkeys(check_job_id(job_id) for job_id in depends_on))
    if len(parents) > MAX_DEPENDENCIES:
        raise InvalidOption("depends_on", len(parents), f"at most {MAX_DEPENDENCIES} parents")
    return parents


def check_queue_name(queue: object) -> str:
    """Return ``queue`` if it is a usable queue name, else raise :class:`InvalidQueueName`.

    Any Unicode text is allowed except control characters and lone surrogates, so that
    every store (SQL text, Redis keys, Disque frames) keeps the name exactly.
    """
    if not isinstance(queue, str):
        raise InvalidQueueName(queue, "a queue name is a str")
    return _check_queue_text(queue)


@functools.lru_cache(maxsize=4096)
def _check_queue_text(queue: str) -> str:
    # Cached: a process uses few queue names, and this runs on every call.
    if not queue:
        raise InvalidQueueName(queue, "a queue name cannot be empty")
    try:
        size = len(queue.encode())
    except UnicodeEncodeError:
        raise InvalidQueueName(queue, "it contains a lone surrogate") from None
    if size > MAX_QUEUE_NAME_BYTES:
        raise InvalidQueueName(queue, f"longer than {MAX_QUEUE_NAME_BYTES} bytes")
    if any(unicodedata.category(char) == "Cc" for char in queue):
        raise InvalidQueueName(queue, "it contains a control character")
    return queue


def check_headers(headers: object) -> dict[str, str]:
    """A fresh copy of ``headers`` if they are usable, else raise :class:`InvalidOption`.

    Headers map non-empty ``str`` keys to ``str`` values, with no NUL character (PostgreSQL
    text cannot hold one) nor lone surrogate (not UTF-8), at most :data:`MAX_HEADERS_BYTES`
    in all. ``None`` means none. The copy keeps a caller's later changes out of the jobs.
    """
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise InvalidOption("headers", headers, "headers are a dict of str to str")
    size = 0
    checked: dict[str, str] = {}
    for key, value in headers.items():
        if not isinstance(key, str) or not key:
            raise InvalidOption("headers", key, "a header name is a non-empty str")
        if not isinstance(value, str):
            raise InvalidOption("headers", value, f"the value of {key!r} is not a str")
        size += _header_text_size(key) + _header_text_size(value)
        checked[key] = value
    if size > MAX_HEADERS_BYTES:
        raise InvalidOption("headers", size, f"more than {MAX_HEADERS_BYTES} bytes in all")
    return checked


def _header_text_size(text: str) -> int:
    """UTF-8 size of a header name or value that every store keeps exactly."""
    if "\x00" in text:
        raise InvalidOption("headers", text, "a header cannot contain a NUL character")
    try:
        return len(text.encode())
    except UnicodeEncodeError:
        raise InvalidOption("headers", text, "a header cannot contain a lone surrogate") from None


def check_queue_names(queues: Iterable[object]) -> list[str]:
    """Validate several queue names; at least one is required."""
    names = [check_queue_name(queue) for queue in queues]
    if not names:
        raise InvalidQueueName("", "at least one queue is required")
    return names


@dataclasses.dataclass(slots=True)
class Job:
    """A job as a store holds it. ``body`` and ``result`` are decoded on access."""

    id: str
    queue: str
    raw_body: bytes = dataclasses.field(repr=False)
    encoding: Encoding = Encoding.BYTES
    type: str | None = None
    priority: int = PRIORITY
    state: JobState = JobState.QUEUED
    created_at: float = 0.0
    #: When the job becomes (or became) ready; also its position among equal priorities.
    run_at: float = 0.0
    #: Lease length in seconds; 0 means the job is never redelivered (at-most-once).
    retry_after: float = RETRY_AFTER
    #: When the job is deleted: TTL for pending jobs, result retention for done ones.
    expires_at: float | None = None
    max_attempts: int = MAX_ATTEMPTS
    result_ttl: float = RESULT_TTL
    #: How many times the job was delivered.
    attempts: int = 0
    nacks: int = 0
    #: Deliveries that happened because a lease ran out (Disque's counter).
    additional_deliveries: int = 0
    error_count: int = 0
    last_error: str | None = None
    lease_until: float | None = None
    raw_result: bytes | None = dataclasses.field(default=None, repr=False)
    result_encoding: Encoding = Encoding.BYTES
    finished_at: float | None = None
    #: Someone asked to cancel this active job (``cancel``): its handler should stop. A
    #: worker sets it on the job its handler holds as soon as it learns of the request.
    cancel_requested: bool = False
    #: What the lease holder last reported with ``progress`` (decoded JSON), or ``None``.
    progress: Any = None
    #: The key no other job of the queue may hold at once (``unique_for``'s bucket folded
    #: in), or None. Given at add; stores keep it, but ``show`` and ``get`` need not return it.
    unique_key: str | None = None
    #: While the job is in one of these states (bits of :func:`state_bit`), it holds
    #: ``unique_key``: an add of the same key to its queue adds nothing.
    unique_states: int = 0
    #: Metadata carried unchanged with the job (tracing context, ...); see ``add``.
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    #: The jobs this one waits for (``add(..., depends_on=...)``): it stays ``waiting``
    #: until each is done (or has ended, under ``on_dependency_failure="run"``).
    depends_on: tuple[str, ...] = ()
    #: What a parent ending without being done does to this job (see
    #: :data:`DependencyPolicy`); meaningful only with ``depends_on``.
    on_dependency_failure: DependencyPolicy = "fail"

    def copy(self) -> Job:
        """A shallow copy (faster than ``dataclasses.replace``, which stores call often),
        but for its own ``headers`` dict: changing a copy's headers leaves this job's."""
        job = Job(*_job_fields(self))
        if job.headers:
            job.headers = dict(job.headers)
        return job

    @property
    def body(self) -> Any:
        """The body as it was added: bytes, str, or the decoded JSON value."""
        return decode_value(self.raw_body, self.encoding)

    @property
    def result(self) -> Any:
        """What the consumer passed to ``ack`` (decoded), or ``None``."""
        return decode_value(self.raw_result, self.result_encoding)


#: Job's fields as a tuple, in order: ``Job(*_job_fields(job))`` copies a job.
_job_fields: Final[Callable[[Job], tuple[Any, ...]]] = operator.attrgetter(
    *(field.name for field in dataclasses.fields(Job))
)


def new_job(
    job_id: str,
    queue: str,
    raw_body: bytes,
    encoding: Encoding,
    now: float,
    *,
    type: str | None = None,
    priority: int = PRIORITY,
    delay: float = 0.0,
    retry_after: float = RETRY_AFTER,
    expires_at: float | None = None,
    max_attempts: int = MAX_ATTEMPTS,
    result_ttl: float = RESULT_TTL,
    headers: dict[str, str] | None = None,
) -> Job:
    """A job about to be added (the client's ``add``, the server's ADDJOB, a funnel's
    ``requeue``): queued as of ``now``, ready ``delay`` seconds later, counters at zero;
    what is not given takes its default from :mod:`disquette.defaults`.

    It takes ``expires_at``, not a TTL: the server counts Disque's whole-second TTLs from
    the current second, a client from ``now``. ``headers`` are kept as given (checked
    already, see :func:`check_headers`), and shared by the jobs of one call.
    """
    return _queued_job(
        job_id, queue, raw_body, encoding, type, priority, now, now + delay, retry_after,
        expires_at, max_attempts, result_ttl, headers,
    )  # fmt: skip


def _queued_job(
    job_id: str,
    queue: str,
    raw_body: bytes,
    encoding: Encoding,
    type: str | None,
    priority: int,
    now: float,
    run_at: float,
    retry_after: float,
    expires_at: float | None,
    max_attempts: int,
    result_ttl: float,
    headers: dict[str, str] | None,
) -> Job:
    """:func:`new_job` by position (what ``new_jobs`` calls once per job: a call by
    keyword costs about 2,000 instructions more)."""
    # Positional, in Job's field order: this runs once per job on the hot add paths, and
    # a dataclass __init__ called by keyword costs twice as much.
    job = Job(
        job_id,
        queue,
        raw_body,
        encoding,
        type,
        priority,
        JobState.QUEUED,
        now,
        run_at,
        retry_after,
        expires_at,
        max_attempts,
        result_ttl,
    )
    if headers:
        job.headers = headers
    return job


def new_jobs(
    options: Options,
    bodies: Iterable[object],
    queue: str,
    now: float,
    limit: int,
    headers: dict[str, str] | None = None,
) -> list[Job]:
    """Encode bodies (each at most ``limit`` bytes) into new jobs of ``queue`` under
    ``options`` (merged over :data:`DEFAULTS`); the option-derived fields are computed once.
    The jobs share ``headers`` (checked already, see :func:`check_headers`)."""
    # The options are merged over DEFAULTS, so they are never None here: the fallbacks
    # only narrow the types.
    retry_after = options.retry_after if options.retry_after is not None else RETRY_AFTER
    ttl = options.ttl
    expires_at = None if ttl is None else now + ttl
    run_at = now + (options.delay or 0.0)
    priority = options.priority if options.priority is not None else PRIORITY
    max_attempts = options.max_attempts or 1
    result_ttl = options.result_ttl if options.result_ttl is not None else RESULT_TTL
    type_ = options.type
    # Most adds have no unique key: no call for them.
    unique_key, unique_states = (
        (None, 0) if options.unique_key is None else unique_fields(options, now)
    )
    ids = job_id_factory(ttl, retry_after)
    jobs = []
    for body in bodies:
        raw_body, encoding = encode_value(body, limit)
        job = _queued_job(
            ids(), queue, raw_body, encoding, type_, priority, now, run_at, retry_after,
            expires_at, max_attempts, result_ttl, headers,
        )  # fmt: skip
        if unique_key is not None:
            job.unique_key, job.unique_states = unique_key, unique_states
        jobs.append(job)
    return jobs


@dataclasses.dataclass(frozen=True, slots=True)
class StatsRow:
    """Counts for one (queue, type) pair, as in Que's JobStats."""

    queue: str
    type: str | None
    scheduled: int = 0
    queued: int = 0
    active: int = 0
    done: int = 0
    failed: int = 0
    cancelled: int = 0
    #: Jobs waiting for their parents (``depends_on``).
    waiting: int = 0
    #: Highest ``error_count`` among pending and failed jobs.
    max_error_count: int = 0
    #: Earliest ``run_at`` among pending (scheduled, queued or active) jobs.
    oldest_run_at: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Stats:
    """A snapshot of every (queue, type) pair the store holds, plus paused queues."""

    rows: tuple[StatsRow, ...]
    paused: frozenset[str] = frozenset()

    def by_queue(self) -> dict[str, StatsRow]:
        """Merge the rows of each queue across types."""
        merged: dict[str, StatsRow] = {}
        for row in self.rows:
            merged[row.queue] = _merge_rows(merged.get(row.queue), row, row.queue, None)
        return merged

    def by_type(self) -> dict[str | None, StatsRow]:
        """Merge the rows of each job type across queues (queue is ``"*"``)."""
        merged: dict[str | None, StatsRow] = {}
        for row in self.rows:
            merged[row.type] = _merge_rows(merged.get(row.type), row, "*", row.type)
        return merged


def _merge_rows(left: StatsRow | None, right: StatsRow, queue: str, type_: str | None) -> StatsRow:
    if left is None:
        return dataclasses.replace(right, queue=queue, type=type_)
    oldest = [t for t in (left.oldest_run_at, right.oldest_run_at) if t is not None]
    return StatsRow(
        queue=queue,
        type=type_,
        scheduled=left.scheduled + right.scheduled,
        queued=left.queued + right.queued,
        active=left.active + right.active,
        done=left.done + right.done,
        failed=left.failed + right.failed,
        cancelled=left.cancelled + right.cancelled,
        waiting=left.waiting + right.waiting,
        max_error_count=max(left.max_error_count, right.max_error_count),
        oldest_run_at=min(oldest) if oldest else None,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Options:
    """Per-call settings, as in the Disque client's Config. ``None`` means "not set here".

    Options compose: ``a.merge(b)`` takes every field ``b`` sets and keeps ``a`` for the rest.
    """

    #: Seconds a blocking call (``get``, ``wait``) waits; ``None`` blocks, 0 does not wait.
    timeout: float | None = None
    #: Copies that must exist before ``add`` returns (stores without replication allow 0).
    replicate: int | None = None
    #: Seconds before the job becomes ready.
    delay: float | None = None
    #: Lease length in seconds: an unacknowledged job is redelivered after it. 0 = never.
    retry_after: float | None = None
    #: Seconds after which a job that is not done is deleted.
    ttl: float | None = None
    #: Refuse ``add`` with :class:`QueueFull` when the queue holds this many queued jobs.
    max_len: int | None = None
    #: Lower runs first; default :data:`disquette.defaults.PRIORITY` (100).
    priority: int | None = None
    #: Handler name, for the worker.
    type: str | None = None
    #: Errors after which a job is kept as ``failed`` instead of retried.
    max_attempts: int | None = None
    #: Seconds a done job (and its result) is kept for ``wait``.
    result_ttl: float | None = None
    #: While a job of the queue holds this key (in a state of ``unique_states``), an add
    #: with it adds nothing and answers that job's id. At most 256 UTF-8 bytes.
    unique_key: str | None = None
    #: Seconds: the key is held per time bucket (``floor(now / unique_for)`` is folded in),
    #: so at most one job per key and bucket.
    unique_for: float | None = None
    #: States in which a job holds its key: always scheduled, queued and active (the
    #: default); ``done`` and ``failed`` may be added. Names or :class:`JobState` values.
    unique_states: frozenset[JobState] | None = None

    def __post_init__(self) -> None:
        _check_seconds("timeout", self.timeout, allow_zero=True)
        _check_int("replicate", self.replicate, 0, 1000)
        _check_seconds("delay", self.delay, allow_zero=True)
        _check_seconds("retry_after", self.retry_after, allow_zero=True)
        _check_seconds("ttl", self.ttl, allow_zero=False)
        _check_int("max_len", self.max_len, 1, 2**62)
        _check_int("priority", self.priority, PRIORITY_MIN, PRIORITY_MAX)
        _check_int("max_attempts", self.max_attempts, 1, 1_000_000)
        _check_seconds("result_ttl", self.result_ttl, allow_zero=True)
        if self.type is not None:
            if not isinstance(self.type, str) or not self.type:
                raise InvalidOption("type", self.type, "a job type is a non-empty str")
            if len(self.type.encode(errors="replace")) > MAX_TYPE_NAME_BYTES:
                raise InvalidOption("type", self.type, f"longer than {MAX_TYPE_NAME_BYTES} bytes")
        _check_unique_key(self.unique_key)
        _check_seconds("unique_for", self.unique_for, allow_zero=False)
        if self.unique_states is not None:
            # Frozen: normalized in place, so that names and sets of them are accepted.
            object.__setattr__(self, "unique_states", unique_states_of(self.unique_states))

    def with_unique(
        self, key: str, unique_for: float | None, states: Iterable[str] | None
    ) -> Options:
        """These options with a unique key (and ``unique_for`` and ``unique_states`` when
        given). Only the new values are checked: the others were when these were made, and
        a unique add pays for no more (``jobs.unique(key)`` runs once per add)."""
        _check_unique_key(key)
        _check_seconds("unique_for", unique_for, allow_zero=False)
        copy = object.__new__(Options)
        # Through the slots' own setters (frozen only guards setattr): 8x faster.
        for set_field, value in zip(_OPTION_SETTERS, _option_values(self), strict=True):
            set_field(copy, value)
        object.__setattr__(copy, "unique_key", key)
        if unique_for is not None:
            object.__setattr__(copy, "unique_for", unique_for)
        if states is not None:
            object.__setattr__(copy, "unique_states", unique_states_of(states))
        return copy

    def merge(self, other: Options) -> Options:
        """Return these options with every field that ``other`` sets replaced."""
        changes = {
            field.name: value
            for field in dataclasses.fields(other)
            if (value := getattr(other, field.name)) is not None
        }
        return dataclasses.replace(self, **changes) if changes else self


#: Options' field names, and a function reading their values in that order.
_OPTION_NAMES: Final = tuple(field.name for field in dataclasses.fields(Options))
_option_values: Final[Callable[[Options], tuple[Any, ...]]] = operator.attrgetter(*_OPTION_NAMES)
_OPTION_SETTERS: Final[tuple[Callable[[Options, Any], None], ...]] = tuple(
    vars(Options)[name].__set__ for name in _OPTION_NAMES
)


def _check_seconds(name: str, value: object, *, allow_zero: bool) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidOption(name, value, "seconds are an int or a float")
    if not math.isfinite(value):
        raise InvalidOption(name, value, "must be finite")
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidOption(name, value, "must be positive" if not allow_zero else "negative")
    if value > MAX_SECONDS:
        raise InvalidOption(name, value, f"more than {MAX_SECONDS:.0f}s (ten years)")


def _check_unique_key(key: object) -> None:
    if key is None:
        return
    if not isinstance(key, str) or not key:
        raise InvalidOption("unique_key", key, "a unique key is a non-empty str")
    try:
        size = len(key.encode())
    except UnicodeEncodeError:
        raise InvalidOption("unique_key", key, "it contains a lone surrogate") from None
    if size > MAX_UNIQUE_KEY_BYTES:
        raise InvalidOption("unique_key", key, f"longer than {MAX_UNIQUE_KEY_BYTES} bytes")


def unique_states_of(states: object) -> frozenset[JobState]:
    """The states a unique key counts in, from names or :class:`JobState` values; raises
    :class:`InvalidOption` for an unknown name or a set without the pending states."""
    if isinstance(states, str | bytes) or not isinstance(states, Iterable):
        raise InvalidOption("unique_states", states, "a collection of state names")
    found = set()
    for name in states:
        if not isinstance(name, str) or name not in _STATE_ORDER:
            raise InvalidOption(
                "unique_states", name, f"not a state (known: {', '.join(_STATE_ORDER)})"
            )
        found.add(JobState(name))
    # Stores keep one unique index per queue and key: a job going back and forth between
    # the pending states must never find its own key taken. ``waiting`` (dependencies) came
    # later than the others: it always counts, unnamed.
    found.add(JobState.WAITING)
    if not found >= PENDING_STATES:
        raise InvalidOption(
            "unique_states", sorted(found), "scheduled, queued and active always count"
        )
    return frozenset(found)


def unique_fields(options: Options, now: float) -> tuple[str | None, int]:
    """A new job's ``unique_key`` (with ``unique_for``'s time bucket folded in) and
    ``unique_states`` under ``options``: ``(None, 0)`` when it has no key."""
    key = options.unique_key
    if key is None:
        return None, 0
    if options.unique_for is not None:
        # \x1f keeps the bucket apart from the key: "a" in bucket 12 is never "a1" in 2.
        key = f"{key}\x1f{math.floor(now / options.unique_for)}"
    states = options.unique_states
    return key, DEFAULT_UNIQUE_MASK if states is None else unique_mask(states)


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidOption(name, value, "must be an int")
    if not low <= value <= high:
        raise InvalidOption(name, value, f"must be between {low} and {high}")


#: What an option resolves to when no layer sets it.
DEFAULTS: Final = Options(
    replicate=0,
    delay=0.0,
    retry_after=RETRY_AFTER,
    priority=PRIORITY,
    max_attempts=MAX_ATTEMPTS,
    result_ttl=RESULT_TTL,
)
