"""What stores state they can do (``Capabilities``), and that a store lacking a capability
still refuses the call with a typed error."""

from __future__ import annotations

from pathlib import Path

import pytest

from disquette import ManualClock, connect, connect_async
from disquette.errors import InvalidOption, NotReplicated, NotSupported
from disquette.stores.disque.store import DisqueStore
from disquette.stores.memory import MemoryStore
from disquette.stores.postgres.store import PostgresStore
from disquette.stores.redis.store import RedisStore
from disquette.stores.sqlite.store import SqliteStore
from disquette.stores.store import Store
from disquette.stores.types import Capabilities


def test_each_capability_has_a_reason_and_unknown_names_are_refused() -> None:
    for name in Capabilities.names():
        assert Capabilities.reason(name)
    assert Capabilities().lacking(["results", "transactions"]) == ["transactions"]
    with pytest.raises(KeyError):
        Capabilities().lacking(["result"])  # a typo is not a lacking capability
    with pytest.raises(KeyError):
        Capabilities.reason("result")


def test_only_postgresql_has_transactions_and_migrations() -> None:
    kinds: list[type[Store]] = [MemoryStore, SqliteStore, PostgresStore, RedisStore, DisqueStore]
    stated = {kind.__name__: kind.capabilities for kind in kinds}
    assert [name for name, caps in stated.items() if caps.transactions] == ["PostgresStore"]
    assert [name for name, caps in stated.items() if caps.migrations] == ["PostgresStore"]
    assert [name for name, caps in stated.items() if not caps.node_registry] == ["DisqueStore"]
    # A Disque server: every difference of its module documentation, only replicas kept.
    disque = DisqueStore.capabilities
    assert [name for name in Capabilities.names() if getattr(disque, name)] == ["replication"]


@pytest.mark.parametrize("scheme", ["memory", "sqlite"])
def test_a_store_without_the_powers_refuses_them(scheme: str, tmp_path: Path) -> None:
    url = "memory://" if scheme == "memory" else f"sqlite:///{tmp_path / 'jobs.db'}"
    with connect(url, clock=ManualClock()) as jobs:
        caps = jobs.store.capabilities
        assert (caps.transactions, caps.replication, caps.migrations) == (False, False, False)
        with pytest.raises(NotSupported):
            jobs.store.migrate()
        with pytest.raises(InvalidOption):
            jobs.store.add([], None, connection=object())
        with pytest.raises(NotReplicated):
            jobs.replicate(1).add("x", "q")


async def test_the_asyncio_adapter_states_its_inner_stores_capabilities(tmp_path: Path) -> None:
    async with connect_async(f"sqlite:///{tmp_path / 'jobs.db'}") as jobs:
        assert jobs.store.capabilities is SqliteStore.capabilities
        with pytest.raises(NotSupported):
            await jobs.store.migrate()
