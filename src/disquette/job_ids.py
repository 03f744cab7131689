"""Job ids in Disque's format (``D-<node>-<24 base64>-<ttl minutes>``): making them fast
and time-ordered, and checking their shape. :mod:`disquette.job` re-exports the public
names."""

from __future__ import annotations

import binascii
import functools
import os
import random
import time
from collections.abc import Callable
from typing import Final

from .errors import InvalidJobId

_NODE_PREFIX: Final = os.urandom(4).hex()


class _IdSource:
    """Unique, time-ordered id bits: consecutive ids share a prefix, so stores that index
    ids insert next to the last one instead of at a random page (less write amplification).

    An id's 18 bytes are milliseconds (6), a wrapping counter (2) and random bits (10).
    Uniqueness comes from the 80 random bits and the counter, per millisecond and per
    process, from a generator seeded by ``os.urandom`` and reseeded in every forked child.
    The counter and random bytes are made :data:`BATCH` ids at a time, already in base64
    (:meth:`tail`); a forked child drops what its parent made.
    """

    #: Ids whose counter and random bits are made together.
    BATCH: Final = 256

    def __init__(self) -> None:
        self._random = random.Random()
        #: Base64 tails made and not used yet, the next one last.
        self.tails: list[str] = []
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        """A fresh generator and counter, and no tail made before (a forked child must
        not hand out its parent's)."""
        self._random.seed(os.urandom(16))
        self._counter = self._random.getrandbits(16)
        self.tails.clear()

    def tail(self) -> str:
        """The last 16 characters of an id's 24: the base64 of its counter and random
        bytes (the 6 bytes before them, the milliseconds, encode to 8 on their own)."""
        tails = self.tails
        try:
            return tails.pop()
        except IndexError:  # none left: make the next batch
            pass
        start = (self._counter + 1) & 0xFFFF
        count = min(self.BATCH, 0x10000 - start)  # the counter wraps between two batches
        self._counter = start + count - 1
        # Each id's 12 bytes: its counter (big-endian), then 10 random bytes.
        block = bytearray(12 * count)
        block[0::12] = _COUNTERS[2 * start : 2 * (start + count) : 2]
        block[1::12] = _COUNTERS[2 * start + 1 : 2 * (start + count) : 2]
        randoms = self._random.randbytes(10 * count)
        for offset in range(10):
            block[2 + offset :: 12] = randoms[offset * count : (offset + 1) * count]
        text = binascii.b2a_base64(block, newline=False).decode()
        tails[:] = [text[at : at + 16] for at in range(16 * (count - 1), 0, -16)]
        return text[:16]


#: Every 16-bit counter, big-endian, one after the other.
_COUNTERS: Final = b"".join(counter.to_bytes(2, "big") for counter in range(0x10000))
_IDS: Final = _IdSource()


@functools.lru_cache(maxsize=1024)  # one per add: a process uses few settings
def job_id_factory(
    ttl: float | None, retry_after: float, node_prefix: str = _NODE_PREFIX
) -> Callable[[], str]:
    """Return a function making 40-byte Disque-format ids for jobs with these settings:
    ``D-<node>-<24 base64>-<ttl minutes, odd if leased>``.

    The TTL nibble follows Disque: minutes capped at 65535, odd when the job can be
    redelivered (``retry_after > 0``), even when it is at-most-once.
    """
    # Minutes capped at 0xFFFF: a job without a TTL lives for ever (longer than any cap).
    minutes = 0xFFFF if ttl is None else min(int(ttl // 60), 0xFFFF)
    minutes = (minutes | 1) if retry_after > 0 else (minutes & ~1)
    prefix, suffix = f"D-{node_prefix}-", f"-{minutes:04x}"
    # The tails' list is cleared in place by a fork, never replaced: its pop stays good.
    pop, refill, clock, encode = _IDS.tails.pop, _IDS.tail, time.time_ns, binascii.b2a_base64
    # The id up to its counter (the prefix and the base64 of the milliseconds: 6 bytes,
    # 8 characters), made once per millisecond, with its millisecond: one tuple, which
    # threads swap whole.
    last = (prefix, -1)

    def new_id() -> str:
        nonlocal last
        millis = clock() // 1_000_000
        head, at = last
        if millis != at:
            stamp = (millis & 0xFFFF_FFFF_FFFF).to_bytes(6, "big")
            head = prefix + encode(stamp, newline=False).decode()
            last = (head, millis)
        try:
            tail = pop()
        except IndexError:
            tail = refill()
        return f"{head}{tail}{suffix}"

    return new_id


def new_job_id(ttl: float | None, retry_after: float) -> str:
    """Make one Disque-format job id (see :func:`job_id_factory`)."""
    return job_id_factory(ttl, retry_after)()


def check_job_id(job_id: object) -> str:
    """Return ``job_id`` if it has Disque's shape, else raise :class:`InvalidJobId`."""
    if (
        not isinstance(job_id, str)
        or len(job_id) != 40
        or job_id[0:2] != "D-"
        or job_id[10] != "-"
        or job_id[35] != "-"
    ):
        raise InvalidJobId(job_id)
    return job_id
