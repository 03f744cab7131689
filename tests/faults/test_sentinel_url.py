"""``redis+sentinel://`` URLs: what they name, the typed errors for bad ones, and both
flavours of the store opened through a real Sentinel on loopback, the asyncio one following
it through a failover (no namespaces needed: this file runs without root)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from disquette import JobState, connect, connect_async
from disquette.errors import InvalidURL
from disquette.stores import SCHEMES
from disquette.stores.redis.url import parse_url
from tests.servers.redis import RedisServer, driver, free_port


def test_a_sentinel_url_names_sentinels_a_service_and_a_database() -> None:
    settings = parse_url(
        "redis+sentinel://me:secret@10.0.0.1:26379,[::1]:26380/jobs/3"
        "?prefix=q&retry_for=30&socket_timeout=2&sentinel_password=s3"
    )
    found = settings.sentinels
    assert found is not None
    assert found.hosts == (("10.0.0.1", 26379), ("::1", 26380))
    assert (found.service, found.db) == ("jobs", 3)
    assert found.connection == {"username": "me", "password": "secret", "socket_timeout": 2.0}
    assert found.sentinel == {"socket_timeout": 2.0, "password": "s3"}
    assert settings.cluster is False
    assert (settings.prefix, settings.retry_for) == ("q:", 30.0)
    assert "secret" not in settings.url
    assert "s3" not in settings.url
    assert SCHEMES["redis+sentinel"] is SCHEMES["redis"]


def test_a_plain_redis_url_names_no_sentinels() -> None:
    assert parse_url("redis://127.0.0.1:6379/0").sentinels is None


def test_the_database_defaults_to_zero() -> None:
    found = parse_url("redis+sentinel://h:26379/jobs").sentinels
    assert found is not None
    assert found.db == 0
    assert found.connection == {}


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+sentinel://h/jobs", "host:port"),
        ("redis+sentinel://h:0/jobs", "host:port"),
        ("redis+sentinel://h:1,/jobs", "host:port"),
        ("redis+sentinel://h:1/", "service_name"),
        ("redis+sentinel://h:1/jobs/x", "service_name"),
        ("redis+sentinel://h:1/jobs/1/2", "service_name"),
        ("redis+sentinel://h:1/jobs?health=1", "unknown parameter"),
        ("redis+sentinel://h:1/jobs?cluster=yes", "Cluster"),
        ("redis+sentinel://h:1/jobs?socket_timeout=never", "socket_timeout"),
    ],
)
def test_bad_sentinel_urls_are_refused_with_a_typed_error(url: str, why: str) -> None:
    with pytest.raises(InvalidURL, match=why):
        parse_url(url)


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer, int]]:
    """A primary, its replica and one Sentinel (quorum 1) watching them, on loopback."""
    primary = RedisServer(tmp_path / "primary", "--repl-diskless-sync-delay", "0").start()
    replica = RedisServer(tmp_path / "replica", "--replicaof", "127.0.0.1", str(primary.port))
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor svc 127.0.0.1 {primary.port} 1\n"
        "sentinel down-after-milliseconds svc 500\nsentinel failover-timeout svc 5000\n"
    )
    process = subprocess.Popen(
        [primary.binary, str(conf), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        replica.start()
        _until(lambda: _ask(port, "get-master-addr-by-name") == ["127.0.0.1", str(primary.port)])
        _until(lambda: primary.client().info("replication").get("connected_slaves") == 1)
        _until(lambda: len(_ask(port, "replicas")) == 1)
        yield primary, replica, port
    finally:
        process.terminate()
        process.wait(20)
        replica.stop()
        primary.stop()


def _ask(port: int, *command: str) -> Any:
    redis = driver()
    try:
        client = redis.Redis(port=port, socket_timeout=2, decode_responses=True)
        return client.execute_command("SENTINEL", command[0], *command[1:], "svc")
    except redis.RedisError:
        return None


def _until(predicate: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.05)


def test_the_sync_store_opens_through_sentinel_and_counts_the_replica(
    sentinel: tuple[RedisServer, RedisServer, int],
) -> None:
    _, _, port = sentinel
    url = f"redis+sentinel://127.0.0.1:{port}/svc/0?prefix=s&replicate_timeout=10"
    with connect(url) as jobs:
        assert jobs.store.max_replicas == 1
        job_id = jobs.replicate(1).add("through sentinel", "q")
        job = jobs.timeout(0).get("q")
        assert job.id == job_id
        jobs.ack(job)
        assert jobs.show(job_id).state is JobState.DONE


async def test_the_async_store_follows_sentinel_to_the_promoted_replica(
    sentinel: tuple[RedisServer, RedisServer, int],
) -> None:
    primary, replica, port = sentinel
    url = f"redis+sentinel://127.0.0.1:{port}/svc/0?prefix=a&retry_for=60&replicate_timeout=10"
    async with connect_async(url) as jobs:
        first = await jobs.replicate(1).add("before", "q")
        primary.kill()
        # The same client: its calls retry until Sentinel names the replica, then land there.
        second = await jobs.add("after", "q")
        assert _ask(port, "get-master-addr-by-name") == ["127.0.0.1", str(replica.port)]
        got = await jobs.timeout(0).get_many("q", count=10)
        assert [job.id for job in got] == [first, second]
