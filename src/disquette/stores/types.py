"""What every store shares that does not depend on the sync/async flavor."""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
from collections.abc import Callable, Iterable
from typing import Final, Literal

from ..errors import InvalidOption, NotReplicated
from ..job import Encoding

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
    #: ``set_limits`` keeps per-queue concurrency and rate limits that every claim obeys
    #: (see :mod:`disquette.stores.limits`).
    limits: bool = _capability(
        "keeps no queue limits its claims would obey: set_limits() raises NotSupported",
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
