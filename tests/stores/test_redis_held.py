"""The Redis store's one-by-one add (add1.lua) and the connection the sync store holds per
thread for its single commands (``stores/redis/held.py``): a connection the server closed,
a thread that ends, a fork."""

from __future__ import annotations

import gc
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from redis.exceptions import DataError, ResponseError

from disquette import JobState, connect
from disquette.errors import QueuePaused, StoreUnavailable
from disquette.job import Options
from disquette.stores.redis.held import KERNEL_TIMEOUTS
from disquette.stores.redis.scripts import SCRIPTS
from tests.servers.redis import RedisServer, fresh_prefix, session_url, with_prefix


def _url(**options: str) -> str:
    url = with_prefix(session_url(), fresh_prefix())
    return url + "".join(f"&{name}={value}" for name, value in options.items())


def test_a_connection_the_server_closed_is_replaced_without_the_retrying_path() -> None:
    # retry_for=0: the store's retrying path gives up at the first error, so the add
    # after the kill passes only because the held connection is replaced at once.
    with connect(_url(retry_for="0")) as jobs:
        jobs.add("before", "q")
        server = jobs.store.runner._conn  # type: ignore[attr-defined]
        killed = server.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        assert int(killed) >= 1
        jobs.add("after", "q")
        assert [job.body for job in jobs.peek("q", 10)] == ["before", "after"]


@pytest.mark.skipif(not KERNEL_TIMEOUTS, reason="no kernel socket timeouts here")
def test_a_held_socket_keeps_its_timeout_in_the_kernel_and_a_stalled_redis_times_out(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path / "stalled").start()
    url = with_prefix(server.url, "t") + "&socket_timeout=0.3&retry_for=0"
    try:
        with connect(url) as jobs:
            jobs.add("before", "q")
            slot = jobs.store.runner._commands._local.slot  # type: ignore[attr-defined]
            sock = slot.connection._sock
            assert sock.gettimeout() is None  # blocking: no poll before each send/receive
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16) != bytes(16)
            assert server.process is not None
            server.process.send_signal(signal.SIGSTOP)
            try:
                started = time.monotonic()
                with pytest.raises(StoreUnavailable) as stalled:
                    jobs.add("stalled", "q")
                # One receive's timeout (0.3 s): not retried at once on another connection.
                assert time.monotonic() - started < 2.5
                assert "Timeout" in str(stalled.value)
            finally:
                server.process.send_signal(signal.SIGCONT)
            jobs.add("after", "q")  # a new connection, in step
            assert jobs.qlen("q") >= 2
            # Given back usable, a connection has CPython's timeout again.
            slot = jobs.store.runner._commands._local.slot  # type: ignore[attr-defined]
            connection = slot.connection
            slot.give_back(True)
            assert connection._sock.gettimeout() == 0.3
            assert connection._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16) == bytes(
                16
            )
    finally:
        server.stop()


def test_held_commands_are_packed_as_redis_py_packs_them() -> None:
    with connect(_url()) as jobs:
        commands = jobs.store.runner._commands  # type: ignore[attr-defined]
        assert commands.execute("ECHO", 1733470000.123456789) == b"1733470000.1234567"
        assert commands.execute("ECHO", 2**70) == str(2**70).encode()
        assert commands.execute("ECHO", "é") == "é".encode()
        assert commands.execute_many([("ECHO", 1), ("ECHO", 0.1)]) == [b"1", b"0.1"]
        with pytest.raises(DataError):
            commands.execute("ECHO", True)  # redis-py refuses a bool too
        assert commands.execute("CLIENT SETNAME", "held") is True  # split as redis-py does
        assert commands.execute("CLIENT", "GETNAME") == b"held"


def test_commands_written_at_once_come_back_as_the_server_sent_them() -> None:
    # No redis-py reply callback (SET's would be True, BZPOPMIN's a tuple with a float):
    # a blocked get reads only its script's reply, and skips the parsing.
    with connect(_url()) as jobs:
        commands = jobs.store.runner._commands  # type: ignore[attr-defined]
        key = fresh_prefix() + ":z"
        string = key + "s"
        replies = commands.execute_many(
            [("SET", string, "v"), ("ZADD", key, 1.5, "m"), ("BZPOPMIN", key, 1), ("LPOP", string)]
        )
        assert replies[:2] == [b"OK", 1]
        assert isinstance(replies[2], list)  # redis-py makes a tuple of it
        assert replies[2][:2] == [key.encode(), b"m"]
        assert isinstance(replies[3], ResponseError)  # WRONGTYPE: in the list, not raised


def test_a_thread_that_ends_gives_its_connection_back() -> None:
    with connect(_url()) as jobs:
        pool = jobs.store.runner._conn.connection_pool  # type: ignore[attr-defined]

        def add() -> None:
            jobs.add("from a thread", "q")

        for _ in range(5):
            thread = threading.Thread(target=add)
            thread.start()
            thread.join()
        gc.collect()
        assert len(pool._in_use_connections) == 0  # each went back when its thread ended
        assert len(pool._available_connections) <= 2  # and the next thread took it again
        assert jobs.qlen("q") == 5


def test_a_child_of_a_fork_takes_a_connection_of_its_own() -> None:
    with connect(_url()) as jobs:
        jobs.add("parent", "q")
        held = jobs.store.runner._commands._local.slot.connection  # type: ignore[attr-defined]
        pid = os.fork()
        if pid == 0:  # the child: its add must not use the parent's socket
            status = 1
            try:
                jobs.add("child", "q")
                mine = jobs.store.runner._commands._local.slot.connection  # type: ignore[attr-defined]
                status = 0 if mine is not held else 2
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        jobs.add("parent again", "q")  # the parent's connection is still in step
        assert sorted(job.body for job in jobs.peek("q", 10)) == ["child", "parent", "parent again"]


def test_the_one_job_add_is_add1_and_keeps_the_add_semantics() -> None:
    with connect(_url()) as jobs:
        server = jobs.store.runner._conn  # type: ignore[attr-defined]
        server.execute_command("CONFIG", "RESETSTAT")
        first = jobs.add("plain", "q")
        typed = jobs.with_options(Options(type="mail")).add("typed", "q")
        later = jobs.delay(60).add("later", "q")
        stats = server.execute_command("INFO", "commandstats")
        assert stats["cmdstat_evalsha"]["calls"] >= 3
        sha = SCRIPTS["add1"].sha
        assert server.execute_command("SCRIPT", "EXISTS", sha) == [1]
        assert jobs.show(typed).type == "mail"
        assert jobs.show(later).state is JobState.SCHEDULED
        assert [job.id for job in jobs.peek("q", 10)] == [first, typed]
        # A replay of a stored id adds nothing (the retrying path may send an add twice).
        job = jobs.store.show(first)
        assert job is not None
        assert jobs.store.add([job], None) == {}
        assert jobs.qlen("q") == 2


def test_the_one_job_add_keeps_the_marker_and_the_pause_bits_as_add_does() -> None:
    # add1.lua reads the job, the pause bits and the marker with one EXISTS (weights 4, 2
    # and 1) and writes the marker only when it changes: each combination here.
    with connect(_url()) as jobs:
        server = jobs.store.runner._conn  # type: ignore[attr-defined]
        marker = jobs.store.runner.queue_key("q", "w")  # type: ignore[attr-defined]
        first = jobs.add("first", "q")
        assert server.zrange(marker, 0, -1) == [b"0"]  # the ready set filled: marked
        jobs.add("second", "q")  # marked already: left as it is
        assert server.zrange(marker, 0, -1) == [b"0"]
        jobs.set_pause("q", "out")
        assert not server.exists(marker)
        jobs.add("held back", "q")  # paused for output: queued, not marked
        assert not server.exists(marker)
        server.zadd(marker, {"0": 0})  # a marker left over while paused goes at the next add
        jobs.add("held back too", "q")
        assert not server.exists(marker)
        jobs.set_pause("q", "none")
        assert server.exists(marker)
        job = jobs.store.show(first)
        assert job is not None
        jobs.set_pause("q", "out")
        assert jobs.store.add([job], None) == {}  # a replay, the bits set: nothing added
        jobs.set_pause("q", "in")
        with pytest.raises(QueuePaused):  # paused for input wins over the replay
            jobs.store.add([job], None)
        jobs.set_pause("q", "none")
        assert jobs.qlen("q") == 4
        prefix = jobs.store.runner.prefix  # type: ignore[attr-defined]
        replies = [
            server.evalsha(SCRIPTS["add1"].sha, 1, marker[:-1] + "r", *argv)
            for argv in (
                [prefix, "", 1.0, "q", first, b"", "", 0.0],  # stored: a replay
                [prefix, "", 1.0, "q", "D-new", b"", "", 0.0],
                [prefix, "", 1.0, "q", "D-due-now", b""],  # no type, run_at: NOW
            )
        ]
        assert replies == [0, 1, 1]  # an integer: the reply the client parses fastest
        assert server.hget(jobs.store.runner.job_key("D-due-now", None), "r") == b"1.0"  # type: ignore[attr-defined]


def test_threads_sharing_a_store_each_use_their_own_connection() -> None:
    with connect(_url()) as jobs:
        commands = jobs.store.runner._commands  # type: ignore[attr-defined]
        seen: list[object] = []
        errors: list[BaseException] = []
        # No thread ends (giving its connection back) before all noted theirs.
        together = threading.Barrier(6)

        def add_many_one_by_one() -> None:
            try:
                for n in range(200):
                    jobs.add(n, "q")
                seen.append(commands._local.slot.connection)
            except BaseException as error:  # reported by the assert below
                errors.append(error)
            together.wait()

        threads = [threading.Thread(target=add_many_one_by_one) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len({id(connection) for connection in seen}) == 6  # none shared
        assert jobs.qlen("q") == 1200
