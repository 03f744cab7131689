"""Worker processes: :class:`Supervisor` runs and restarts them, and gives back the leases
of those that die."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from ..client import Client
from ..client_async import ENV_HOLDER, AsyncClient
from ..errors import InvalidOption
from ..stores.types import Capabilities
from .config import DEFAULT_GRACE, ENV_SUPERVISOR_PID, EXIT_REPLACE, check_count, open_client

logger: Final = logging.getLogger("disquette.worker")


class Supervisor:
    """Runs ``processes`` copies of a worker command and restarts any that dies.

    SIGTERM/SIGINT are passed on to the children as SIGTERM (a second signal is passed on
    too, so the children give their running jobs back). Children run in their own
    session, so a terminal's Ctrl-C reaches them once, through us; each child watches our
    pid (``$DISQUETTE_SUPERVISOR_PID``) and stops if we die. A child that exits with 2
    (a usage or import error) stops everything; one that dies fast again and again is
    restarted with a growing delay.

    Each child gets its own lease holder (``$DISQUETTE_HOLDER``, unique per spawn). With
    ``client`` (a store URL, a client factory, or a sync :class:`~disquette.Client`), the
    jobs a child held when it ended (killed, crashed, or stopped past its grace) are given
    back at once through :meth:`~disquette.AsyncClient.release_leases`, on a thread of
    their own, instead of waiting for their leases (``retry_after``, 300 s by default) to
    run out.
    """

    def __init__(
        self,
        command: Sequence[str],
        processes: int,
        *,
        env: Mapping[str, str] | None = None,
        restart_delay: float = 0.2,
        max_restart_delay: float = 10.0,
        client: Client | Callable[[], AsyncClient] | str | None = None,
    ) -> None:
        if isinstance(client, AsyncClient):
            # Each release runs in an event loop of its own: a factory makes its client.
            raise InvalidOption("client", client, "a URL, a client factory or a sync Client")
        self.command = list(command)
        self.processes = check_count("processes", processes, 1)
        self.env = dict(os.environ if env is None else env)
        self.restart_delay = restart_delay
        self.max_restart_delay = max_restart_delay
        self.client = client
        #: Restarts so far (children that died while we were not stopping).
        self.restarts = 0
        self._signals = 0
        self._forwarded = 0
        self._children: list[subprocess.Popen[bytes] | None] = []
        #: Per child slot: when it started, how many times in a row it died young, and when
        #: its replacement is due (None: running, or not to be restarted).
        self._started: list[float] = []
        self._fast_failures: list[int] = []
        self._restart_at: list[float | None] = []
        #: The first signal received (what stopped the supervisor), if one did.
        self.stop_signal: signal.Signals | None = None
        #: The lease holder of each live child, by pid.
        self._holders: dict[int, str] = {}
        self._spawned = 0
        # host:pid is not unique: supervisors in containers are often pid 1 on hosts that
        # share a name, and one supervisor releasing another's holder would run its jobs
        # twice. A random token per supervisor makes each holder id its own.
        self._holder_prefix = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(6)}"
        self._releases: list[threading.Thread] = []

    @property
    def pids(self) -> list[int]:
        """The pids of the running children."""
        return [child.pid for child in self._children if child is not None]

    def _spawn(self) -> subprocess.Popen[bytes]:
        self._spawned += 1
        # Unique per spawn, so that a restarted child (or a reused pid) is another holder.
        holder = f"{self._holder_prefix}:{self._spawned}"
        env = {**self.env, ENV_SUPERVISOR_PID: str(os.getpid()), ENV_HOLDER: holder}
        child = subprocess.Popen(self.command, env=env, start_new_session=True)
        self._holders[child.pid] = holder
        return child

    def _ended(self, child: subprocess.Popen[bytes]) -> None:
        """A child is gone: give its leases back (on a thread: we keep supervising)."""
        holder = self._holders.pop(child.pid, None)
        if holder is None or self.client is None:
            return
        self._releases = [thread for thread in self._releases if thread.is_alive()]
        thread = threading.Thread(
            target=self._release, args=(holder, child.pid), name="disquette-release"
        )
        thread.daemon = True
        thread.start()
        self._releases.append(thread)

    def _release(self, holder: str, pid: int) -> None:
        source = self.client
        assert source is not None
        try:
            if isinstance(source, Client):
                released = _release_sync(source, holder)
            else:
                released = asyncio.run(_release_leases(source, holder))
        except Exception as exc:
            logger.warning(
                "cannot give back the jobs of worker process %d (%s): they are delivered "
                "again when their leases run out",
                pid,
                exc,
            )
        else:
            if released is None:
                reason = Capabilities.reason("lease_holders")
                logger.info("the jobs of worker process %d wait for their leases: %s", pid, reason)
            elif released:
                logger.warning("gave back %d job(s) of worker process %d", released, pid)

    def _on_signal(self, signum: int, frame: object) -> None:
        # Only count here: the loop logs and forwards (logging in a handler can deadlock).
        self._signals += 1
        if self.stop_signal is None:
            self.stop_signal = signal.Signals(signum)

    def run(self) -> int:
        """Supervise until stopped by a signal; return the exit status."""
        previous = {
            signum: signal.signal(signum, self._on_signal)
            for signum in (signal.SIGTERM, signal.SIGINT)
        }
        status = 0
        try:
            status = self._supervise()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._terminate_all()
        return status

    def _supervise(self) -> int:
        self._children = [self._spawn() for _ in range(self.processes)]
        self._started = [time.monotonic()] * self.processes
        self._fast_failures = [0] * self.processes
        self._restart_at = [None] * self.processes
        logger.info("supervisor started %d worker processes: %s", self.processes, self.pids)
        while True:
            self._forward_signals()
            stopping = self._signals > 0
            now = time.monotonic()
            for index, child in enumerate(self._children):
                if child is None:
                    if not stopping:
                        self._restart_if_due(index, now)
                    continue
                status = child.poll()
                if status is None:
                    continue
                self._children[index] = None
                self._ended(child)
                if stopping:
                    left = sum(1 for other in self._children if other is not None)
                    logger.info("worker process %d exited (%d still running)", child.pid, left)
                elif status == 2:
                    logger.error("worker process %d exited with a usage error: stopping", child.pid)
                    self._signals += 1
                    return 2
                else:
                    self._schedule_restart(index, child.pid, status, now)
            if stopping and all(child is None for child in self._children):
                logger.info("supervisor stopped: every worker process exited")
                return 0
            time.sleep(0.05)

    def _forward_signals(self) -> None:
        """Pass each stop signal received since the last pass to the running children."""
        while self._forwarded < self._signals:
            self._forwarded += 1
            self._log_stop(self._forwarded)
            for child in self._children:
                if child is not None and child.poll() is None:
                    child.send_signal(signal.SIGTERM)

    def _restart_if_due(self, index: int, now: float) -> None:
        when = self._restart_at[index]
        if when is not None and now >= when:
            self._children[index] = self._spawn()
            self._started[index] = now
            self._restart_at[index] = None

    def _schedule_restart(self, index: int, pid: int, status: int, now: float) -> None:
        """A child ended on its own: restart it, backing off while it keeps dying young."""
        lived = now - self._started[index]
        failures = self._fast_failures[index] + 1 if lived < 2.0 else 0
        self._fast_failures[index] = failures
        delay = 0.0 if status == EXIT_REPLACE else self.restart_delay
        if failures:
            delay = min(self.max_restart_delay, self.restart_delay * 2**failures)
        self.restarts += 1
        how = f"was killed by signal {-status}" if status < 0 else f"exited with {status}"
        logger.warning("worker process %d %s; restarting in %.1fs", pid, how, delay)
        self._restart_at[index] = now + delay

    def _log_stop(self, count: int) -> None:
        running = sum(1 for child in self._children if child is not None and child.poll() is None)
        if count == 1:
            name = self.stop_signal.name if self.stop_signal is not None else "a stop"
            logger.info(
                "supervisor received %s: stopping %d worker process(es); they finish their "
                "running jobs (a second signal gives them back)",
                name,
                running,
            )
        else:
            logger.warning(
                "supervisor: stopping %d worker process(es) now; running jobs are given back",
                running,
            )

    def _terminate_all(self) -> None:
        for child in self._children:
            if child is not None and child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self._children:
            if child is not None:
                try:
                    child.wait(DEFAULT_GRACE + 5)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
                self._ended(child)
        for thread in self._releases:
            thread.join(DEFAULT_GRACE)
        self._releases.clear()


def _release_sync(client: Client, holder: str) -> int | None:
    """Release ``holder``'s leases; None when the store records no lease holders."""
    if not client.store.capabilities.lease_holders:
        return None
    return client.release_leases(holder)


async def _release_leases(source: Callable[[], AsyncClient] | str, holder: str) -> int | None:
    """Release ``holder``'s leases through a client opened (and closed) for the purpose;
    None when the store records no lease holders."""
    client, _ = open_client(source)
    try:
        if not client.store.capabilities.lease_holders:
            return None
        return await client.release_leases(holder)
    finally:
        await client.close()


def worker_command(arguments: Sequence[str]) -> list[str]:
    """The command line of a child worker process: ``python -m disquette <arguments>``."""
    return [sys.executable, "-m", "disquette", *arguments]
