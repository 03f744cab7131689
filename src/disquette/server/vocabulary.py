"""Disque's words that the server's modules share: its defaults, limits, states and
error replies (the reply of each refusal the store or the client raises)."""

from __future__ import annotations

from typing import Final

from ..errors import InvalidJobId, InvalidQueueName, NotReplicated, QueueFull, QueuePaused
from ..job import JobState
from . import protocol

DEFAULT_TTL: Final = 86400
MAX_RETRY_DEFAULT: Final = 300
#: Disque's default RETRY for the default TTL: a tenth of it, between 1 and 300 seconds.
DEFAULT_RETRY: Final = float(max(1, min(DEFAULT_TTL // 10, MAX_RETRY_DEFAULT)))
#: How long before its requeue time Disque wakes a job (SHOW's ``next-awake-within``).
WAKE_ADVANCE_MS: Final = 500
#: Ids per JSCAN/QPEEK call we fetch at most.
MAX_PAGE: Final = 10_000
BADID: Final = b"-BADID Invalid Job ID format.\r\n"
NOAUTH: Final = b"-NOAUTH Authentication required.\r\n"
#: Disque's job states, as our states map onto them (DONE jobs are "acked", and gone).
DISQUE_STATES: Final[dict[str, frozenset[JobState]]] = {
    "wait-repl": frozenset(),
    "active": frozenset({JobState.SCHEDULED, JobState.ACTIVE, JobState.FAILED}),
    "queued": frozenset({JobState.QUEUED}),
    "acked": frozenset({JobState.DONE}),
}


def refusal(exc: BaseException) -> bytes:
    """The Disque error reply for an error raised by the store or the client."""
    if isinstance(exc, QueuePaused):
        return b"-PAUSED Queue paused in input, try later\r\n"
    if isinstance(exc, QueueFull):
        return b"-MAXLEN Queue is already longer than the specified MAXLEN count\r\n"
    if isinstance(exc, NotReplicated):
        return b"-NOREPL Not enough reachable nodes for the requested replication level\r\n"
    if isinstance(exc, InvalidJobId):
        return BADID
    if isinstance(exc, InvalidQueueName):
        return protocol.error(f"ERR invalid queue name: {exc.reason}")
    return protocol.error(f"ERR {exc}")
