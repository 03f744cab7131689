"""The claim planner: GETJOBs claimed together get what they would have got one after the
other (Disque's order: passes over the queues left to right, one job per listed queue per
pass)."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from disquette.client_async import connect_async
from disquette.server.planner import claim_in_order, deal, plan_claims
from disquette.stores.types import Delivery

NAMES = ["a", "b", "c"]
#: The queues of a run of GETJOBs (a name may be listed twice), and each one's COUNT.
requests = st.tuples(
    st.lists(st.sampled_from(NAMES), min_size=1, max_size=4),
    st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=5),
)
lengths = st.fixed_dictionaries({name: st.integers(min_value=0, max_value=8) for name in NAMES})


def one_after_the_other(
    contents: dict[str, list[str]], queues: list[str], counts: list[int]
) -> list[list[str]]:
    """What each GETJOB gets when they run in turn, each taking Disque's passes."""
    left = {queue: list(items) for queue, items in contents.items()}
    shares = []
    for count in counts:
        got: list[str] = []
        while len(got) < count:
            before = len(got)
            for queue in queues:
                if len(got) < count and left[queue]:
                    got.append(left[queue].pop(0))
            if len(got) == before:
                break
        shares.append(got)
    return shares


def dealt(contents: dict[str, list[str]], shares: list[list[str]]) -> list[list[str]]:
    """The items the dealt queues stand for, each queue's taken in its order."""
    taken = dict.fromkeys(contents, 0)
    out = []
    for share in shares:
        items = []
        for queue in share:
            items.append(contents[queue][taken[queue]])
            taken[queue] += 1
        out.append(items)
    return out


def queue_contents(sizes: dict[str, int]) -> dict[str, list[str]]:
    return {name: [f"{name}{i}" for i in range(size)] for name, size in sizes.items()}


@given(requests, lengths)
def test_the_planned_deal_is_one_after_the_other(
    request: tuple[list[str], list[int]], sizes: dict[str, int]
) -> None:
    queues, counts = request
    contents = queue_contents(sizes)
    asked = plan_claims(queues, sizes, counts)
    assert all(asked[queue] <= sizes[queue] for queue in asked)
    claimed = {name: asked.get(name, 0) for name in NAMES}
    shares = deal(queues, claimed, counts)
    assert dealt(contents, shares) == one_after_the_other(contents, queues, counts)
    # Every job claimed is dealt: none is leased for nobody.
    assert sum(map(len, shares)) == sum(claimed.values())


@given(requests, lengths, lengths)
def test_a_queue_that_gives_fewer_counts_as_shorter(
    request: tuple[list[str], list[int]], sizes: dict[str, int], short: dict[str, int]
) -> None:
    """Another client took some jobs between the plan and the claim: the deal is what the
    requests would have got from the queues as they were claimed."""
    queues, counts = request
    asked = plan_claims(queues, sizes, counts)
    claimed = {name: min(asked.get(name, 0), short[name]) for name in NAMES}
    contents = queue_contents(claimed)
    shares = deal(queues, claimed, counts)
    assert dealt(contents, shares) == one_after_the_other(contents, queues, counts)


@settings(max_examples=30, deadline=None)
@given(requests, lengths)
def test_claim_in_order_over_a_store(
    request: tuple[list[str], list[int]], sizes: dict[str, int]
) -> None:
    """The driver over the memory store gives each GETJOB the jobs of the sequential run."""
    queues, counts = request

    async def main() -> tuple[list[list[str]], list[list[str]]]:
        client = connect_async("memory://")
        try:
            contents = {
                name: [await client.add(b"x", name) for _ in range(size)]
                for name, size in sizes.items()
            }
            given_back: list[Delivery] = []

            async def give_back(jobs: list[Delivery]) -> None:
                given_back.extend(jobs)

            shares = await claim_in_order(client.store, queues, counts, give_back)
            assert not given_back
            got = [[job.id for job in share] for share in shares]
            return got, one_after_the_other(contents, queues, counts)
        finally:
            await client.close()

    got, expected = asyncio.run(main())
    assert got == expected
