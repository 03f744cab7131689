"""Per-queue flow limits kept in the store and enforced by its claim: at most
``concurrency`` active jobs at once, and at most ``count`` claims per ``per_seconds``
(a token bucket, full at first: ``count`` at once, then ``count / per_seconds`` a second).

The arithmetic lives here once; each store keeps the numbers (limits row, bucket level and
when it was last filled) and does the reading, counting and writing atomically with its
claim (under the memory store's lock, in SQLite's claim transaction).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Final

from ..errors import InvalidOption

#: Highest concurrency or rate count a limit may have.
MAX_LIMIT: Final = 1_000_000


@dataclasses.dataclass(frozen=True, slots=True)
class QueueLimits:
    """A queue's limits: ``concurrency`` active jobs at most (leases that ran out do not
    count), and ``rate`` = ``(count, per_seconds)`` claims at most; ``None`` is no limit."""

    concurrency: int | None = None
    rate: tuple[int, float] | None = None

    def __post_init__(self) -> None:
        if self.concurrency is not None:
            check_limit("concurrency", self.concurrency)
        if self.rate is not None:
            if not isinstance(self.rate, tuple | list) or len(self.rate) != 2:
                raise InvalidOption("rate", self.rate, "a (count, per_seconds) pair")
            count, per = self.rate
            check_limit("rate count", count)
            if isinstance(per, bool) or not isinstance(per, int | float):
                raise InvalidOption("rate per_seconds", per, "seconds are an int or a float")
            if not math.isfinite(per) or not 0.001 <= per <= 86_400 * 365:
                raise InvalidOption("rate per_seconds", per, "from 0.001 to a year")
            object.__setattr__(self, "rate", (count, float(per)))

    @property
    def empty(self) -> bool:
        """No limit at all (setting it clears the queue's limits)."""
        return self.concurrency is None and self.rate is None


def check_limit(name: str, value: object) -> int:
    """``value`` as an int from 1 to :data:`MAX_LIMIT`, else :class:`InvalidOption`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise InvalidOption(name, value, f"an int from 1 to {MAX_LIMIT}")
    return value


def refill(rate: tuple[int, float], tokens: float, filled_at: float, now: float) -> float:
    """The bucket's level at ``now``: what it held, plus ``count / per`` a second since
    ``filled_at``, capped at ``count`` (a clock going back adds nothing)."""
    count, per = rate
    return min(float(count), tokens + max(0.0, now - filled_at) * count / per)


def allowance(limits: QueueLimits, active: int, tokens: float, wanted: int) -> int:
    """How many of ``wanted`` jobs a claim may take now from a queue with ``active`` jobs
    leased and ``tokens`` in its bucket (refilled: see :func:`refill`)."""
    allowed = wanted
    if limits.concurrency is not None:
        allowed = min(allowed, limits.concurrency - active)
    if limits.rate is not None:
        # A hair of slack so that 0.9999999 tokens from float steps counts as one.
        allowed = min(allowed, int(tokens + 1e-9))
    return max(0, allowed)
