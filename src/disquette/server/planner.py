"""GETJOB's order for a batch of claims: which queue each job comes from.

GETJOB takes its jobs in passes over its queues, left to right, one job per listed queue
per pass. The server claims for many GETJOBs at once (see :mod:`.batching`), yet each must
get the jobs it would have got had they run one after the other: :func:`plan_claims` says
how many jobs to claim from each queue, :func:`deal` hands what was claimed out in that
order, and :func:`claim_in_order` drives them over the store.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

from ..stores.store_async import AsyncStore
from ..stores.types import Delivery

#: Jobs asked per run of claims at most (and per JSCAN/QPEEK call: ids fetched at most).
MAX_PAGE: Final = 10_000
#: A claim request: its queues and its COUNT first.
C = TypeVar("C", bound=tuple[tuple[str, ...], int, Any, Any])


def runs(requests: Sequence[C]) -> list[tuple[tuple[str, ...], list[C]]]:
    """Consecutive requests on the same queues, together (in request order, at most
    :data:`MAX_PAGE` jobs asked per run)."""
    runs: list[tuple[tuple[str, ...], list[C]]] = []
    asked = 0
    for request in requests:
        queues, count = request[0], request[1]
        if runs and runs[-1][0] == queues and asked + count <= MAX_PAGE:
            runs[-1][1].append(request)
            asked += count
        else:
            runs.append((queues, [request]))
            asked = count
    return runs


def passes(queues: Sequence[str], available: dict[str, int], limit: int) -> list[str]:
    """The queue each job comes from, in GETJOB's order: passes over ``queues`` left to
    right, one job per listed queue per pass while it has ``available`` jobs left."""
    left = dict(available)
    order: list[str] = []
    while len(order) < limit:
        before = len(order)
        for queue in queues:
            if len(order) < limit and left[queue] > 0:
                left[queue] -= 1
                order.append(queue)
        if len(order) == before:
            break
    return order


def plan_claims(
    queues: Sequence[str], ready: dict[str, int], wanted: Sequence[int]
) -> Counter[str]:
    """How many jobs to claim from each queue for requests on ``queues`` wanting ``wanted``
    jobs each, in turn, when each queue has ``ready`` jobs."""
    left = dict(ready)
    asked: Counter[str] = Counter()
    for want in wanted:
        plan = passes(queues, left, want)
        for queue in plan:
            left[queue] -= 1
        asked.update(plan)
    return asked


def deal(queues: Sequence[str], claimed: dict[str, int], wanted: Sequence[int]) -> list[list[str]]:
    """The queue of each job each request gets, in order, when ``claimed`` jobs were claimed
    from each queue: as the requests would have taken them, in turn."""
    left = dict(claimed)
    shares: list[list[str]] = []
    for want in wanted:
        share = passes(queues, left, want)
        for queue in share:
            left[queue] -= 1
        shares.append(share)
    return shares


def split(jobs: list[Delivery], counts: Sequence[int]) -> list[list[Delivery]]:
    """Jobs claimed from one queue for requests asking ``counts`` jobs each, in turn."""
    shares: list[list[Delivery]] = []
    at = 0
    for count in counts:
        shares.append(jobs[at : at + count])
        at += count
    return shares


async def claim_in_order(
    store: AsyncStore,
    queues: Sequence[str],
    counts: Sequence[int],
    give_back: Callable[[list[Delivery]], Awaitable[None]],
) -> list[list[Delivery]]:
    """Lease jobs for GETJOBs on ``queues`` asking ``counts`` jobs each, as if they ran
    one after the other, each in Disque's order: the queues scanned left to right,
    taking at most one job per queue per pass (a queue listed twice serves twice per
    pass), until its COUNT or no queue has more. Returns each request's jobs (what
    GETJOB's reply reads of them: ``claim_deliveries``).

    The store's claim drains its queues in turn, so with several queues the passes are
    planned from the queue lengths, then each queue is claimed once; a queue that gives
    fewer than planned (paused, or emptied by another client) counts as empty. Jobs leased
    for nobody (on a failure) go to ``give_back``.
    """
    if len(queues) == 1:
        return split(await store.claim_deliveries(queues, sum(counts)), counts)
    shares: list[list[Delivery]] = [[] for _ in counts]
    wanted = list(counts)
    distinct = list(dict.fromkeys(queues))
    exhausted: set[str] = set()
    claimed: dict[str, list[Delivery]] = {}
    try:
        while any(wanted) and len(exhausted) < len(distinct):
            ready = {q: 0 if q in exhausted else await store.qlen(q) for q in distinct}
            asked = plan_claims(queues, ready, wanted)
            if not asked:
                break
            claimed = {}
            for queue, share in asked.items():
                claimed[queue] = await store.claim_deliveries([queue], share)
                if len(claimed[queue]) < share:
                    exhausted.add(queue)
            # Every job claimed is dealt: no more was claimed than the requests want.
            counts_claimed = {queue: len(claimed.get(queue, ())) for queue in distinct}
            dealt: Counter[str] = Counter()
            for index, share_queues in enumerate(deal(queues, counts_claimed, wanted)):
                for queue in share_queues:
                    shares[index].append(claimed[queue][dealt[queue]])
                    dealt[queue] += 1
                wanted[index] -= len(share_queues)
            claimed = {}
    except BaseException:
        # Leased, and nobody will get them: give them back before failing.
        await give_back(
            [job for share in shares for job in share]
            + [job for jobs in claimed.values() for job in jobs]
        )
        raise
    return shares
