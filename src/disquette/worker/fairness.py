"""Fair queue order for a worker serving several queues.

``get(q1, q2)`` follows Disque: the leftmost queue with a job wins, so a busy first queue
starves the others. A worker may instead pick, claim after claim, which queue leads: by
weight (smooth weighted round-robin, as nginx balances upstreams) or in turn. The other
queues follow in their given order, so a claim never comes back empty while any queue
has a job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final, Literal, TypeAlias

from ..errors import InvalidOption
from ..job import check_queue_names

QueueOrder: TypeAlias = Literal["strict", "weighted", "round_robin"]
"""How a worker orders its queues on each claim (see :class:`FairOrder`)."""

QUEUE_ORDERS: Final[tuple[QueueOrder, ...]] = ("strict", "weighted", "round_robin")
MAX_WEIGHT: Final = 1000

QueueSpec: TypeAlias = Sequence[str] | Mapping[str, int]
"""Queues as names (leftmost first, weight 1 each) or as ``{name: weight}``."""


def check_weight(queue: str, weight: object) -> int:
    """``weight`` as an int from 1 to :data:`MAX_WEIGHT`, else :class:`InvalidOption`."""
    if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= MAX_WEIGHT:
        raise InvalidOption(f"weight of {queue!r}", weight, f"an int from 1 to {MAX_WEIGHT}")
    return weight


def parse_queue_spec(text: str) -> dict[str, int]:
    """``"mail:3,images:1"`` as ``{"mail": 3, "images": 1}``; a name without ``:N``
    weighs 1. Only a suffix of digits is a weight, so ``"a:b"`` is one queue name."""
    weights: dict[str, int] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, suffix = item.rpartition(":")
        if sep and name and suffix.strip().isdigit():
            weights[name.strip()] = check_weight(name, int(suffix))
        else:
            weights[item] = 1
    check_queue_names(weights)
    return weights


def queue_weights(queues: QueueSpec) -> dict[str, int]:
    """Checked ``{name: weight}`` in the given order from either form of :data:`QueueSpec`."""
    if isinstance(queues, Mapping):
        names = check_queue_names(queues)
        return {name: check_weight(name, queues[name]) for name in names}
    return dict.fromkeys(check_queue_names(queues), 1)


def check_order(order: object) -> QueueOrder:
    """``order`` if it is one of :data:`QUEUE_ORDERS` (``-`` read as ``_``)."""
    if isinstance(order, str):
        order = order.replace("-", "_")
        for known in QUEUE_ORDERS:
            if order == known:
                return known
    raise InvalidOption("order", order, f"one of {', '.join(QUEUE_ORDERS)}")


class FairOrder:
    """The queue order of each claim.

    ``strict``: always the given order (Disque's; the first queue may starve the others).
    ``weighted``: the leading queue is picked by smooth weighted round-robin, so over any
    ``sum(weights)`` claims each queue leads ``weight`` of them, evenly spread.
    ``round_robin``: the same with every weight 1. The rest follow in the given order.
    """

    __slots__ = ("_current", "_names", "_total", "_weights", "order")

    def __init__(self, weights: Mapping[str, int], order: QueueOrder) -> None:
        self.order = order
        self._names = list(weights)
        self._weights = [1 if order == "round_robin" else weights[n] for n in self._names]
        self._total = sum(self._weights)
        self._current = [0] * len(self._names)

    def next(self) -> list[str]:
        """The queues for the next claim, the leading one first."""
        names = self._names
        if self.order == "strict" or len(names) == 1:
            return names
        current = self._current
        lead = 0
        for index, weight in enumerate(self._weights):
            current[index] += weight
            if current[index] > current[lead]:
                lead = index
        current[lead] -= self._total
        return [names[lead], *names[:lead], *names[lead + 1 :]]
