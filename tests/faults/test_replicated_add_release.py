"""The moment between a replicated add's ``WAIT`` and its release, on Redis.

A replicated add (``replicate=N``) stores its jobs held, runs ``WAIT N``, then releases them
with a second script (followed by a second ``WAIT``). This test makes the failover happen
exactly between the two: the replica is promoted (``REPLICAOF NO ONE``, what Sentinel does
when the primary dies) just before the release runs on the old primary. The add returned,
so the job was acknowledged; the new primary must still deliver it. Loopback only, two real
Redis servers; the only thing the test steers is when the failover happens.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from disquette import ManualClock, connect
from tests.servers.redis import RedisServer, with_prefix


@pytest.mark.parametrize(
    "moment",
    [
        # The control: the failover comes once the add returned and replication caught up.
        "after the add",
        pytest.param(
            "before the release",
            marks=pytest.mark.xfail(
                strict=True,
                reason="known gap: a replica that detaches between the add's WAIT and the "
                "release's, then is promoted, keeps the acknowledged job held forever",
            ),
        ),
    ],
)
def test_a_job_whose_replicated_add_returned_is_delivered_after_a_failover(
    tmp_path: Path, moment: str
) -> None:
    primary = RedisServer(tmp_path / "primary", "--repl-diskless-sync-delay", "0").start()
    replica = RedisServer(tmp_path / "replica", "--replicaof", "127.0.0.1", str(primary.port))
    try:
        replica.start()
        deadline = time.monotonic() + 30
        while primary.client().info("replication").get("slave0", {}).get("state") != "online":
            assert time.monotonic() < deadline, "the replica did not connect"
            time.sleep(0.05)
        clock = ManualClock()
        with connect(with_prefix(primary.url, "h") + "&replicate_timeout=3", clock=clock) as jobs:
            runner: Any = jobs.store.runner  # type: ignore[attr-defined]
            run_by_id = runner.run_by_id

            def failover_first(name: str, *args: Any) -> Any:
                if name == "release" and moment == "before the release":
                    replica.client().execute_command("REPLICAOF", "NO", "ONE")
                return run_by_id(name, *args)

            runner.run_by_id = failover_first
            job_id = jobs.replicate(1).add("acknowledged", "q")
            if moment == "after the add":
                jobs.store.runner.command("WAIT", 1, 10_000)  # type: ignore[attr-defined]
                replica.client().execute_command("REPLICAOF", "NO", "ONE")
        primary.stop()
        with connect(with_prefix(replica.url, "h"), clock=clock) as survivor:
            clock.advance(24 * 3600)  # whatever a held job waits for, it has passed
            got = survivor.timeout(0).get_many("q")
            assert [job.id for job in got] == [job_id]
    finally:
        replica.stop()
        primary.stop()
