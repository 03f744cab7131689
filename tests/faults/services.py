"""Store servers on test hosts: ``redis-server`` (plain or Sentinel) and PostgreSQL
clusters, each listening on its host's address (and its loopback), started in the host's
namespace and stopped by the network's teardown."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.servers import postgres

from .hosts import Host, agent, unavailable, wait_for

REDIS_PORT = 6379
SENTINEL_PORT = 26379
PG_PORT = 5432


def redis_binary() -> str:
    """``redis-server``, or a loud skip (a failure under CI)."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not on PATH (apt-get install redis-server)")
    return binary


def start_redis(host: Host, directory: Path, *args: str) -> subprocess.Popen[Any]:
    """A throw-away Redis (no persistence) on ``host``; waits until it answers."""
    directory.mkdir(parents=True, exist_ok=True)
    process = host.popen(
        [redis_binary(), "--bind", host.address, "127.0.0.1", "--port", str(REDIS_PORT),
         "--protected-mode", "no", "--save", "", "--appendonly", "no",
         "--dir", str(directory), *args],
        log=directory / "redis.log",
    )  # fmt: skip
    wait_for(lambda: redis_answers(host, REDIS_PORT), 30, f"Redis on {host.name}")
    return process


def redis_answers(host: Host, port: int) -> bool:
    """Whether the Redis (or Sentinel) on ``host`` answers PING on its loopback."""
    done = host.run(["redis-cli", "-p", str(port), "ping"], check=False, timeout=10)
    return done.stdout.strip() == "PONG"


def start_sentinel(
    host: Host, directory: Path, primary: Host, service: str, quorum: int = 2
) -> subprocess.Popen[Any]:
    """A Sentinel on ``host`` watching the Redis on ``primary`` as ``service``."""
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "sentinel.conf"
    conf.write_text(
        f"bind {host.address} 127.0.0.1\nport {SENTINEL_PORT}\nprotected-mode no\n"
        f"dir {directory}\n"
        f"sentinel monitor {service} {primary.address} {REDIS_PORT} {quorum}\n"
        # Not lower: on a busy machine a live server that answers late would be failed over.
        f"sentinel down-after-milliseconds {service} 3000\n"
        f"sentinel failover-timeout {service} 10000\n"
        f"sentinel parallel-syncs {service} 1\n"
    )
    process = host.popen([redis_binary(), str(conf), "--sentinel"], log=directory / "sentinel.log")
    wait_for(lambda: redis_answers(host, SENTINEL_PORT), 30, f"Sentinel on {host.name}")
    return process


class PostgresHost:
    """A PostgreSQL cluster of our own on a host, reachable at ``host.address:5432``."""

    def __init__(self, host: Host) -> None:
        bin_dir = postgres.binaries()
        if bin_dir is None:
            unavailable("no PostgreSQL binaries (initdb, pg_ctl) on PATH or /usr/lib/postgresql")
        self.bin = bin_dir
        self.host = host
        # Not under pytest's temporary directory: the postgres user cannot enter it.
        directory = Path(tempfile.mkdtemp(prefix="disquette-faults-pg-"))
        self.directory = directory
        self.data = directory / "data"
        self.user = "postgres"
        shutil.chown(directory, self.user)
        directory.chmod(0o700)

    def tool(self, name: str, *args: str, check: bool = True) -> str:
        """Run a PostgreSQL tool on the host, as the ``postgres`` user."""
        done = self.host.run(
            [str(self.bin / name), *args], user=self.user, check=False, cwd=self.directory
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{name} {' '.join(args)}: {done.stderr or done.stdout}")
        return done.stdout

    def settings(self, extra: dict[str, str]) -> None:
        """Append settings to ``postgresql.conf``."""
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("".join(f"{name} = {value}\n" for name, value in extra.items()))

    def initdb(self, extra: dict[str, str]) -> None:
        """Make the cluster: trust from the test network, streaming replication on."""
        self.tool("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync", "--no-instructions")  # fmt: skip
        with (self.data / "pg_hba.conf").open("a") as hba:
            net = self.host.network.prefix
            hba.write(f"host all all {net}.0/24 trust\nhost replication all {net}.0/24 trust\n")
        self.settings(self.base_settings() | extra)

    def base_settings(self) -> dict[str, str]:
        """Where it listens, and replication on."""
        return {
            "listen_addresses": f"'{self.host.address},127.0.0.1'",
            "port": str(PG_PORT),
            "unix_socket_directories": f"'{self.directory}'",
            "fsync": "off",
            "max_connections": "100",
            "wal_level": "replica",
            "max_wal_senders": "5",
            "hot_standby": "on",
            "wal_sender_timeout": "5s",
            "wal_receiver_timeout": "5s",
        }

    def standby_of(self, primary: PostgresHost, application_name: str) -> None:
        """Fill this (empty) cluster with a streaming copy of ``primary``."""
        self.tool("pg_basebackup", "-h", primary.host.address, "-p", str(PG_PORT),
                  "-U", "postgres", "-D", str(self.data), "-R", "-X", "stream", "--no-sync",
                  "-c", "fast",
                  "-d", f"application_name={application_name}")  # fmt: skip
        self.settings(self.base_settings())

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self.tool("pg_ctl", "-D", str(self.data), "-l", str(self.directory / "pg.log"),
                  "-w", "-t", "60", "start")  # fmt: skip

    def kill(self) -> None:
        """Stop it as a crash would (``immediate``: no checkpoint, clients cut)."""
        self.tool("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)

    def promote(self) -> None:
        """Turn a standby into a primary."""
        self.tool("pg_ctl", "-D", str(self.data), "-w", "promote")

    def sql(self, statement: str) -> str:
        """Run one statement with psql on the host's loopback; its unaligned output."""
        return self.tool(
            "psql", "-h", "127.0.0.1", "-p", str(PG_PORT), "-U", "postgres",
            "-XAtc", statement,
        )  # fmt: skip

    def destroy(self) -> None:
        """Stop it if it runs, remove its files (teardown)."""
        if self.data.exists():
            self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def single_store(kind: str, host: Host, directory: Path) -> Iterator[str]:
    """A store server (``redis`` or ``postgres``) on ``host``; yields a fresh store's URL,
    as reached from the other hosts."""
    name = f"f{uuid.uuid4().hex[:6]}"
    if kind == "redis":
        start_redis(host, directory)
        yield f"redis://{host.address}:{REDIS_PORT}/0?prefix={name}&retry_for=60"
        return
    cluster = PostgresHost(host)
    try:
        cluster.initdb({})
        cluster.start()
        url = f"postgresql://postgres@{host.address}:{PG_PORT}/postgres?schema={name}"
        look(host, url)  # the schema, made once before workers race to make it
        yield url + "&retry_for=60"
    finally:
        cluster.destroy()


def look(host: Host, url: str, ids: Path | None = None) -> dict[str, Any]:
    """The store's job counts (and the given jobs' states), seen from ``host``."""
    args = ["look", url] + (["--ids", str(ids)] if ids else [])
    done = host.run(agent(*args), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"look failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def runs(files: list[Path]) -> Counter[str]:
    """How many times each job's handler ran, over the workers' run logs."""
    counts: Counter[str] = Counter()
    for file in files:
        if file.exists():
            counts.update(line.split()[0] for line in file.read_text().splitlines() if line)
    return counts


def lines(file: Path) -> list[str]:
    """The non-empty lines of a file (none when it does not exist yet)."""
    return [line for line in file.read_text().splitlines() if line] if file.exists() else []


def acked(file: Path) -> dict[str, float]:
    """The producer's acknowledged adds: job id -> when its ``add`` returned."""
    return {line.split()[0]: float(line.split()[1]) for line in lines(file)}


def refused(file: Path) -> int:
    """How many jobs the producer's refused adds held (``add`` raised for them)."""
    return sum(int(line.split()[2]) for line in lines(file))
