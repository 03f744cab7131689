"""What every store shares that does not depend on the sync/async flavor."""

from __future__ import annotations

import base64
import bisect
import dataclasses
import json
import math
import operator
import re
import threading
from collections.abc import Callable, Iterable
from typing import Final, Literal, NamedTuple

from ..errors import InvalidOption, NotReplicated
from ..job import Encoding, Job, JobState, check_queue_name

#: The wake-up channel for "some job finished", used by ``wait``.
DONE_CHANNEL: Final = "\x00done"
#: The wake-up channel of one job's end (done, failed, cancelled, deleted): ``wait``
#: subscribes it beside ``DONE_CHANNEL``, so a store that knows who waits on which job
#: (Redis) signals only that waiter; see :func:`job_done_channel`.
JOB_DONE_PREFIX: Final = DONE_CHANNEL + ":"


def job_done_channel(job_id: str) -> str:
    """The wake-up channel a ``wait`` on ``job_id`` subscribes beside ``DONE_CHANNEL``."""
    return JOB_DONE_PREFIX + job_id


#: The wake-up channel for "a cancel was requested for an active job", used by workers.
CANCEL_CHANNEL: Final = "\x00cancel"
#: The ``last_error`` of an at-most-once job failed by ``release_leases``: its holder died
#: while it ran, and running it again could run it twice.
HOLDER_GONE: Final = "its worker process died holding it (at-most-once: not delivered again)"


def dependency_error(parent_id: str, parent_state: str) -> str:
    """The ``last_error`` of a waiting job ended by a parent that ended without being done
    (under ``on_dependency_failure="fail"``); ``parent_state`` is ``failed``,
    ``cancelled``, ``deleted`` or ``expired``. Every store writes this same text."""
    return f"dependency {parent_id} {parent_state}"


class WouldBlock(Exception):
    """Internal: the call would have to wait for a lock; nothing was changed."""


class Wakeups:
    """In-process fan-out of "something changed in this queue" signals.

    A blocked ``get`` subscribes its queues before it claims, so an ``add`` that lands
    between the claim and the wait still wakes it. Stores that learn of changes made by
    other processes (LISTEN/NOTIFY, Redis) call :meth:`notify` too; the others rely on
    their ``poll_interval``.
    """

    def __init__(self, on_subscribe: Callable[[list[str]], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str, set[Callable[[], None]]] = {}
        #: Called with the channels at each subscribe: stores start listening to other
        #: processes lazily, the first time someone waits.
        self._on_subscribe = on_subscribe

    def subscribe(
        self, channels: Iterable[str], callback: Callable[[], None]
    ) -> Callable[[], None]:
        """Call ``callback`` on each notify of one of ``channels``; return the unsubscriber."""
        names = list(channels)
        if self._on_subscribe is not None:
            self._on_subscribe(names)
        with self._lock:
            for name in names:
                self._subscribers.setdefault(name, set()).add(callback)

        def unsubscribe() -> None:
            with self._lock:
                for name in names:
                    callbacks = self._subscribers.get(name)
                    if callbacks is not None:
                        callbacks.discard(callback)
                        if not callbacks:
                            del self._subscribers[name]

        return unsubscribe

    def subscribed(self) -> frozenset[str]:
        """The channels something is subscribed to right now."""
        with self._lock:
            return frozenset(self._subscribers)

    def notify_all(self) -> None:
        """Wake every subscriber (after a listener reconnects: changes may have been missed)."""
        with self._lock:
            names = list(self._subscribers)
        self.notify(names)

    def notify(self, channels: Iterable[str]) -> None:
        """Wake every subscriber of any of ``channels``."""
        if not self._subscribers:  # the common case when nobody blocks: no lock taken
            return
        with self._lock:
            callbacks = {cb for name in channels for cb in self._subscribers.get(name, ())}
        for callback in callbacks:
            callback()


def held_elsewhere(holder: str | None, job_id: str) -> bool:
    """Whether a unique key's ``holder`` (None: nobody) is another job than ``job_id`` (an
    add run again meets its own job: that is no duplicate)."""
    return holder is not None and holder != job_id


def refuse_store_powers(store: str, connection: object, replicate: int) -> None:
    """For stores without transactions to join or replicas to wait for: refuse the request
    with a typed error instead of silently ignoring it."""
    if connection is not None:
        raise InvalidOption("connection", connection, f"the {store} store has no transactions")
    if replicate > 0:
        raise NotReplicated(replicate, 0, store)


#: A queue's pause state, as Disque's PAUSE names it: ``in`` refuses adds
#: (:class:`~disquette.errors.QueuePaused`), ``out`` stops delivery, ``all`` both.
PauseMode = Literal["none", "in", "out", "all"]
#: A job's result as a store keeps it: its encoded bytes (None: no result) and encoding.
EncodedResult = tuple["bytes | None", Encoding]
#: What a job acked without a result keeps.
NO_RESULT: Final[EncodedResult] = (None, Encoding.BYTES)
PAUSE_MODES: Final[tuple[PauseMode, ...]] = ("none", "in", "out", "all")
#: Bit 1 refuses adds, bit 2 stops delivery: ``PAUSE_MODES[bits]`` is the mode's name.
PAUSE_IN: Final = 1
PAUSE_OUT: Final = 2


def pause_bits(mode: PauseMode) -> int:
    """The bits of a pause mode (``in`` 1, ``out`` 2, ``all`` 3)."""
    return PAUSE_MODES.index(mode)


class Delivery(NamedTuple):
    """What delivering a claimed job over the Disque protocol takes (GETJOB's reply, with
    WITHCOUNTERS): :meth:`~disquette.stores.store_async.AsyncStore.claim_deliveries`
    returns these instead of whole jobs. The names are :class:`~disquette.job.Job`'s, so
    code that reads only them takes either."""

    id: str
    queue: str
    raw_body: bytes
    nacks: int
    additional_deliveries: int

    @classmethod
    def of(cls, job: Job) -> Delivery:
        """The delivery of a claimed job."""
        # tuple.__new__, not cls(...): a named tuple's __new__ is a Python call per job.
        return tuple.__new__(cls, _delivery_fields(job))


#: A job's fields a :class:`Delivery` holds, in its order (its names are Job's).
_delivery_fields: Final = operator.attrgetter(*Delivery._fields)


def deliveries_of(jobs: Iterable[Job]) -> list[Delivery]:
    """:meth:`Delivery.of` each claimed job, without a Python call per job (``Delivery.of``
    and a named tuple's ``__new__`` are one each): ``claim_deliveries`` of a store that
    makes whole jobs."""
    new, fields = tuple.__new__, _delivery_fields
    return [new(Delivery, fields(job)) for job in jobs]


@dataclasses.dataclass(frozen=True, slots=True)
class QueueInfo:
    """One queue a store knows: it holds jobs (in any state) or has a pause mode."""

    name: str
    #: Jobs ready to be delivered (what ``qlen`` counts).
    queued: int
    pause: PauseMode = "none"


@dataclasses.dataclass(frozen=True, slots=True)
class NodeInfo:
    """A server registered in a store's node registry (a pool of servers on one store)."""

    id: str
    #: ``host:port`` clients can reach the node at.
    address: str
    #: When the registration lapses unless the node renews it (store clock seconds).
    expires_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A periodic job's definition as a store keeps it (``register_schedules``): enough to
    list it, pause it and fire it now without the app's code, plus whether it is paused."""

    name: str
    #: The cron expression, or the interval in seconds as text (``"60"``).
    spec: str
    tz: str
    queue: str
    type: str | None
    body: bytes
    encoding: Encoding
    #: ``"latest"``, ``"none"`` or a number of slots, as text.
    catch_up: str
    #: The job options the schedule sets (priority, retry_after, ...), by name.
    options: dict[str, float] = dataclasses.field(default_factory=dict)
    #: A paused schedule fires nothing (registering the definition again keeps this flag).
    paused: bool = False

    def definition(self) -> str:
        """Everything but the name and the paused flag, as JSON text (what stores keep)."""
        fields = dataclasses.asdict(self)
        for name in ("name", "paused"):
            del fields[name]
        fields["body"] = base64.b64encode(self.body).decode()
        fields["encoding"] = int(self.encoding)
        return json.dumps(fields, separators=(",", ":"))

    @classmethod
    def from_definition(cls, name: str, definition: str | bytes, paused: bool) -> ScheduleInfo:
        """The inverse of :meth:`definition`."""
        fields = json.loads(definition)
        fields["body"] = base64.b64decode(fields["body"])
        fields["encoding"] = Encoding(fields["encoding"])
        return cls(name=name, paused=paused, **fields)


def _capability(reason: str, *, default: bool = True) -> bool:
    """A capability flag; ``reason`` says what a store lacking it does instead (the xfail
    reason of the conformance tests that need it, and the log line of callers that skip)."""
    return dataclasses.field(default=default, metadata={"lacking": reason})


@dataclasses.dataclass(frozen=True, slots=True)
class Capabilities:
    """What a kind of store can do, stated by the store (as River's ``SupportsListener()``
    or Oban's peer and notifier modules) so that callers read a flag instead of calling to
    see whether it raises. A store lacking a capability still refuses the call with a typed
    error (``NotSupported``, ``InvalidOption``, ``NotReplicated``) when it is made anyway.

    The defaults are disquette's own semantics; the powers only some servers have
    (transactions, replication, migrations) default to off.
    """

    #: ``add`` and ``ack`` join the caller's transaction (``connection=``).
    transactions: bool = _capability(
        "no transactions to join: connection= is refused (InvalidOption)", default=False
    )
    #: ``add(replicate=n)`` can wait for replicas (up to the store's ``max_replicas``).
    replication: bool = _capability(
        "no replicas to wait for: replicate= is refused (NotReplicated)", default=False
    )
    #: ``register_node``, ``unregister_node`` and ``nodes`` keep a registry of the servers
    #: sharing the store (a pool).
    node_registry: bool = _capability(
        "no node registry a client can write (NotSupported): the servers register themselves"
    )
    #: ``migrate()`` creates or upgrades a versioned schema.
    migrations: bool = _capability(
        "no migrations (NotSupported): the store creates what it needs when opened",
        default=False,
    )
    #: Acked jobs are kept as ``done`` with their result for ``result_ttl`` (``wait`` sees
    #: them, ``show`` and ``scan`` list them).
    results: bool = _capability(
        "keeps no done state and no results: an ack deletes the job, so wait() and show() "
        "after it raise JobNotFound"
    )
    #: ``fail`` counts errors, backs off and keeps a job as ``failed`` after its last attempt.
    failures: bool = _capability(
        "keeps no error count, no backoff and no failed state: a failed job is delivered "
        "again after its lease"
    )
    #: Claims record their holder, and ``release_leases`` gives a dead holder's jobs back.
    lease_holders: bool = _capability(
        "records no lease holders: release_leases is refused (NotSupported), a dead "
        "consumer's jobs come back when their leases run out"
    )
    #: ``recover_stale`` requeues lapsed leases on request (the store's server does not).
    recovers_stale: bool = _capability(
        "the server requeues lapsed leases itself: recover_stale() finds nothing to do"
    )
    #: Time is read from the ``clock`` the store was opened with (a ManualClock moves it).
    follows_clock: bool = _capability(
        "runs on its server's own clock: ManualClock.advance() cannot move it"
    )
    #: ``ack``, ``nack``, ``fail`` and ``working`` given a job act on its delivery only
    #: (``LeaseLost`` for an older one); without, they act by id.
    tracks_deliveries: bool = _capability(
        "acts by id, whatever delivery holds the job: LeaseLost is never raised"
    )
    #: Inside a queue, jobs come out by priority, then ``run_at``, then enqueue order.
    priorities: bool = _capability("no priorities: a queue's jobs come out in creation order")
    #: ``claim`` over several queues fills its count from the leftmost queue first.
    leftmost_first: bool = _capability(
        "a claim over several queues takes one job per queue per pass"
    )
    #: ``add`` honours ``unique_key``: a key held in its queue adds nothing (see
    #: :meth:`~disquette.stores.store_async.AsyncStore.add`).
    unique: bool = _capability(
        "cannot carry a unique key: an add with one is refused (NotSupported)"
    )
    #: ``add`` keeps the ids it is given, so adding a held id again adds nothing.
    keeps_given_ids: bool = _capability(
        "the server assigns job ids: an add sent again adds the jobs twice"
    )
    #: ``cancel`` ends a pending job ``cancelled`` and asks an active one's holder to stop
    #: (announced on ``CANCEL_CHANNEL``; ``working`` then raises ``JobCancelled``).
    cancellation: bool = _capability(
        "the protocol has no cancellation: cancel() raises NotSupported"
    )
    #: ``progress`` records a value on a held job (extending its lease), shown by ``show``.
    progress: bool = _capability("the protocol carries no progress: progress() raises NotSupported")
    #: ``register_schedules``, ``schedules`` and ``pause_schedule`` keep a registry of
    #: periodic jobs' definitions (listed, paused and fired now by the CLI and dashboards).
    schedules: bool = _capability(
        "keeps no schedule registry: register_schedules() and the others raise NotSupported"
    )
    #: ``register_worker``, ``unregister_worker`` and ``workers`` keep a registry of the
    #: worker processes, forgotten when their heartbeats stop.
    workers: bool = _capability(
        "keeps no worker registry: register_worker() and workers() raise NotSupported"
    )
    #: ``count_jobs`` and ``scan_jobs`` select jobs by a ``JobFilter`` (and so ``bulk``).
    job_filter: bool = _capability(
        "the protocol cannot select jobs by a filter: count() and scan_jobs() raise NotSupported"
    )
    #: ``queue_counts`` gives every queue's jobs by state, each count capped, in one
    #: bounded read (what a dashboard's overview shows).
    queue_counts: bool = _capability(
        "the protocol cannot count a queue's jobs by state: queue_counts() raises "
        "NotSupported (stats() counts them, reading every job)"
    )
    #: ``record_rollups`` and ``rollups`` keep per-minute and per-hour throughput.
    rollups: bool = _capability(
        "keeps no rollups: record_rollups() and rollups() raise NotSupported"
    )
    #: ``set_limits`` keeps per-queue concurrency and rate limits that every claim obeys
    #: (see :mod:`disquette.stores.limits`).
    limits: bool = _capability(
        "keeps no queue limits its claims would obey: set_limits() raises NotSupported",
        default=False,
    )

    #: ``add`` keeps ``depends_on``: a job waits (``waiting``) until its parents are done,
    #: released by their acks atomically (see :meth:`~.store_async.AsyncStore.add`).
    dependencies: bool = _capability(
        "keeps no job dependencies: an add with depends_on raises NotSupported",
        default=False,
    )

    def replace(self, **changes: bool) -> Capabilities:
        """These capabilities with some flags changed (a store states how it differs)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every capability's name."""
        return tuple(field.name for field in dataclasses.fields(cls))

    @classmethod
    def reason(cls, name: str) -> str:
        """What a store lacking capability ``name`` does instead; ``KeyError`` if unknown."""
        for field in dataclasses.fields(cls):
            if field.name == name:
                return str(field.metadata["lacking"])
        raise KeyError(name)

    def lacking(self, names: Iterable[str]) -> list[str]:
        """Those of ``names`` this store lacks, in the order given (``KeyError`` for a
        name that is no capability: a typo must not read as "lacking")."""
        wanted = list(names)
        unknown = [name for name in wanted if name not in self.names()]
        if unknown:
            raise KeyError(f"no capability {unknown} (known: {', '.join(self.names())})")
        return [name for name in wanted if not getattr(self, name)]


# -- operations: the worker registry, job filters, rollups, watch (issue 14) ---------------

#: How long a worker registration lives without a heartbeat before ``workers()`` forgets it.
WORKER_TTL: Final = 30.0
#: The most a ``count`` is exact up to by default (then "10,000+").
COUNT_CAP: Final = 10_000
#: The most jobs ``scan_jobs`` returns in one page.
MAX_PAGE: Final = 1_000
#: The bounds of a filter's ``body_path`` segments: object keys only (no array indexes), so
#: that every store reads the same path the same way.
_PATH_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_MAX_PATH_SEGMENTS = 8


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker process as the worker registry keeps it (``register_worker``)."""

    id: str
    host: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    #: Jobs the worker was running at its last heartbeat.
    in_flight: int
    #: Store-clock seconds.
    started_at: float
    heartbeat_at: float
    #: disquette's version in the worker.
    version: str

    def to_json(self) -> str:
        """The registration as JSON text (what stores keep)."""
        fields = dataclasses.asdict(self)
        fields["queues"] = list(self.queues)
        return json.dumps(fields, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> WorkerInfo:
        """The inverse of :meth:`to_json`."""
        fields = json.loads(text)
        fields["queues"] = tuple(fields["queues"])
        return cls(**fields)


def _check_text(option: str, value: object, max_len: int = 1000) -> None:
    if value is not None and (not isinstance(value, str) or not 0 < len(value) <= max_len):
        raise InvalidOption(option, value, f"a non-empty str of at most {max_len} characters")


def _check_time(option: str, value: object) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
    ):
        raise InvalidOption(option, value, "a finite number of epoch seconds")


@dataclasses.dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs ``count``, ``scan_jobs`` and ``bulk`` act on: every given field must
    match (None matches anything). Invalid values raise ``InvalidOption`` at construction.

    - ``queue``: the job's queue; ``states``: its state is one of these;
      ``type``: its type (exactly).
    - ``error``: a substring of its ``last_error`` (case-sensitive).
    - ``id_prefix``: its id starts with this.
    - ``since``/``until``: its ``created_at`` (store-clock epoch seconds) is ``>= since``
      and ``< until``.
    - ``body_path`` with ``body_value``: the JSON body (encoding ``json`` only) holds, at
      this dotted path of object keys (``"user.id"``; no array indexes), a string equal
      to ``body_value``, or a number or boolean whose JSON text is ``body_value``
      (``"42"``, ``"true"``). ``body_path`` alone matches bodies where the path exists
      with a non-null value.
    """

    queue: str | None = None
    states: frozenset[JobState] | None = None
    type: str | None = None
    error: str | None = None
    id_prefix: str | None = None
    since: float | None = None
    until: float | None = None
    body_path: str | None = None
    body_value: str | None = None

    def __post_init__(self) -> None:
        if self.queue is not None:
            check_queue_name(self.queue)
        if self.states is not None:
            if not isinstance(self.states, frozenset) or not self.states:
                raise InvalidOption("states", self.states, "a non-empty frozenset of JobState")
            object.__setattr__(self, "states", frozenset(JobState(s) for s in self.states))
        for option in ("type", "error", "id_prefix", "body_value"):
            _check_text(option, getattr(self, option))
        _check_time("since", self.since)
        _check_time("until", self.until)
        if self.body_path is not None:
            segments = self.body_path.split(".") if isinstance(self.body_path, str) else []
            if not 0 < len(segments) <= _MAX_PATH_SEGMENTS or not all(
                _PATH_SEGMENT.fullmatch(segment) for segment in segments
            ):
                raise InvalidOption(
                    "body_path",
                    self.body_path,
                    f"up to {_MAX_PATH_SEGMENTS} dot-separated object keys "
                    "([A-Za-z_][A-Za-z0-9_]*), such as user.id",
                )
        elif self.body_value is not None:
            raise InvalidOption("body_value", self.body_value, "needs a body_path")

    @property
    def path(self) -> tuple[str, ...]:
        """``body_path`` split into its keys (empty without one)."""
        return () if self.body_path is None else tuple(self.body_path.split("."))

    def matches(self, job: Job) -> bool:
        """Whether ``job`` matches (the memory store's filter, and Redis's bounded scan)."""
        return (
            (self.queue is None or job.queue == self.queue)
            and (self.states is None or job.state in self.states)
            and (self.type is None or job.type == self.type)
            and (self.error is None or self.error in (job.last_error or ""))
            and (self.id_prefix is None or job.id.startswith(self.id_prefix))
            and (self.since is None or job.created_at >= self.since)
            and (self.until is None or job.created_at < self.until)
            and (self.body_path is None or self._body_matches(job))
        )

    def _body_matches(self, job: Job) -> bool:
        if job.encoding is not Encoding.JSON:
            return False
        try:
            value: object = json.loads(job.raw_body)
        except ValueError:
            return False
        for key in self.path:
            if not isinstance(value, dict) or key not in value:
                return False
            value = value[key]
        if value is None or isinstance(value, dict | list):
            return False
        return self.body_value is None or json_text(value) == self.body_value


def json_text(value: object) -> str:
    """A JSON scalar as a filter's ``body_value`` compares it: a string as itself, a number
    or boolean as its JSON text."""
    return value if isinstance(value, str) else json.dumps(value)


@dataclasses.dataclass(frozen=True, slots=True)
class JobCount:
    """A capped count: exact when ``capped`` is False, else "at least ``value``"."""

    value: int
    capped: bool

    def __str__(self) -> str:
        return f"{self.value:,}+" if self.capped else f"{self.value:,}"


@dataclasses.dataclass(frozen=True, slots=True)
class QueueCounts:
    """One queue's jobs by state (``queue_counts``), each a :class:`JobCount`: exact when
    not ``capped``, else "at least ``value``" (never more than the jobs there are).

    How far a count is exact depends on the store's indexes, never on the table's size:
    every store counts queued and failed jobs exactly up to the cap; SQL stores count the
    other states within bounded windows of their indexes (see each store's
    ``queue_counts``), and say ``capped`` past them.
    """

    name: str
    #: Every state the store knows, in :class:`JobState` order.
    counts: dict[JobState, JobCount]
    pause: PauseMode = "none"
    #: When the job a claim would take next became ready (the later of its ``run_at``
    #: and its creation, store-clock seconds); None when no job is ready.
    ready_since: float | None = None

    def count(self, state: JobState | str) -> JobCount:
        """The count of ``state`` (zero for a state the store did not report)."""
        return self.counts.get(JobState(state), JobCount(0, False))


def queue_counts_of(
    name: str,
    exact: dict[JobState, int],
    cap: int,
    pause: PauseMode = "none",
    ready_since: float | None = None,
    lower_bounds: frozenset[JobState] = frozenset(),
) -> QueueCounts:
    """A :class:`QueueCounts` from counts by state (missing states: 0); a count above
    ``cap`` is capped, and so is every count of a state in ``lower_bounds``."""
    counts = {
        state: JobCount(
            min(exact.get(state, 0), cap), exact.get(state, 0) > cap or state in lower_bounds
        )
        for state in JobState
    }
    return QueueCounts(name, counts, pause, ready_since)


@dataclasses.dataclass(frozen=True, slots=True)
class JobPage:
    """One page of ``scan_jobs``: the jobs, and the cursor of the next page (None: the
    walk is over)."""

    jobs: list[Job]
    cursor: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class QueueEvent:
    """``watch()``: something changed in this queue (jobs added, ready, finished...)."""

    queue: str


#: The upper bounds (seconds) of the duration histogram's buckets; the last is unbounded.
DURATION_BUCKETS: Final[tuple[float, ...]] = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, math.inf,
)  # fmt: skip
#: The rollup resolutions, each with its period and how long its rows are kept (as Sidekiq).
ROLLUP_PERIODS: Final[dict[str, tuple[float, float]]] = {
    "minute": (60.0, 8 * 3600.0),
    "hour": (3600.0, 3 * 86400.0),
}
Resolution = Literal["minute", "hour"]


def duration_bucket(seconds: float) -> int:
    """The histogram bucket of a duration."""
    return bisect.bisect_left(DURATION_BUCKETS, seconds)


@dataclasses.dataclass(frozen=True, slots=True)
class RollupRow:
    """Throughput, errors and durations of one (queue, type) over one minute or hour.
    ``record_rollups`` adds rows into the stored ones (several workers flush the same
    period)."""

    resolution: Resolution
    #: The period's start, store-clock epoch seconds (a multiple of its length).
    start: float
    queue: str
    #: The job type ("" for jobs without one).
    type: str
    completed: int
    errors: int
    #: Runs per duration bucket (:data:`DURATION_BUCKETS`), completed and failed runs both.
    histogram: tuple[int, ...]

    def percentile(self, q: float) -> float | None:
        """The duration (a bucket's upper bound) under which a fraction ``q`` of the runs
        ended; None without runs, ``inf`` in the last bucket."""
        total = sum(self.histogram)
        if not total:
            return None
        rank = math.ceil(q * total)
        seen = 0
        for bound, n in zip(DURATION_BUCKETS, self.histogram, strict=True):
            seen += n
            if seen >= max(rank, 1):
                return bound
        return math.inf  # pragma: no cover - the loop always reaches the total

    @property
    def p50(self) -> float | None:
        """The median duration (bucket bound)."""
        return self.percentile(0.5)

    @property
    def p95(self) -> float | None:
        """The 95th percentile duration (bucket bound)."""
        return self.percentile(0.95)

    @property
    def p99(self) -> float | None:
        """The 99th percentile duration (bucket bound)."""
        return self.percentile(0.99)


def check_rollup_query(resolution: object, since: object) -> None:
    """Refuse a bad ``rollups`` query with ``InvalidOption``."""
    if resolution not in ROLLUP_PERIODS:
        raise InvalidOption("resolution", resolution, "minute or hour")
    _check_time("since", since)


def merge_rollups(rows: Iterable[RollupRow]) -> list[RollupRow]:
    """Rows with the same (resolution, start, queue, type) added together, sorted by
    those (what a store that keeps them in a dictionary returns)."""
    merged: dict[tuple[str, float, str, str], RollupRow] = {}
    for row in rows:
        key = (row.resolution, row.start, row.queue, row.type)
        old = merged.get(key)
        merged[key] = row if old is None else add_rollups(old, row)
    return [merged[key] for key in sorted(merged)]


def add_rollups(a: RollupRow, b: RollupRow) -> RollupRow:
    """Two rows of the same key added together."""
    return dataclasses.replace(
        a,
        completed=a.completed + b.completed,
        errors=a.errors + b.errors,
        histogram=tuple(x + y for x, y in zip(a.histogram, b.histogram, strict=True)),
    )
