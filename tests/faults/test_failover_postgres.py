"""PostgreSQL failover: a primary with a synchronous streaming standby on another host;
producers (with and without ``replicate=1``) and workers on their own hosts reach them
through one multi-host URL (``host=a,b&target_session_attrs=read-write``). The primary is
killed, the standby promoted, and everyone carries on against it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from .hosts import Network, wait_for
from .services import PG_PORT, PostgresHost, look
from .traffic import ADDS_AFTER, ADDS_BEFORE, Traffic

pytestmark = pytest.mark.slow


def _sync_standbys(primary: PostgresHost) -> str:
    return primary.sql(
        "SELECT string_agg(application_name || ':' || sync_state, ',') FROM pg_stat_replication"
    ).strip()


@pytest.mark.timeout(300)
def test_jobs_added_with_replicate_survive_the_primary_and_everyone_follows_the_standby(
    network: Network, tmp_path: Path, record: Callable[..., None]
) -> None:
    hosts = {name: network.host(name) for name in ("pg1", "pg2", "producers", "w1", "w2")}
    primary = PostgresHost(hosts["pg1"])
    standby = PostgresHost(hosts["pg2"])
    replacement = PostgresHost(hosts["pg1"])
    try:
        primary.initdb({"synchronous_standby_names": "'standby1'"})
        primary.start()
        standby.standby_of(primary, "standby1")
        # The standby carries the primary's settings: once promoted, it has no standby.
        standby.settings({"synchronous_standby_names": "''"})
        standby.start()
        wait_for(lambda: _sync_standbys(primary) == "standby1:sync", 60, "a sync standby")
        addresses = f"{primary.host.address},{standby.host.address}"
        schema = f"f{uuid.uuid4().hex[:6]}"
        url = (
            f"postgresql://postgres@/postgres?host={addresses}&port={PG_PORT},{PG_PORT}"
            f"&target_session_attrs=read-write&connect_timeout=2&retry_for=90&schema={schema}"
        )
        # Asynchronous commit: the usual way to make plain adds fast, and to risk them.
        unsafe = url + "&options=-csynchronous_commit%3Dlocal"
        look(hosts["pg1"], url)  # creates the schema once, before everyone starts
        traffic = Traffic(tmp_path, url, unsafe, hosts["producers"], [hosts["w1"], hosts["w2"]])
        traffic.start()
        traffic.wait_adds(ADDS_BEFORE, "adds before the failover")
        primary.kill()
        killed_at = time.time()
        standby.promote()
        # A new standby (on the dead primary's host) so that replicate=1 can be met again.
        replacement.standby_of(standby, "standby2")
        replacement.settings({"synchronous_standby_names": "''"})
        replacement.start()
        standby.sql("ALTER SYSTEM SET synchronous_standby_names = 'standby2'")
        standby.sql("SELECT pg_reload_conf()")
        traffic.wait_adds(ADDS_AFTER, "adds after the failover")
        traffic.finish(
            hosts["pg2"],
            explain=lambda: standby.sql(
                "SELECT id, state, attempts, lease_until - extract(epoch FROM now()) "
                f"FROM {schema}.jobs LIMIT 20"
            ),
        )
        rows = traffic.account(
            hosts["pg2"], killed_at, "PostgreSQL", "no replicate, async commit", record
        )
        count, done, lost, _ = rows["replicated"]
        assert lost == 0, f"{lost} jobs added with replicate=1 were lost"
        assert done == count
    finally:
        for cluster in (replacement, standby, primary):
            cluster.destroy()
