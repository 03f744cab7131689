"""Everything that can go wrong, one class per condition a caller handles differently.

The hierarchy is the documentation: catch :class:`DisquetteError` for all of them, a tier
for a group, or a class for one condition. Each error carries the fields that explain it.

- :class:`InvalidInput` (also ``ValueError``): the call itself is wrong (an option, a name,
  an id, a URL, a body, the app to load); fix the call. The CLI exits 2.
- :class:`Refused`: a valid request declined as things stand (a full or paused queue,
  replicas missing, something the store cannot do, a closed client).
- :class:`JobError`: about one job (not found, in another state, its lease lost, failed
  for good, no handler, over its time).
- :class:`StoreError`: the store failed (unreachable, refusing the URL, any other database
  error). The CLI exits 3 for :class:`StoreUnavailable`.
- :class:`Timeout`, :class:`WorkerError` (misuse of a worker), :class:`CannotListen`.
"""

from __future__ import annotations

from collections.abc import Sequence


class DisquetteError(Exception):
    """Base class of every error raised by disquette."""


class InvalidInput(DisquetteError, ValueError):
    """The tier of errors in the call itself: an option, a name, an id, a URL, a body."""


class Refused(DisquetteError):
    """The tier of valid requests declined as things stand (full, paused, unsupported)."""


class JobError(DisquetteError):
    """The tier of errors about one job: not found, another state, lost lease, failed."""


class InvalidOption(InvalidInput):
    """An option has a value outside its allowed range (negative TTL, absurd delay...)."""

    def __init__(self, option: str, value: object, reason: str) -> None:
        self.option = option
        self.value = value
        self.reason = reason
        super().__init__(f"invalid option {option}={value!r}: {reason}")


class InvalidQueueName(InvalidInput):
    """A queue name is empty, too long, or contains characters a store cannot keep."""

    def __init__(self, queue: object, reason: str) -> None:
        self.queue = queue
        self.reason = reason
        super().__init__(f"invalid queue name {queue!r}: {reason}")


class InvalidJobId(InvalidInput):
    """A job id does not have the 40-byte ``D-xxxxxxxx-...-xxxx`` shape."""

    def __init__(self, job_id: object) -> None:
        self.job_id = job_id
        super().__init__(f"invalid job id {job_id!r}")


class InvalidSchedule(InvalidInput):
    """A periodic job's schedule is neither a 5-field cron expression (or an ``@hourly``
    style alias) nor a positive number of seconds, or its ``catch_up`` is not a policy."""

    def __init__(self, schedule: object, reason: str) -> None:
        self.schedule = schedule
        self.reason = reason
        super().__init__(f"invalid schedule {schedule!r}: {reason}")


class UnknownTimeZone(InvalidInput):
    """A periodic job's time zone is not an IANA name this system knows (``Europe/Oslo``)."""

    def __init__(self, tz: object) -> None:
        self.tz = tz
        super().__init__(f"unknown time zone {tz!r} (an IANA name such as 'Europe/Oslo')")


class InvalidURL(InvalidInput):
    """A store URL has an unknown scheme or a malformed location."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"invalid store URL {url!r}: {reason}")


class BodyNotSerializable(InvalidInput, TypeError):
    """A job body or result is neither bytes, str, nor JSON-serializable."""

    def __init__(self, value_type: type, reason: str) -> None:
        self.value_type = value_type
        self.reason = reason
        super().__init__(f"cannot serialize a {value_type.__name__}: {reason}")


class BodyTooLarge(InvalidInput):
    """An encoded body or result is larger than the client's ``max_body_bytes``."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"body of {size} bytes exceeds the limit of {limit} bytes")


class ProgressTooLarge(InvalidInput):
    """A job's encoded progress is larger than the limit (a number or a small object)."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"progress of {size} bytes exceeds the limit of {limit} bytes")


class JobNotFound(JobError, KeyError):
    """No job has this id (never added, deleted, expired, or pruned after completion)."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(job_id)

    def __str__(self) -> str:
        return f"no job with id {self.job_id!r}"


class ScheduleNotFound(JobError, KeyError):
    """No schedule has this name in the store (no scheduler of its app registered it)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(name)

    def __str__(self) -> str:
        return f"no schedule named {self.name!r} in the store"


class InvalidState(JobError):
    """The job exists but is not in a state that allows the operation."""

    def __init__(self, job_id: str, state: str, operation: str) -> None:
        self.job_id = job_id
        self.state = state
        self.operation = operation
        super().__init__(f"cannot {operation} job {job_id}: it is {state}")


class UniqueKeyTaken(InvalidState):
    """A failed job cannot be retried: another job of its queue took its unique key since
    (``failed`` was not among its ``unique_states``)."""

    def __init__(self, job_id: str, holder: str | None = None) -> None:
        self.holder = holder
        other = "another job" if holder is None else f"job {holder}"
        super().__init__(job_id, f"failed, and {other} holds its unique key", "retry")


class WorkingTooLate(InvalidState):
    """``working`` was refused: half of the job's TTL has elapsed (Disque's ``TOOLATE``),
    so its next delivery can no longer be postponed."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id, "active", "working (half of its TTL elapsed)")


class LeaseLost(JobError):
    """A newer delivery of the job started: this one's ``ack``, ``nack``, ``fail`` or
    ``working`` was refused, and the job was left to the delivery that holds it now.

    A delivery is the job's ``attempts`` count when it was claimed (only a claim increments
    it). Once its lease runs out (or its process is declared dead) the job is delivered
    again, and a late call from the older delivery would take the job from the newer one.
    Calls made with a bare id instead of the :class:`~disquette.Job` act by id (Disque's
    semantics). A batch call (``ack_many``, ``nack_many``) applies to its other jobs first,
    then raises one error whose :attr:`lost` lists every job of the batch that lost its
    lease.
    """

    def __init__(
        self, job_id: str, operation: str, attempt: int, current_attempt: int, state: str
    ) -> None:
        self.job_id = job_id
        #: What was refused: ``ack``, ``nack``, ``fail`` or ``working``.
        self.operation = operation
        #: The caller's delivery: the job's ``attempts`` when it was claimed.
        self.attempt = attempt
        #: The job's ``attempts`` now: the delivery that holds it (or last held it).
        self.current_attempt = current_attempt
        #: The job's state now.
        self.state = state
        #: Every job of the call that lost its lease, this one first.
        self.lost: tuple[LeaseLost, ...] = (self,)
        #: How many of the call's jobs the operation was applied to (a batch's others).
        self.applied = 0
        super().__init__(job_id, operation, attempt, current_attempt, state)

    @classmethod
    def of_batch(cls, lost: Sequence[LeaseLost], applied: int) -> LeaseLost:
        """The error a batch call raises: its first lost job, listing all of them."""
        first = lost[0]
        first.lost = tuple(lost)
        first.applied = applied
        return first

    def __str__(self) -> str:
        text = (
            f"{self.operation} of job {self.job_id} refused: its delivery {self.attempt} "
            f"lost the lease to delivery {self.current_attempt} (now {self.state})"
        )
        if len(self.lost) > 1:
            text += f"; {len(self.lost) - 1} more job(s) of the batch lost theirs"
        return text


class QueueFull(Refused):
    """``add`` was refused because the queue already holds ``max_len`` queued jobs."""

    def __init__(self, queue: str, max_len: int) -> None:
        self.queue = queue
        self.max_len = max_len
        super().__init__(f"queue {queue!r} holds {max_len} or more jobs (max_len={max_len})")


class QueuePaused(Refused):
    """``add`` was refused because the queue is paused for input (Disque ``PAUSE q in``)."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        super().__init__(f"queue {queue!r} is paused for input: adds are refused")


class NotReplicated(Refused):
    """The store cannot keep ``replicate`` copies of the job before ``add`` returns."""

    def __init__(self, wanted: int, available: int, store: str) -> None:
        self.wanted = wanted
        self.available = available
        self.store = store
        super().__init__(
            f"replicate={wanted} asked, but the {store} store can guarantee {available} copies"
        )


class Timeout(DisquetteError, TimeoutError):
    """A blocking call (``get``, ``wait``) reached its timeout."""

    def __init__(self, operation: str, seconds: float) -> None:
        self.operation = operation
        self.seconds = seconds
        super().__init__(f"{operation} timed out after {seconds:g}s")


class JobFailed(JobError):
    """``wait`` saw the job end in the ``failed`` state (its attempts are exhausted)."""

    def __init__(self, job_id: str, error_count: int, last_error: str | None) -> None:
        self.job_id = job_id
        self.error_count = error_count
        self.last_error = last_error
        super().__init__(f"job {job_id} failed after {error_count} errors: {last_error}")


class JobCancelled(JobError):
    """The job was cancelled: ``wait`` saw it end ``cancelled``, or (``requested``) its
    lease holder's ``working`` or ``progress`` was refused because someone asked to cancel
    it; the holder then stops and ends it cancelled."""

    def __init__(self, job_id: str, *, requested: bool = False) -> None:
        self.job_id = job_id
        self.requested = requested
        what = "has a cancel request: stop and end it cancelled" if requested else "was cancelled"
        super().__init__(f"job {job_id} {what}")


class StoreError(DisquetteError):
    """The store failed a call: the tier of store errors, and, raised as itself, a
    database error disquette has no specific class for (a constraint, an unexpected error
    reply); ``store`` names the store, the message the cause."""

    store: str | None = None

    def __init__(self, store: str, message: str) -> None:
        self.store = store
        super().__init__(f"{store}: {message}")


class StoreUnavailable(StoreError, ConnectionError):
    """The store could not be reached or went away mid-call; the call may be retried."""

    retryable = True

    def __init__(self, message: str) -> None:
        # The message names the store already; StoreError's (store, message) pair is for
        # the errors that wrap a driver's.
        DisquetteError.__init__(self, message)


class StoreRefused(StoreUnavailable):
    """The store's server answered but refuses this URL for good (failed authentication, a
    missing database, role or directory): retrying the same URL cannot help."""

    retryable = False


class ServerError(StoreError):
    """A Disque-protocol server answered an error reply (``-PREFIX text``) that has no
    specific class; ``reply`` is its text."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        super().__init__("Disque", reply)


class NotSupported(Refused, NotImplementedError):
    """The store cannot do this by its nature (a remote Disque server registers itself)."""

    def __init__(self, store: str, operation: str, reason: str) -> None:
        self.store = store
        self.operation = operation
        self.reason = reason
        super().__init__(f"the {store} store cannot {operation}: {reason}")


class ClientClosed(Refused):
    """The client (or its store) was closed and cannot be used any more."""


class AppImportError(InvalidInput):
    """The APP given to ``disquette worker`` cannot be imported or is not an app, a
    registry or a mapping; ``cause`` is the exception raised while importing, if any."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        self.cause = cause
        super().__init__(message)


class UnsafeBind(InvalidInput):
    """The server was asked to listen beyond loopback without a password, and without
    ``unprotected``: anyone on the network could take and delete jobs."""


class CannotListen(DisquetteError, OSError):
    """The Disque-protocol server cannot listen on an address (in use, not permitted, not
    an address of this machine)."""

    def __init__(self, address: str, reason: str) -> None:
        self.address = address
        self.reason = reason
        super().__init__(f"cannot listen on {address}: {reason}")


# -- the worker runtime --------------------------------------------------------------


class WorkerError(DisquetteError):
    """Misuse of a worker, a pool or a supervisor."""


class AlreadyRunning(WorkerError):
    """``start``/``run`` was called on a worker that is already running."""

    def __init__(self, what: str = "worker") -> None:
        super().__init__(f"the {what} is already running")


class NotRunning(WorkerError):
    """``stop`` was called on a worker that is not running."""

    def __init__(self, what: str = "worker") -> None:
        super().__init__(f"the {what} is not running")


class NoHandlers(WorkerError):
    """A worker was given no handler at all."""

    def __init__(self) -> None:
        super().__init__("a worker needs at least one handler")


class UnknownJobType(JobError, LookupError):
    """A job's type has no handler in this worker (recorded as the job's error)."""

    def __init__(self, job_type: str | None, known: Sequence[str]) -> None:
        self.job_type = job_type
        self.known = list(known)
        what = "no type" if job_type is None else f"type {job_type!r}"
        super().__init__(f"no handler for {what} (this worker knows: {', '.join(known)})")


class HandlerTimeout(JobError, TimeoutError):
    """A handler ran longer than its exec timeout (recorded as the job's error)."""

    def __init__(self, job_type: str | None, seconds: float) -> None:
        self.job_type = job_type
        self.seconds = seconds
        super().__init__(f"handler {job_type!r} ran longer than its {seconds:g}s exec timeout")


class EagerError(JobError):
    """Eager mode could not run a job (its queue is paused, or an async handler was
    enqueued with ``add`` from inside a running event loop)."""
