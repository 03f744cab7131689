"""Redis-specific powers: scripts reloaded after a flush, wake-ups across processes, a real
Redis Cluster, WAIT with a real replica, a restart mid-run, and the memory a job costs.

Every test that stops, kills or replicates Redis starts private servers of its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from disquette import Job, JobState, ManualClock, connect, connect_async
from disquette.cli import EXIT_UNAVAILABLE
from disquette.errors import (
    ClientClosed,
    InvalidOption,
    InvalidURL,
    NotReplicated,
    StoreError,
    StoreRefused,
    StoreUnavailable,
)
from disquette.job import new_job_id
from disquette.stores.redis.admin import STATS_CHUNK
from disquette.stores.redis.codec import claimed_jobs, queue_base
from disquette.stores.redis.store import RedisStore
from disquette.stores.redis.tokens import ClaimTokens
from tests.servers.proxy import ReplyLosingProxy, replay_ack_nack_and_fail
from tests.servers.redis import (
    RedisCluster,
    RedisServer,
    conformance_url,
    driver,
    free_port,
    fresh_prefix,
    session_url,
    with_prefix,
)
from tests.stores.test_redis_deps import check_cluster_dependencies

ROOT = Path(__file__).resolve().parent.parent.parent
#: Documented bound (docs and bench/bench_redis.py): bytes of Redis memory per queued
#: no-op job (16-byte body, default options, queue of 10k+ jobs) on one server.
BYTES_PER_QUEUED_JOB = 400


# The reference-model test is left out on the Cluster: it adds time, not operations. So are
# the dependency tests, whose parents are in other queues (other hash slots, refused there):
# check_cluster_dependencies covers dependencies on the Cluster.
PYTEST_ARGS = (
    "-q", "-x", "-k", "redis and not model and not test_dependencies", "-p", "no:cacheprovider"
)  # fmt: skip


def _python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code), *args]


def _job(body: str, now: float) -> Job:
    return Job(new_job_id(None, 300.0), "q", body.encode(), created_at=now, run_at=now)


def _raw(url: str) -> Any:
    """A redis-py client on the server behind a store URL."""
    return driver().Redis.from_url(url.split("?")[0])


def _wait_for(condition: Any, what: str, seconds: float = 30.0) -> None:
    """Synchronise with another process (not a timing assertion): poll until true."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def private(tmp_path: Path) -> Iterator[RedisServer]:
    """A private Redis without persistence."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def test_scripts_are_loaded_again_after_script_flush(tmp_path: Path) -> None:
    url = conformance_url(tmp_path)
    with connect(url) as jobs:
        jobs.add("before", "q")
        _raw(url).script_flush()
        assert jobs.timeout(0).get("q").body == "before"
        _raw(url).script_flush()
        jobs.add("after", "q")
        assert jobs.qlen("q") == 1


WAITER = """
    import sys, disquette
    with disquette.connect(sys.argv[1]) as jobs:
        job = jobs.timeout(60).get("q")
        print(job.body, flush=True)
"""


def _blocked(server: RedisServer) -> int:
    """How many clients the (private) server holds in a blocking command."""
    return int(server.client().info("clients")["blocked_clients"])


def _evalsha_calls(server: RedisServer) -> int:
    stats = server.client().info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def test_blocked_get_in_another_process_wakes_on_add(private: RedisServer) -> None:
    # A poll longer than the get's timeout: only the marker can deliver the job in time.
    url = with_prefix(private.url, fresh_prefix()) + "&poll_interval=60"
    waiter = subprocess.Popen(_python(WAITER, url), stdout=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: _blocked(private) == 1, "the waiter to block")
        with connect(url) as jobs:
            jobs.add("wake up", "q")
        out, _ = waiter.communicate(timeout=60)
        assert waiter.returncode == 0
        assert out.strip() == "wake up"
    finally:
        waiter.kill()


def test_a_woken_client_that_dies_before_claiming_loses_no_job(private: RedisServer) -> None:
    prefix = fresh_prefix()
    url = with_prefix(private.url, prefix) + "&poll_interval=0.3"
    marker = queue_base(prefix + ":", "q") + "w"
    # Another client blocks on the marker first (Redis serves the longest blocked first),
    # takes the wake-up and dies without claiming: the waiter's poll still finds the job.
    doomed = private.client()
    popped: list[Any] = []
    thief = threading.Thread(target=lambda: popped.append(doomed.bzpopmin([marker], 60)))
    thief.start()
    _wait_for(lambda: _blocked(private) == 1, "the thief to block")
    waiter = subprocess.Popen(_python(WAITER, url), stdout=subprocess.PIPE, text=True)
    try:
        with connect(url) as jobs:
            # The waiter claims (finds nothing) and blocks: only then the add.
            _wait_for(lambda: "bzpopmin" in str(private.client().client_list()), "the waiter")
            _wait_for(lambda: _blocked(private) == 2, "the waiter to block")
            job_id = jobs.add("survives", "q")
            thief.join(60)
            assert popped
            assert popped[0] is not None  # the wake-up went to the thief
            doomed.close()
            out, _ = waiter.communicate(timeout=60)
            assert out.strip() == "survives"
            assert jobs.show(job_id).state is JobState.ACTIVE
    finally:
        waiter.kill()


def test_one_add_runs_one_claim_with_eight_idle_getters(private: RedisServer) -> None:
    # No herd: one add sets one marker, one blocked get pops it and runs the one claim
    # queued behind its BZPOPMIN; the other seven stay blocked (their poll is 60 s).
    url = with_prefix(private.url, fresh_prefix()) + "&poll_interval=60"
    got: list[str] = []
    with connect(url) as jobs:
        jobs.add("warm up", "q")  # registers the queue, loads the scripts
        assert jobs.timeout(0).get("q").body == "warm up"
        getters = [
            threading.Thread(target=lambda: got.append(jobs.timeout(120).get("q").body))
            for _ in range(8)
        ]
        for getter in getters:
            getter.start()
        _wait_for(lambda: _blocked(private) == 8, "eight getters to block")
        private.client().config_resetstat()
        jobs.add("one", "q")
        _wait_for(lambda: len(got) == 1, "one getter to get the job")
        _wait_for(lambda: _blocked(private) == 7, "the woken getter to return")
        assert _evalsha_calls(private) == 2  # the add, and one claim
        jobs.add_many([str(n) for n in range(7)], "q")  # releases the others
        for getter in getters:
            getter.join(60)
    assert sorted(got) == sorted(["one", *map(str, range(7))])


def test_a_subscriber_is_woken_by_a_marker_another_process_set(private: RedisServer) -> None:
    # What a worker's fetcher waits on: one thread per process blocked on the markers.
    url = with_prefix(private.url, fresh_prefix()) + "&poll_interval=60"
    woken = threading.Event()
    with connect(url) as waiting, connect(url) as adding:
        unsubscribe = waiting.store.wakeups.subscribe(["q"], woken.set)
        try:
            _wait_for(lambda: _blocked(private) == 1, "the marker watcher to block")
            adding.add("x", "q")
            assert woken.wait(60)
            assert waiting.timeout(0).get("q").body == "x"
        finally:
            unsubscribe()


def test_a_blocked_get_survives_its_connection_being_killed(private: RedisServer) -> None:
    url = with_prefix(private.url, fresh_prefix()) + "&poll_interval=60"
    got: list[str] = []
    with connect(url) as jobs:
        getter = threading.Thread(target=lambda: got.append(jobs.timeout(120).get("q").body))
        getter.start()
        _wait_for(lambda: _blocked(private) == 1, "the getter to block")
        raw = private.client()
        (blocked,) = [c for c in raw.client_list() if c["cmd"] == "bzpopmin"]
        raw.client_kill_filter(_id=blocked["id"])
        _wait_for(lambda: _blocked(private) == 1, "the getter to block again")
        jobs.add("after", "q")
        getter.join(60)
    assert got == ["after"]


def test_wait_is_signalled_for_its_own_job_only(private: RedisServer) -> None:
    prefix = fresh_prefix()
    url = with_prefix(private.url, prefix) + "&poll_interval=60"
    listener = private.client().pubsub()
    listener.psubscribe(f"{prefix}:d:*", f"{prefix}:done")
    with connect(url) as jobs:
        waited, other = jobs.add("waited", "q"), jobs.add("other", "q")
        results: list[Any] = []
        waiter = threading.Thread(target=lambda: results.append(jobs.timeout(60).wait(waited)))
        waiter.start()
        job_key = f"{prefix}:j:{waited}"
        _wait_for(lambda: private.client().hexists(job_key, "w"), "the waiter to register")
        for job in jobs.timeout(0).get_many("q", count=2):
            jobs.ack(job, result=job.body.upper())  # "other" first: nobody waits on it
        waiter.join(60)
        assert results == ["WAITED"]
    channels = []
    while (message := listener.get_message(timeout=1)) is not None:
        if message["type"] == "pmessage":
            channels.append(message["channel"].decode())
    assert channels == [f"{prefix}:d:{waited}"], other


def test_tick_promotes_a_burst_of_due_jobs_in_bounded_steps(tmp_path: Path) -> None:
    clock = ManualClock()
    url = conformance_url(tmp_path)
    with connect(url, clock=clock) as jobs:
        jobs.delay(10).add_many(["x"] * 2500, "q")
        clock.advance(20)
        store = jobs.store
        assert isinstance(store, RedisStore)
        raw = _raw(url)
        scheduled = store.runner.queue_key("q", "s")
        assert jobs.timeout(0).get("q").body == "x"
        assert raw.zcard(scheduled) == 1500  # one call promoted 1,000
        assert raw.exists(store.runner.queue_key("q", "w"))  # a blocked get comes back
        taken = 1 + len(jobs.timeout(0).get_many("q", count=1000))
        while batch := jobs.timeout(0).get_many("q", count=1000):
            taken += len(batch)
        assert taken == 2500
        assert raw.zcard(scheduled) == 0


def test_a_claim_over_many_queues_promotes_a_bounded_number_of_due_jobs(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    url = conformance_url(tmp_path)
    names = [f"q{n}" for n in range(5)]
    with connect(url, clock=clock) as jobs:
        for name in names:
            jobs.delay(10).add_many(["x"] * 600, name)
        clock.advance(20)
        store = jobs.store
        assert isinstance(store, RedisStore)
        raw = _raw(url)
        assert jobs.timeout(0).get(*names).queue == "q0"
        left = [raw.zcard(store.runner.queue_key(name, "s")) for name in names]
        # The call's ticks share 1,000 moves (q0 600, q1 400), and each later queue
        # still moves one: a claim over many queues is never one long call.
        assert left == [0, 200, 599, 599, 599]
        assert all(raw.exists(store.runner.queue_key(name, "w")) for name in names[1:])
        taken = 1
        while batch := jobs.timeout(0).get_many(*names, count=1000):
            taken += len(batch)
        assert taken == 3000


def test_a_claim_receipt_lives_for_the_retry_window(tmp_path: Path) -> None:
    url = conformance_url(tmp_path) + "&retry_for=3"
    with connect(url) as jobs:
        jobs.add("x", "q")
        store = jobs.store
        assert isinstance(store, RedisStore)
        keys = store.claims._claim_keys(["q"], "receipt")
        args = ["receipt", 1, "", store.claims.receipt_ttl, "", "q"]
        assert len(claimed_jobs(store.runner.run("claim", keys, args), ["q"])) == 1
        ttl = _raw(url).ttl(store.runner.queue_key("q", "t:receipt"))
        assert 0 < ttl <= 3 + 5


def test_a_blocked_claim_leaves_a_receipt_or_nothing_under_its_token(tmp_path: Path) -> None:
    # The stamp a blocked get sets (600 s) is replaced by the receipt (retry_for + slack)
    # when the claim leases, deleted when it does not: no key outlives the retry window.
    url = conformance_url(tmp_path) + "&retry_for=3"
    with connect(url) as jobs:
        store = jobs.store
        assert isinstance(store, RedisStore)
        raw = _raw(url)
        tokens = store.runner.queue_key("q", "t:*")
        assert store.claims.claim_blocking(["q"], 10, 0.01) == []
        assert raw.keys(tokens) == []
        jobs.add("x", "q")
        (job,) = store.claims.claim_blocking(["q"], 10, 5) or []
        (receipt,) = raw.keys(tokens)
        assert 0 < raw.ttl(receipt) <= 3 + 5
        assert raw.get(receipt) == f"1:40:{job.id}".encode()


def test_a_retried_blocked_claim_that_never_ran_claims_and_drops_its_stamp(
    tmp_path: Path,
) -> None:
    # The blocked call's SET arrived, its BZPOPMIN and claim did not (the connection
    # dropped): the retry, unstamped, finds the empty stamp, which is no receipt.
    with connect(conformance_url(tmp_path)) as jobs:
        store = jobs.store
        assert isinstance(store, RedisStore)
        raw = _raw(conformance_url(tmp_path))
        for token, body in [("empty", None), ("full", "a")]:
            keys = store.claims._claim_keys(["q"], token)
            raw.set(keys[1], "", px=600_000)
            if body is not None:
                jobs.add(body, "q")
            args = [token, 2, "", 60, "", "q"]
            first = claimed_jobs(store.runner.run("claim", keys, args), ["q"])
            again = claimed_jobs(store.runner.run("claim", keys, args), ["q"])
            assert [job.body for job in first] == [job.body for job in again]
            assert [job.body for job in first] == ([] if body is None else [body])
            if body is None:
                assert not raw.exists(keys[1])
            else:
                assert 0 < raw.ttl(keys[1]) <= 60


def test_claim_tokens_differ_in_a_forked_child() -> None:
    tokens = ClaimTokens()
    assert len({tokens.next() for _ in range(1000)}) == 1000
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next token, to the parent
        os.write(write, tokens.next().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    os.close(read)
    assert child
    assert child != tokens.next()  # without the new prefix: the same token


def test_the_conformance_suite_passes_on_a_three_master_cluster(tmp_path: Path) -> None:
    cluster = RedisCluster(tmp_path / "cluster").start()
    try:
        env = dict(os.environ, DISQUETTE_TEST_REDIS_URL=cluster.url)
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "tests/conformance", *PYTEST_ARGS],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
        assert " passed" in run.stdout
        # The queues are spread over the masters, each queue's keys on one of them.
        prefix = fresh_prefix()
        with connect(with_prefix(cluster.url, prefix)) as jobs:
            assert isinstance(jobs.store, RedisStore)
            assert jobs.store.cluster
            queues = [f"queue-{n}" for n in range(12)]
            for queue in queues:
                jobs.retry_after(60).add_many(["a", "b"], queue)
                jobs.timeout(0).get(queue)
            holders = set()
            first = cluster.servers[0].client()
            for queue in queues:
                base = queue_base(prefix + ":", queue)
                slots = {first.execute_command("CLUSTER", "KEYSLOT", base + kind) for kind in "rae"}
                assert len(slots) == 1, queue
                (slot,) = slots
                owners = [
                    n
                    for n, server in enumerate(cluster.servers)
                    if server.client().execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) >= 3
                ]
                assert len(owners) == 1, queue  # ready set, active set, job hashes
                holders.update(owners)
            assert len(holders) > 1
            assert jobs.stats().by_queue()["queue-3"].active == 1
            assert jobs.recover_stale(max_age=0) == len(queues)
        check_cluster_dependencies(cluster.url)
        # A get of one queue blocks on its marker, on the queue's primary (poll: 60 s).
        with connect(with_prefix(cluster.url, prefix) + "&poll_interval=60") as jobs:
            got: list[str] = []
            getter = threading.Thread(target=lambda: got.append(jobs.timeout(60).get("b").body))
            getter.start()

            def blocked() -> int:
                return sum(
                    server.client().info("clients")["blocked_clients"] for server in cluster.servers
                )

            _wait_for(lambda: blocked() == 1, "the get to block")
            jobs.add("x", "b")
            getter.join(60)
            assert got == ["x"]
            assert isinstance(jobs.store, RedisStore)
            assert jobs.store.claims.can_block
    finally:
        cluster.stop()


def test_wait_confirms_replicas_and_refuses_more_than_there_are(tmp_path: Path) -> None:
    primary = RedisServer(tmp_path / "primary", "--repl-diskless-sync-delay", "0").start()
    replica = RedisServer(tmp_path / "replica", "--replicaof", "127.0.0.1", str(primary.port))
    try:
        replica.start()
        _wait_for(
            lambda: primary.client().info("replication").get("slave0", {}).get("state") == "online",
            "the replica to connect",
        )
        # Generous for the replica that answers (the machine may be busy), short for the
        # one that is stopped.
        url = with_prefix(primary.url, "w") + "&replicate_timeout=10"
        impatient_url = with_prefix(primary.url, "w") + "&replicate_timeout=0.2"
        with connect(url) as jobs:
            store = jobs.store
            assert isinstance(store, RedisStore)
            assert store.max_replicas == 1
            job = _job("copied", store.clock.now())
            with pytest.raises(InvalidOption):
                store.add([job], None, connection=object())
            store.add([job], None, replicate=1)
            # WAIT returned: the replica has processed the write.
            assert replica.client().exists(store.runner.job_key(job.id, None)) == 1
            late = _job("not enough copies", store.clock.now())
            with pytest.raises(NotReplicated) as refused:
                store.add([late], None, replicate=2)
            assert (refused.value.wanted, refused.value.available) == (2, 1)
            assert store.show(late.id) is None  # a refused add adds nothing
            assert jobs.replicate(1).add("through the client", "q")
            # A replica that is connected but does not answer: WAIT runs out.
            assert replica.process is not None
            replica.process.send_signal(signal.SIGSTOP)
            try:
                stalled = _job("unconfirmed", store.clock.now())
                with connect(impatient_url) as impatient, pytest.raises(NotReplicated) as refused:
                    impatient.store.add([stalled], None, replicate=1)
                assert (refused.value.wanted, refused.value.available) == (1, 0)
                assert store.show(stalled.id) is None
            finally:
                replica.process.send_signal(signal.SIGCONT)
            got = [job.body for job in jobs.timeout(0).get_many("q")]
            assert got == [b"copied", "through the client"]
    finally:
        replica.stop()
        primary.stop()


PRODUCER = """
    import sys, disquette
    jobs = disquette.connect(sys.argv[1])
    for n in range(int(sys.argv[2])):
        print(jobs.add({"n": n}, "q"), flush=True)
"""


def test_restart_with_aof_mid_run_loses_no_added_job(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "aof", "--appendonly", "yes", "--appendfsync", "always").start()
    url = with_prefix(server.url, "r") + "&retry_for=60&poll_interval=0.05"
    total = 600  # every write is fsynced: keep the run short
    producer = subprocess.Popen(
        _python(PRODUCER, url, str(total)), stdout=subprocess.PIPE, text=True
    )
    assert producer.stdout is not None
    done: set[str] = set()
    failures: list[BaseException] = []
    stop = threading.Event()

    def work() -> None:
        try:
            with connect(url) as jobs:
                while not stop.is_set():
                    batch = jobs.timeout(0.2).get_many("q", count=50)
                    jobs.ack_many(batch)
                    done.update(job.id for job in batch)
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    try:
        added = [producer.stdout.readline().strip() for _ in range(200)]
        server.kill()  # mid-run: the producer and the worker are both calling Redis
        server.start()
        added += [line.strip() for line in producer.stdout if line.strip()]
        assert producer.wait(120) == 0
        assert len(added) == total
        _wait_for(lambda: done >= set(added) or bool(failures), "the worker to drain")
        assert not failures
        with connect(url) as jobs:
            assert all(jobs.show(job_id).state is JobState.DONE for job_id in added)
            assert jobs.qlen("q") == 0
    finally:
        stop.set()
        worker.join(60)
        producer.kill()
        server.stop()


def test_an_unreachable_redis_raises_a_retryable_error(private: RedisServer) -> None:
    url = with_prefix(private.url, "u") + "&retry_for=0.2"
    with connect(url) as jobs:
        jobs.add("x", "q")
        private.stop()
        with pytest.raises(StoreUnavailable) as unavailable:
            jobs.qlen("q")
        assert unavailable.value.retryable
        private.start()
        assert jobs.qlen("q") == 0  # no persistence configured: an empty server
    with pytest.raises(StoreUnavailable):
        connect(f"redis://127.0.0.1:{private.port + 1 if private.port < 65535 else 1}?retry_for=0")


def test_memory_per_queued_no_op_job_is_bounded(private: RedisServer) -> None:
    client = private.client()
    count = 20_000
    with connect(with_prefix(private.url, "m")) as jobs:
        jobs.add("warm up", "q")
        before = client.info("memory")["used_memory"]
        for _ in range(count // 1000):
            jobs.add_many([b"0123456789abcdef"] * 1000, "q")
        used = client.info("memory")["used_memory"] - before
        assert jobs.qlen("q") == count + 1
    per_job = used / count
    assert per_job <= BYTES_PER_QUEUED_JOB, f"{per_job:.0f} bytes per queued job"


def test_stats_reads_a_big_queue_in_chunks(tmp_path: Path) -> None:
    url = conformance_url(tmp_path)
    clock = ManualClock()
    with connect(url, clock=clock) as jobs:
        jobs.type("a").add_many(range(STATS_CHUNK), "q")
        jobs.type("b").delay(10).add_many(range(STATS_CHUNK // 2 + 3), "q")
        for job in jobs.timeout(0).get_many("q", count=7):
            jobs.fail(job, "boom")
        rows = {row.type: row for row in jobs.stats().rows}
        assert (rows["a"].queued, rows["a"].scheduled, rows["a"].max_error_count) == (
            STATS_CHUNK - 7,
            7,
            1,
        )
        assert rows["b"].scheduled == STATS_CHUNK // 2 + 3
        assert rows["a"].oldest_run_at == clock.now()


def test_queue_names_that_escape_alike_stay_apart(tmp_path: Path) -> None:
    names = ["a}b", "a%7Db", "a%b", "a%25b", "{a}", "}"]
    with connect(conformance_url(tmp_path)) as jobs:
        for name in names:
            jobs.add(name, name)
        assert len({queue_base("p:", name) for name in names}) == len(names)
        for name in names:
            assert jobs.qlen(name) == 1
            assert jobs.timeout(0).get(name).body == name


def test_url_options_are_checked(tmp_path: Path) -> None:
    base = session_url()
    for bad in ["prefix={x}", "cluster=maybe", "poll_interval=0", "retry_for=abc"]:
        with pytest.raises(InvalidURL):
            connect(f"{base}?{bad}")
    store = connect(with_prefix(base, "p") + "&cluster=no").store
    assert isinstance(store, RedisStore)
    assert not store.cluster
    store.close()
    with pytest.raises(ClientClosed):
        store.qlen("q")


async def test_async_store_shares_the_sync_store_data(tmp_path: Path) -> None:
    url = conformance_url(tmp_path)
    async with connect_async(url) as jobs:
        job_id = await jobs.add({"from": "async"}, "q")
    with connect(url) as jobs:
        job = jobs.timeout(0).get("q")
        assert (job.id, job.body) == (job_id, {"from": "async"})


def test_a_blocked_get_is_woken_when_a_delay_runs_out(tmp_path: Path) -> None:
    # The poll is longer than the get's timeout: the job comes from the due-time wake-up.
    url = conformance_url(tmp_path) + "&poll_interval=60"
    with connect(url) as jobs:
        job_id = jobs.delay(0.2).add("later", "q")
        assert jobs.timeout(0).get_many("q") == []
        store = jobs.store
        assert isinstance(store, RedisStore)
        assert store.timers.armed() == [("q",)]  # armed by the empty claim
        assert jobs.timeout(30).get("q").id == job_id


def test_a_retried_claim_returns_the_jobs_it_leased(tmp_path: Path) -> None:
    # What a retry after a lost reply does: the same call, with the same receipt token.
    with connect(conformance_url(tmp_path)) as jobs:
        jobs.add_many(["a", "b", "c"], "q")
        store = jobs.store
        assert isinstance(store, RedisStore)
        keys = store.claims._claim_keys(["q"], "receipt")
        args = ["receipt", 2, "", 60, "", "q"]
        first = claimed_jobs(store.runner.run("claim", keys, args), ["q"])
        again = claimed_jobs(store.runner.run("claim", keys, args), ["q"])
        assert [job.body for job in again] == [job.body for job in first] == ["a", "b"]
        assert [job.attempts for job in again] == [1, 1]
        assert jobs.qlen("q") == 1
        jobs.ack(first[0])
        assert [job.body for job in jobs.timeout(0).get_many("q")] == ["c"]


# -- connecting, and replays of calls whose reply was lost ---------------------------------


def _stats(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "disquette", "stats", "--url", url],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_refusing_redis_fails_at_once_in_one_line(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "auth").start()
    server.client().config_set("requirepass", "sekret")
    try:
        for url, cause in [
            (f"redis://:wrong@127.0.0.1:{server.port}", "invalid username-password pair"),
            (f"redis://127.0.0.1:{server.port}", "authenticated"),
            (f"redis://:sekret@127.0.0.1:{server.port}/99", "DB index is out of range"),
        ]:
            started = time.monotonic()
            stats = _stats(url + "?retry_for=60")
            lines = stats.stderr.strip().splitlines()
            assert len(lines) == 1, stats.stderr  # the bad index was a traceback, status 1
            assert cause in lines[0]
            assert "wrong" not in lines[0]
            assert stats.returncode == EXIT_UNAVAILABLE
            assert time.monotonic() - started < 30, "a refusal was retried for retry_for"
            with pytest.raises(StoreRefused) as refused:
                connect(url + "?retry_for=60")
            assert not refused.value.retryable
    finally:
        server.stop()


def test_an_unreachable_redis_fails_after_retry_for_in_one_line() -> None:
    stats = _stats(f"redis://127.0.0.1:{free_port()}?retry_for=1")
    lines = stats.stderr.strip().splitlines()
    assert len(lines) == 1, stats.stderr
    assert lines[0].endswith("Connection refused. (retried for 1 s)"), lines[0]
    assert stats.returncode == EXIT_UNAVAILABLE


def test_error_replies_are_store_errors(tmp_path: Path) -> None:
    prefix = fresh_prefix()
    url = with_prefix(session_url(), prefix)
    _raw(url).set(f"{prefix}:queues", "not a set")
    with connect(url) as jobs, pytest.raises(StoreError, match="WRONGTYPE"):
        jobs.add("x", "q")


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_worker_started_before_its_redis_waits_for_it(tmp_path: Path, processes: str) -> None:
    server = RedisServer(tmp_path / "late")  # its port is chosen, nothing listens yet
    url = f"{server.url}?retry_for=60"
    command = ["worker", "tests.worker.apps:handlers", "--url", url, "-p", processes]
    worker = subprocess.Popen(
        [sys.executable, "-m", "disquette", *command, "--log-level", "error"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1)  # it exited with status 3 within half a second
        assert worker.poll() is None, worker.communicate()[1]
        server.start(attempts=1)
        with connect(url) as jobs:
            job_id = jobs.type("quick").add("after the start", "default")
            assert jobs.wait(job_id, timeout=60) == "after the start"
    finally:
        worker.terminate()
        worker.wait(30)
        server.stop()


@pytest.fixture
def lossy(private: RedisServer) -> Iterator[tuple[str, str, ReplyLosingProxy]]:
    """(the store URL through a proxy that can lose a reply, the direct URL, the proxy)."""
    proxy = ReplyLosingProxy(private.port, "redis")
    prefix = fresh_prefix()
    direct = with_prefix(private.url, prefix)
    yield with_prefix(f"redis://127.0.0.1:{proxy.port}", prefix), direct, proxy
    proxy.close()


def _warm_up(jobs: Any) -> None:
    """Load every script a test below uses, so that the marked call is the script itself
    (a first EVALSHA is refused with NOSCRIPT, and not carried out)."""
    jobs.add_many(["warm-up"] * 3, "warm-up")
    first, second, third = jobs.timeout(0).get_many("warm-up", count=3)
    jobs.ack(first)
    jobs.nack(second)
    jobs.fail(third, "warm-up")


def test_an_add_whose_reply_was_lost_is_not_added_again_once_its_job_is_done(
    lossy: tuple[str, str, ReplyLosingProxy],
) -> None:
    proxied, direct, proxy = lossy
    with connect(proxied) as jobs, connect(direct) as worker:
        _warm_up(jobs)

        def work_it_off() -> None:
            worker.ack(worker.timeout(10).get("q"), "result")

        proxy.lose_reply_to(b"lost reply", then=work_it_off)
        job_id = jobs.add(b"lost reply", "q")
        assert proxy.lost == 1
        assert worker.qlen("q") == 0
        assert worker.show(job_id).state is JobState.DONE
        assert worker.wait(job_id, timeout=0) == "result"


def test_acks_nacks_and_failures_run_again_after_they_committed_change_nothing_more(
    lossy: tuple[str, str, ReplyLosingProxy],
) -> None:
    proxied, _, proxy = lossy
    with connect(proxied) as jobs:
        _warm_up(jobs)
        replay_ack_nack_and_fail(jobs, proxy)


def test_release_leases_leaves_a_job_an_old_version_process_claimed_since(
    tmp_path: Path,
) -> None:
    url = conformance_url(tmp_path)
    with connect(url) as jobs:
        job_id = jobs.add("x", "q")
        assert [job.id for job in jobs.store.claim(["q"], 1, holder="A")] == [job_id]
        # A's lease ran out and a process of the previous version claimed the job: its
        # claim counts the attempt and leases again, leaving "h" as it was.
        raw = _raw(url)
        [key] = raw.keys(f"*j:{job_id}")
        raw.hincrby(key, "n", 1)
        assert jobs.release_leases("A") == 0
        job = jobs.show(job_id)
        assert (job.state, job.attempts, job.additional_deliveries) == (JobState.ACTIVE, 2, 0)
