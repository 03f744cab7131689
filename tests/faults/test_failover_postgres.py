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
from typing import Any

import pytest

from .hosts import Host, Network, agent, stop, wait_for
from .services import PG_PORT, PostgresHost, acked, look, refused, runs

pytestmark = pytest.mark.slow

#: Adds observed before the primary dies, and again after the failover, per producer.
BATCHES_BEFORE = 300
BATCHES_AFTER = 300


def _sync_standbys(primary: PostgresHost) -> str:
    return primary.sql("SELECT string_agg(application_name || ':' || sync_state, ',') "
                       "FROM pg_stat_replication").strip()  # fmt: skip


def _producer(host: Host, url: str, tmp: Path, name: str, *extra: str) -> Any:
    return host.popen(
        # retry_after 5 s: a claim whose reply died with the primary leaves its jobs leased
        # on the standby, to be delivered again once that lease runs out.
        agent("produce", url, "--count", str(10**9), "--batch", "5", "--retry-after", "5",
              "--stop-file",
              str(tmp / "stop"), "--acked", str(tmp / f"acked-{name}"),
              "--refused", str(tmp / f"refused-{name}"), *extra),
        log=tmp / f"producer-{name}.log",
    )  # fmt: skip


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
        workers = [
            hosts[name].popen(
                agent("worker", url, "--host", name, "--concurrency", "10",
                      "--runs", str(tmp_path / f"runs-{name}"),
                      "--stats", str(tmp_path / f"stats-{name}.json")),
                log=tmp_path / f"worker-{name}.log",
            )  # fmt: skip
            for name in ("w1", "w2")
        ]
        producers = [
            _producer(hosts["producers"], url, tmp_path, "replicated", "--replicate", "1"),
            _producer(hosts["producers"], unsafe, tmp_path, "plain"),
        ]
        replicated, plain = tmp_path / "acked-replicated", tmp_path / "acked-plain"
        wait_for(
            lambda: min(len(acked(replicated)), len(acked(plain))) >= BATCHES_BEFORE,
            120, "adds before the failover",
        )  # fmt: skip
        primary.kill()
        killed_at = time.time()
        standby.promote()
        # A new standby (on the dead primary's host) so that replicate=1 can be met again.
        replacement.standby_of(standby, "standby2")
        replacement.settings({"synchronous_standby_names": "''"})
        replacement.start()
        standby.sql("ALTER SYSTEM SET synchronous_standby_names = 'standby2'")
        standby.sql("SELECT pg_reload_conf()")
        before = {file: len(acked(file)) for file in (replicated, plain)}
        wait_for(
            lambda: all(len(acked(f)) >= n + BATCHES_AFTER for f, n in before.items()),
            120, "adds after the failover",
        )  # fmt: skip
        (tmp_path / "stop").touch()
        for process in producers:
            process.wait(60)
        wait_for(
            lambda: _pending(look(hosts["pg2"], url)["states"]) == 0, 120, "every job done",
            pause=1, explain=lambda: standby.sql(
                "SELECT id, state, attempts, lease_until - extract(epoch FROM now()) "
                f"FROM {schema}.jobs LIMIT 20"),
        )  # fmt: skip
        for process in workers:
            stop(process)
        ran = runs([tmp_path / "runs-w1", tmp_path / "runs-w2"])
        rows = {}
        for name, file in (("replicate=1", replicated), ("no replicate, async commit", plain)):
            adds = acked(file)
            states = look(hosts["pg2"], url, file)["jobs"]
            done = sum(1 for job in states.values() if job["state"] == "done")
            lost = sum(1 for job in states.values() if job["state"] == "JobNotFound")
            recovery = min(t for t in adds.values() if t > killed_at) - killed_at
            duplicates = sum(ran[job_id] - 1 for job_id in adds if ran[job_id] > 1)
            rows[name] = (len(adds), done, lost, duplicates, recovery)
            tried = len(adds) + refused(tmp_path / f"refused-{file.name.split('-')[1]}")
            record(f"PostgreSQL failover, {name}", tried, len(adds), done, lost,
                   duplicates, recovery)  # fmt: skip
        count, done, lost, _, _ = rows["replicate=1"]
        assert lost == 0, f"{lost} jobs added with replicate=1 were lost"
        assert done == count
    finally:
        for cluster in (replacement, standby, primary):
            cluster.destroy()


def _pending(states: dict[str, int]) -> int:
    return states["queued"] + states["active"] + states["scheduled"]
