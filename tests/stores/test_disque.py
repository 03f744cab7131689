"""The ``disque://`` store against our own ``disquette server`` processes: URL forms, the
body envelope, failover, the connection pool, node cycling, AUTH, the sync flavor and the
worker. (The conformance suite runs on it too, see tests/servers/disque.py.)"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from disquette import AsyncClient, Client, Job, connect, connect_async
from disquette.errors import InvalidURL, JobNotFound, StoreRefused, StoreUnavailable
from disquette.job import Encoding, JobState
from disquette.stores.disque.codec import decode_body, encode_body
from disquette.stores.disque.pool_async import AsyncPool
from disquette.stores.disque.store import DisqueStore
from disquette.stores.disque.store_async import AsyncDisqueStore
from disquette.stores.disque.url import parse_url
from disquette.worker import Worker
from tests.servers.disque import DisqueServer, command, free_port, session_server
from tests.servers.proxy import ReplyLosingProxy


@pytest.fixture
def server() -> DisqueServer:
    """The session's server, flushed."""
    server = session_server()
    command(server.port, "DEBUG", "FLUSHALL")
    return server


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[DisqueServer, DisqueServer]]:
    """Two servers over one SQLite file: one pool, as two Disque nodes of a cluster."""
    store = f"sqlite:///{tmp_path / 'shared.db'}"
    first = DisqueServer(store).start()
    second = DisqueServer(store).start()
    try:
        # The nodes learn of each other by their heartbeats in the shared store (about 1 s),
        # as Disque nodes must meet before HELLO lists them.
        deadline = time.monotonic() + 20
        while len(command(first.port, "HELLO")) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        yield first, second
    finally:
        first.stop()
        second.stop()


# -- URLs and the envelope (no server) ----------------------------------------------------


def test_nodes_come_from_the_url_the_environment_or_several_urls() -> None:
    nodes, params = parse_url("disque://:s%40cret@a:7712,b?max_idle=2&cycle=5", {})
    assert nodes == [("a", 7712), ("b", 7711)]
    assert params == {"password": "s@cret", "max_idle": "2", "cycle": "5"}
    nodes, _ = parse_url("disque://a:1,disque://b:2?max_active=3", {})
    assert nodes == [("a", 1), ("b", 2)]
    nodes, params = parse_url("disque://?idle_timeout=1", {"DISQUE_NODES": "c:3, disque://d:4"})
    assert (nodes, params) == ([("c", 3), ("d", 4)], {"idle_timeout": "1"})
    with pytest.raises(InvalidURL):
        parse_url("disque://", {})
    with pytest.raises(InvalidURL):
        parse_url("disque://a:1?colour=blue", {})


def test_bodies_travel_plain_or_in_a_json_envelope() -> None:
    plain = Job("D-00000000-AAAAAAAAAAAAAAAAAAAAAAAA-0001", "q", b"\x00raw\xff")
    assert encode_body(plain) == b"\x00raw\xff"  # what any Disque client reads
    fancy = Job(plain.id, "q", b'{"n":1}', Encoding.JSON, "send_mail", priority=5)
    wire = encode_body(fancy)
    assert wire == (
        b'{"disquette":1,"encoding":"json","type":"send_mail","priority":5,"body":{"n":1}}'
    )
    back = decode_body(Job(plain.id, "q", b""), wire)
    assert (back.body, back.type, back.priority) == ({"n": 1}, "send_mail", 5)
    lookalike = Job(plain.id, "q", b'{"disquette": "not ours"}')
    assert decode_body(Job(plain.id, "q", b""), encode_body(lookalike)).raw_body == (
        lookalike.raw_body
    )
    # A foreign body that merely looks like an envelope stays bytes.
    assert decode_body(Job(plain.id, "q", b""), b'{"disquette":2}').raw_body == (b'{"disquette":2}')


# -- against servers ------------------------------------------------------------------------


async def test_jobs_added_by_a_plain_disque_client_are_read_as_bytes(server: DisqueServer) -> None:
    job_id = command(server.port, "ADDJOB", "q", "from go", "0").decode()
    async with connect_async(server.url) as jobs:
        job = await jobs.timeout(0).get("q")
        assert (job.id, job.body, job.type, job.attempts) == (job_id, b"from go", None, 1)
        await jobs.type("mail").add({"to": "ada"}, "out")
    [[_, _, body]] = command(server.port, "GETJOB", "NOHANG", "FROM", "out")
    assert b'"type":"mail"' in body
    assert b'"body":{"to":"ada"}' in body


async def test_a_claimed_job_carries_its_own_retry_and_lease(server: DisqueServer) -> None:
    async with connect_async(server.url) as jobs:
        await jobs.retry_after(2).add("short", "q")
        await jobs.retry_after(0).add("once", "q")
        before = time.time()
        short, once = await jobs.timeout(0).get_many("q", count=2)
        # RETRY is not in GETJOB's reply: the store knows it from its own adds (or one
        # SHOW), so the worker's heartbeats come in time for a 2 s RETRY (not for Disque's
        # default of 300 s).
        assert short.retry_after == 2
        assert short.lease_until is not None
        assert before < short.lease_until <= time.time() + 2
        assert (once.retry_after, once.lease_until) == (0, None)


async def test_a_cold_store_learns_each_queues_retry_once(server: DisqueServer) -> None:
    async with connect_async(server.url) as producer:
        await producer.retry_after(3).add_many(["a", "b"], "q")
        await producer.retry_after(3).ttl(600).add("c", "q")
        await producer.retry_after(4).add("d", "r")
    async with connect_async(server.url) as consumer:
        # Jobs it did not add: one SHOW per queue and TTL teaches their RETRY.
        got = await consumer.timeout(0).get_many("q", "r", count=4)
        assert sorted((job.body, job.retry_after) for job in got) == [
            ("a", 3),
            ("b", 3),
            ("c", 3),
            ("d", 4),
        ]
        assert all(job.lease_until is not None for job in got)
        async with connect_async(server.url) as later:
            await later.retry_after(3).add("e", "q")
        (again,) = await consumer.timeout(0).get_many("q", count=1)
        assert (again.body, again.retry_after) == ("e", 3)  # learned: no SHOW this time
        assert await consumer.ack_many(got) == 4


async def test_acks_count_only_the_jobs_they_acked(server: DisqueServer) -> None:
    async with connect_async(server.url) as jobs:
        await jobs.add_many(["a", "b", "c"], "q")
        a, b, c = await jobs.timeout(0).get_many("q", count=3)
        assert await jobs.ack_many([a]) == 1
        # One ACKJOB for the batch (ack_many needs only the count): an id acked already,
        # and one given twice, are not counted.
        assert await jobs.ack_many([a, b, c, c]) == 2
        assert await jobs.store.ack([a.id, b.id]) == []


async def test_delayed_and_delivered_jobs_are_told_apart(server: DisqueServer) -> None:
    async with connect_async(server.url) as jobs:
        later = await jobs.delay(30).retry_after(5).add("later", "q")
        now = await jobs.retry_after(5).add("now", "q")
        assert (await jobs.show(later)).state is JobState.SCHEDULED
        await jobs.timeout(0).get("q")
        delivered = await jobs.show(now)
        assert delivered.state is JobState.ACTIVE
        assert delivered.lease_until is not None
    # The server's timings are Disque's: a delayed job is requeued (and wakes) when its
    # delay ends; a delivered job wakes 500 ms before its requeue time.
    fields = command(server.port, "SHOW", later)
    timings = dict(zip(fields[::2], fields[1::2], strict=True))
    requeue, awake = timings[b"next-requeue-within"], timings[b"next-awake-within"]
    assert 25_000 < requeue <= 30_000
    assert awake == requeue
    fields = command(server.port, "SHOW", now)
    timings = dict(zip(fields[::2], fields[1::2], strict=True))
    assert timings[b"next-requeue-within"] - timings[b"next-awake-within"] == 500


def test_sync_flavor_adds_gets_and_acks(server: DisqueServer) -> None:
    with connect(server.url) as jobs:
        job_id = jobs.add("hello", "q")
        job = jobs.timeout(1).get("q")
        assert (job.id, job.body, job.state) == (job_id, "hello", JobState.ACTIVE)
        jobs.ack(job)
        assert jobs.store.show(job_id) is None


async def test_fails_over_to_the_next_node(pair: tuple[DisqueServer, DisqueServer]) -> None:
    first, second = pair
    dead = f"127.0.0.1:{free_port()}"
    url = f"disque://{dead},{first.address},{second.address}?connect_timeout=1"
    async with connect_async(url) as jobs:
        added = [await jobs.add(n, "q") for n in range(5)]
        assert pool_of(jobs).nodes[pool_of(jobs).current][1] == first.port
        first.kill()  # kill -9: the store moves on, and loses nothing (one shared store)
        got = await jobs.timeout(5).get_many("q", count=10)
        assert sorted(job.id for job in got) == sorted(added)
        assert pool_of(jobs).nodes[pool_of(jobs).current][1] == second.port
        second.kill()
        with pytest.raises(StoreUnavailable, match=r"\(retried for 0\.5 s\)"):
            await _qlen(url, 0.5)


async def _qlen(url: str, retry_for: float) -> int:
    async with connect_async(f"{url}&retry_for={retry_for}") as jobs:
        return await jobs.qlen("q")


def test_a_client_started_before_its_server_waits_for_it(tmp_path: Path) -> None:
    """retry_for covers the first call too: a worker may start before its server (it
    failed at once before). Only rounds where nothing was sent are tried again."""
    later = DisqueServer(f"sqlite:///{tmp_path / 'later.db'}")
    with connect(f"disque://{later.address}?connect_timeout=1&retry_for=60") as jobs:
        errors: list[BaseException] = []
        added: list[str] = []

        def add() -> None:
            try:
                added.append(jobs.add(b"early", "q"))
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

        caller = threading.Thread(target=add)
        caller.start()
        time.sleep(1.0)  # the add is waiting for a server that does not exist yet
        assert caller.is_alive()
        later.start()
        try:
            caller.join(60)
            assert not errors, errors
            assert jobs.timeout(5).get("q").id == added[0]
        finally:
            later.stop()
    with connect(f"disque://127.0.0.1:{free_port()}?retry_for=0") as jobs:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            jobs.qlen("q")
        assert time.monotonic() - started < 5  # retry_for=0: no waiting


async def test_cycle_moves_to_the_node_that_produced_the_jobs(
    pair: tuple[DisqueServer, DisqueServer],
) -> None:
    first, second = pair
    async with connect_async(second.url) as producer:
        await producer.add_many(range(6), "q")
    async with connect_async(f"disque://{first.address},{second.address}?cycle=3") as jobs:
        assert pool_of(jobs).current == 0
        got = await jobs.timeout(0).get_many("q", count=3)
        assert {job.id[2:10] for job in got} == {producer_prefix(second)}
        assert pool_of(jobs).nodes[pool_of(jobs).current] == ("127.0.0.1", second.port)


def producer_prefix(server: DisqueServer) -> str:
    """The 8-hex prefix of a server's node id (in the ids of the jobs it creates)."""
    node_id: bytes = command(server.port, "CLUSTER", "NODES").split()[0]
    return node_id.decode()[:8]


def pool_of(client: AsyncClient) -> AsyncPool:
    """The connection pool of a client's disque store."""
    assert isinstance(client.store, AsyncDisqueStore)
    return client.store.pool


async def test_pool_bounds_active_and_idle_connections(server: DisqueServer) -> None:
    url = f"{server.url}?max_active=2&max_idle=2"
    async with connect_async(url) as jobs:
        store = jobs.store
        assert isinstance(store, AsyncDisqueStore)
        # Each _info call is one connection of its own, counted in what it reads.
        before = _info(server, "total_connections_received")
        await asyncio.gather(*(jobs.add(n, "q") for n in range(20)))
        assert _info(server, "total_connections_received") - before <= 2 + 1
        assert await jobs.qlen("q") == 20
        opened = _info(server, "total_connections_received")
        for _ in range(5):  # sequential calls reuse the idle connection
            await jobs.qlen("q")
        assert _info(server, "total_connections_received") == opened + 1
    async with connect_async(f"{server.url}?max_active=4&max_idle=1") as jobs:
        await asyncio.gather(*(jobs.qlen("q") for _ in range(20)))
        assert isinstance(jobs.store, AsyncDisqueStore)
        assert [len(idle) for idle in pool_of(jobs)._idle.values()] == [1]
    async with connect_async(f"{server.url}?idle_timeout=0") as jobs:
        await jobs.qlen("q")
        opened = _info(server, "total_connections_received")
        await asyncio.sleep(0.01)
        await jobs.qlen("q")  # the idle connection timed out: a new one
        assert _info(server, "total_connections_received") == opened + 2


def _info(server: DisqueServer, field: str) -> int:
    for line in command(server.port, "INFO").decode().splitlines():
        if line.startswith(field + ":"):
            return int(line.split(":", 1)[1])
    raise AssertionError(f"INFO has no {field}")


async def test_password_is_sent_with_auth(tmp_path: Path) -> None:
    locked = DisqueServer("memory://", password="s3cret").start()
    try:
        async with connect_async(locked.url) as jobs:
            await jobs.add("x", "q")
            assert await jobs.qlen("q") == 1
        async with connect_async(f"disque://{locked.address}") as jobs:
            with pytest.raises(StoreUnavailable, match="NOAUTH"):
                await jobs.qlen("q")
        async with connect_async(f"disque://:wrong@{locked.address}") as jobs:
            # Refused for good, at once: no wait makes a wrong password right.
            with pytest.raises(StoreRefused, match="AUTH refused") as refused:
                await jobs.qlen("q")
            assert "retried" not in str(refused.value)
    finally:
        locked.stop()


async def test_worker_runs_jobs_from_a_disque_server(server: DisqueServer) -> None:
    done: collections.Counter[str] = collections.Counter()
    finished = asyncio.Event()

    async def handle(job: Job) -> None:
        done[job.type or "?"] += 1
        if sum(done.values()) == 5:
            finished.set()

    async with connect_async(server.url) as client:
        worker = Worker(client, {"count": handle, "*": handle}, queues=["work"])
        await worker.start_async()
        try:
            for n in range(4):
                await client.type("count").add({"n": n}, "work")
            command(server.port, "ADDJOB", "work", "from another language", "0")
            await asyncio.wait_for(finished.wait(), 20)
        finally:
            await worker.stop_async()
        assert done == {"count": 4, "?": 1}
        assert await client.qlen("work") == 0
        assert (await client.scan(0, 100))[1] == []  # every job was acked (deleted)


# -- calls sent again on failover after their reply was lost -------------------------------


@pytest.fixture
def lossy(server: DisqueServer) -> Iterator[tuple[Client, ReplyLosingProxy]]:
    """A client of two "nodes": the server through a proxy that can lose a reply (first),
    then the same server directly (where the store fails over to)."""
    proxy = ReplyLosingProxy(server.port, "redis")
    with connect(f"disque://127.0.0.1:{proxy.port},{server.address}") as jobs:
        yield jobs, proxy
    proxy.close()


def _through_the_proxy(jobs: Client, proxy: ReplyLosingProxy, marker: bytes) -> None:
    store = jobs.store
    assert isinstance(store, DisqueStore)
    store.pool.move_to(("127.0.0.1", proxy.port))
    proxy.lose_reply_to(marker)


def test_calls_sent_again_on_failover_after_a_lost_reply(
    lossy: tuple[Client, ReplyLosingProxy],
) -> None:
    jobs, proxy = lossy
    jobs.add_many(["nacked", "kept"], "q")
    nacked, kept = jobs.timeout(0).get_many("q", count=2)
    _through_the_proxy(jobs, proxy, nacked.id.encode())
    jobs.nack(nacked)  # NACK ran, its reply was lost; the next node runs it again
    assert proxy.lost == 1
    again = jobs.timeout(0).get_many("q", count=5)
    assert [job.id for job in again] == [nacked.id]
    assert again[0].nacks == 1
    jobs.ack_many([*again, kept])
    # Disque assigns job ids, so an ADDJOB sent again is a second job (at-least-once, as
    # the module documents): both are delivered, and both can be acked.
    _through_the_proxy(jobs, proxy, b"added twice")
    jobs.add(b"added twice", "twice")
    assert proxy.lost == 2
    twice = jobs.timeout(0).get_many("twice", count=5)
    assert [job.body for job in twice] == [b"added twice", b"added twice"]
    assert jobs.ack_many(twice) == 2


@pytest.mark.xfail(
    strict=True,
    raises=JobNotFound,
    reason="disque:// sends ACKJOB again on failover; the job is already gone (ACKJOB "
    "deletes it), so the ack that succeeded reports JobNotFound",
)
def test_an_ack_sent_again_on_failover_after_its_reply_was_lost_succeeds(
    lossy: tuple[Client, ReplyLosingProxy],
) -> None:
    jobs, proxy = lossy
    jobs.add("acked", "q")
    job = jobs.timeout(0).get("q")
    _through_the_proxy(jobs, proxy, job.id.encode())
    jobs.ack(job)
