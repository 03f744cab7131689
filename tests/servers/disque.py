"""Our Disque-protocol server for the tests of the ``disque://`` store.

``conformance_url`` returns the URL of one ``disquette server`` process (over a
``memory://`` store) started once per test session on a free loopback port, flushed
(``DEBUG FLUSHALL``) before each test so that every test starts empty. Tests that kill a
node or need a password start :class:`DisqueServer` instances of their own.

Where Disque defines a semantic differently from disquette, the conformance test is marked
``xfail(strict=True)`` with the Disque semantic as its reason (see ``KNOWN_DIFFERENCES``),
so a test that starts passing is noticed.
"""

from __future__ import annotations

import atexit
import functools
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

_SERVER_CLOCK: Final = (
    "the Disque server runs on its own clock: the test's ManualClock.advance() cannot move it"
)
_ACKED_IS_GONE: Final = (
    "Disque keeps no done state and no result: ACKJOB deletes the job at once (SHOW answers "
    "null), so a done job is not found"
)
#: Conformance tests whose semantics Disque defines differently, and why: the conformance
#: conftest marks them ``xfail(strict=True)`` for this store.
KNOWN_DIFFERENCES: Final = {
    "test_adding_ids_the_store_holds_adds_nothing": (
        "Disque assigns job ids: every ADDJOB makes a new job (so an ADDJOB sent again on "
        "failover, its reply lost, adds the job twice: at-least-once); and ACKJOB deletes"
    ),
    "test_ack_many_keeps_each_jobs_result": (
        "Disque keeps no results and no done state: ACKJOB deletes the job, so wait() "
        "raises JobNotFound"
    ),
    "test_get_many_fills_from_queues_left_to_right": (
        "Disque's GETJOB takes one job per queue per pass (a1, b1, a2), where disquette "
        "fills COUNT from the leftmost queue first"
    ),
    "test_bodies_round_trip_and_ack_result_is_waited": (
        "Disque keeps no results and no done state: ACKJOB deletes the job, so wait() and "
        "show() after ack raise JobNotFound"
    ),
    "test_inside_a_queue_priority_then_run_at_then_enqueue_order": (
        "Disque has no priorities (creation order only); " + _SERVER_CLOCK
    ),
    "test_delay_keeps_a_job_scheduled_until_due": _SERVER_CLOCK,
    "test_ttl_deletes_a_job_that_is_not_done": _SERVER_CLOCK,
    "test_lease_expiry_redelivers_and_counts": _SERVER_CLOCK,
    "test_working_extends_the_lease": _SERVER_CLOCK,
    "test_retry_after_zero_is_never_redelivered": _SERVER_CLOCK,
    "test_recover_stale_requeues_lapsed_leases": (
        "Disque requeues lapsed jobs itself (RETRY), a client cannot; " + _SERVER_CLOCK
    ),
    "test_fail_backs_off_then_keeps_the_job_failed": (
        "Disque keeps no error count, no backoff and no failed state (a job's body cannot "
        "change): a failed job is redelivered after its RETRY"
    ),
    "test_nack_redelivers_at_once_in_its_old_place": _ACKED_IS_GONE,
    "test_scan_walks_every_job_by_pages": _ACKED_IS_GONE + " (JSCAN never returns it)",
    "test_sync_wait_returns_when_another_thread_acks": _ACKED_IS_GONE,
    "test_wait_times_out_and_done_jobs_are_pruned": (
        "Disque keeps no results: ACKJOB deletes the job, so wait() raises JobNotFound"
    ),
    "test_stats_per_queue_and_type": (
        "Disque has no done or failed state and no run_at in our clock; " + _SERVER_CLOCK
    ),
    "test_enqueue_and_dequeue_move_jobs_like_disque": _SERVER_CLOCK,
    "test_node_registry_expires_nodes_that_stop_renewing": (
        "Disque nodes register themselves in the cluster (HELLO): a client cannot register "
        "or expire nodes"
    ),
    "test_a_late_call_of_an_older_delivery_raises_lease_lost_and_changes_nothing": (
        "Disque's ACKJOB, NACK and WORKING act by id, whatever delivery holds the job; "
        + _SERVER_CLOCK
    ),
    "test_batches_apply_to_their_other_jobs_and_list_the_lost_ones": (
        "Disque's ACKJOB and NACK act by id, whatever delivery holds the job; " + _SERVER_CLOCK
    ),
    "test_a_bare_id_acts_on_whatever_delivery_holds_the_job": _SERVER_CLOCK,
    "test_a_lapsed_lease_nobody_took_still_belongs_to_its_delivery": (
        "Disque keeps no done state (ACKJOB deletes the job), no error count and no failed "
        "state; " + _SERVER_CLOCK + " (the lease never runs out, the job is not requeued)"
    ),
    "test_a_dequeue_ends_the_hold_of_a_lapsed_lease": _SERVER_CLOCK,
    "test_release_leases_gives_a_dead_holders_jobs_back_at_once": (
        "a Disque server records no lease holders (NotSupported): it requeues a dead "
        "consumer's jobs after their RETRY"
    ),
    "test_store_agrees_with_reference_model": (
        "the reference model advances a ManualClock and tracks results, error counts and "
        "failed jobs, which Disque does not keep; " + _SERVER_CLOCK
    ),
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def command(port: int, *args: str, password: str | None = None) -> Any:
    """Send one command to a server and return its reply as hiredis parses it (error
    replies are raised)."""
    import hiredis

    frames: list[tuple[str, ...]] = [] if password is None else [("AUTH", password)]
    frames.append(args)
    payload = b"".join(
        b"*%d\r\n" % len(frame) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a.encode()) for a in frame)
        for frame in frames
    )
    reader = hiredis.Reader()
    replies: list[object] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        while len(replies) < len(frames):
            reply = reader.gets()
            if reply is False:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("server closed the connection")
                reader.feed(data)
                continue
            replies.append(reply)
    last = replies[-1]
    if isinstance(last, Exception):
        raise last
    return last


class DisqueServer:
    """A ``disquette server`` subprocess on a free loopback port."""

    def __init__(self, store_url: str, *, password: str | None = None, port: int = 0) -> None:
        self.store_url = store_url
        self.password = password
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``disque://[:password@]127.0.0.1:<port>``."""
        auth = f":{self.password}@" if self.password else ""
        return f"disque://{auth}{self.address}"

    def start(self, timeout: float = 30.0) -> DisqueServer:
        """Start the process and wait until it answers PING."""
        args = [sys.executable, "-m", "disquette", "server", "--port", str(self.port)]
        args += ["--url", self.store_url]
        if self.password:
            args += ["--requirepass", self.password]
        env = {**os.environ, "DISQUETTE_REQUIREPASS": ""}
        self.process = subprocess.Popen(
            args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                command(self.port, "PING", password=self.password)
                return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"disquette server on {self.port} did not start") from None
                time.sleep(0.02)

    def kill(self) -> None:
        """kill -9 the server."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


@functools.cache
def session_server() -> DisqueServer:
    """One server over a memory store, for the whole test session."""
    server = DisqueServer("memory://").start()
    atexit.register(server.stop)
    return server


def conformance_url(_: Path) -> str:
    """The URL of an empty ``disque://`` store (the session server, flushed)."""
    server = session_server()
    command(server.port, "DEBUG", "FLUSHALL")
    return server.url
