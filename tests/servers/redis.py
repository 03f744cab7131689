"""Redis for the tests: a server named by the environment, or private ones we start.

The store under test (``conformance_url``) is, in order of preference:

1. ``$DISQUETTE_TEST_REDIS_URL`` (any Redis or Redis Cluster node; never flushed);
2. a private ``redis-server`` from PATH on a free loopback port, started once per session
   and stopped at exit.

Every call returns a URL with a fresh key prefix, so each store starts empty without
flushing anything. With neither, the tests are skipped with a loud reason, and fail under
``CI=true``. Tests that kill, restart or replicate Redis start :class:`RedisServer`
instances of their own.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, NoReturn

import pytest

_prefixes = itertools.count()
_SESSION = uuid.uuid4().hex[:8]


def unavailable(reason: str) -> NoReturn:
    """Skip (loudly) or, under ``CI=true``, fail: a CI run must not pass without Redis."""
    message = f"Redis tests cannot run: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def driver() -> Any:
    """The redis-py module, or a loud skip."""
    try:
        import redis
    except ModuleNotFoundError:
        unavailable("redis-py is not installed (pip install 'redis[hiredis]>=5')")
    return redis


class PortTaken(RuntimeError):
    """The port chosen for a server was taken before it could bind it."""


class RedisServer:
    """A private ``redis-server`` on a loopback port, in its own directory."""

    def __init__(self, directory: Path, *args: str, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not on PATH (apt-get install redis-server)")
        self.binary = binary
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.args = list(args)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>``."""
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0, attempts: int = 5) -> RedisServer:
        """Start the server and wait until it answers PING (and has loaded its data).

        A free port can be taken by another process between our choice and the server's
        bind: then the server starts again on new ports.
        """
        for attempt in range(attempts):
            try:
                return self._start_once(timeout)
            except PortTaken:
                if attempt == attempts - 1:
                    raise
                self.port = free_port()
                if "--cluster-port" in self.args:
                    index = self.args.index("--cluster-port") + 1
                    self.args[index] = str(free_port())
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> RedisServer:
        (self.directory / "redis.log").unlink(missing_ok=True)  # judge this attempt alone
        command = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
            "--logfile", str(self.directory / "redis.log"),
            *self.args,
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                stderr = self.process.stderr.read().decode() if self.process.stderr else ""
                log = self.log()
                if "Address already in use" in log:
                    raise PortTaken(self.port)
                raise RuntimeError(f"redis-server exited: {stderr}{log[-2000:]}")
            with contextlib.suppress(Exception):
                if self.client().ping():
                    return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def client(self) -> Any:
        """A redis-py client on this server (no retries)."""
        redis = driver()
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        return redis.Redis(port=self.port, socket_timeout=5, retry=Retry(NoBackoff(), 0))

    def log(self) -> str:
        """The server's log file."""
        path = self.directory / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Shut the server down (SIGTERM: it writes its AOF and exits)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL the server: no shutdown work at all."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None


CLUSTER_ARGS = (
    "--cluster-enabled", "yes",
    "--cluster-config-file", "nodes.conf",
    "--cluster-node-timeout", "5000",
)  # fmt: skip


class RedisCluster:
    """A Redis Cluster of ``masters`` private primaries on loopback ports, no replicas."""

    def __init__(self, directory: Path, masters: int = 3) -> None:
        self.servers = [
            # An explicit bus port: the default (port + 10000) overflows for high ports.
            RedisServer(directory / f"node-{n}", *CLUSTER_ARGS, "--cluster-port", str(free_port()))
            for n in range(masters)
        ]

    @property
    def url(self) -> str:
        """The URL of the first node (redis-py finds the others)."""
        return self.servers[0].url

    def start(self, timeout: float = 30.0) -> RedisCluster:
        """Start the nodes, assign the slots evenly, and wait until the cluster is up."""
        cli = shutil.which("redis-cli")
        if cli is None:
            unavailable("redis-cli is not on PATH")
        try:
            for server in self.servers:
                server.start()
        except BaseException:
            self.stop()
            raise
        nodes = [f"127.0.0.1:{server.port}" for server in self.servers]
        created = subprocess.run(
            [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if created.returncode != 0:
            self.stop()
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout}")
        deadline = time.monotonic() + timeout
        while not all(self._ready(server) for server in self.servers):
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the Redis Cluster did not become ready")
            time.sleep(0.05)
        return self

    @staticmethod
    def _ready(server: RedisServer) -> bool:
        info = server.client().execute_command("CLUSTER", "INFO").decode()
        return "cluster_state:ok" in info and "cluster_slots_assigned:16384" in info

    def stop(self) -> None:
        """Stop every node."""
        for server in self.servers:
            server.stop()


@functools.cache
def _session_url() -> str:
    configured = os.environ.get("DISQUETTE_TEST_REDIS_URL")
    if configured:
        return configured
    driver()
    directory = Path(tempfile.mkdtemp(prefix="disquette-redis-"))
    server = RedisServer(directory)
    try:
        server.start()
    except RuntimeError as exc:
        unavailable(str(exc))

    def stop() -> None:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)

    atexit.register(stop)
    return server.url


def with_prefix(url: str, prefix: str) -> str:
    """``url`` with the store's ``prefix`` option added."""
    return f"{url}{'&' if '?' in url else '?'}prefix={prefix}"


def fresh_prefix() -> str:
    """A key prefix no other store of any test session uses."""
    return f"t{_SESSION}-{os.getpid()}-{next(_prefixes)}"


def session_url() -> str:
    """The URL of the session's Redis (shared by the tests; never flushed)."""
    return _session_url()


def conformance_url(_: Path) -> str:
    """The URL of a fresh, empty Redis store (a new key prefix on the session's server)."""
    return with_prefix(_session_url(), fresh_prefix())
