"""PostgreSQL for the tests: a server that is already there, or a private cluster we start.

Order of preference for the store under test (``conformance_url``):

1. ``$DISQUETTE_TEST_POSTGRES_URL`` (any database the user may create databases on);
2. the server at 127.0.0.1:5432, user ``postgres`` (trust auth), if one answers;
3. a private cluster made with ``initdb`` and started with ``pg_ctl`` on a free loopback
   port, from the binaries on PATH or under ``/usr/lib/postgresql/*/bin``, stopped at exit.

Each test session works in a database of its own (dropped at exit) and each store in a fresh
schema. With none of the three, the tests are skipped with a loud reason, and fail under
``CI=true``. Tests that kill or restart PostgreSQL always use a :class:`PrivateCluster`.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any, NoReturn

import pytest

SHARED_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
_schemas = itertools.count()


def unavailable(reason: str) -> NoReturn:
    """Skip (loudly) or, under ``CI=true``, fail: a CI run must not pass without the store."""
    message = f"PostgreSQL tests cannot run: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _driver() -> Any:
    try:
        import psycopg
        import psycopg_pool  # noqa: F401  (the store needs it too)
    except ModuleNotFoundError as exc:
        unavailable(f"{exc.name} is not installed (pip install 'psycopg[binary]' psycopg_pool)")
    return psycopg


def reachable(url: str) -> bool:
    """Whether a PostgreSQL server answers at ``url``."""
    psycopg = _driver()
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error:
        return False
    return True


def with_database(url: str, database: str) -> str:
    """``url`` pointing at another database."""
    head, _, tail = url.partition("://")
    hostpart, _, rest = tail.partition("/")
    query = rest.partition("?")[2]
    return f"{head}://{hostpart}/{database}" + (f"?{query}" if query else "")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def binaries() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``pg_basebackup``, if any."""
    found = shutil.which("pg_ctl")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for directory in candidates:
        if all((directory / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return directory
    return None


class PrivateCluster:
    """A PostgreSQL cluster of our own, on a free loopback port, in a temporary directory.

    PostgreSQL refuses to run as root: when the tests are root, the cluster runs as the
    ``postgres`` system user (or ``nobody``).
    """

    def __init__(self, bin_dir: Path, directory: Path, port: int, user: str | None) -> None:
        self.bin_dir = bin_dir
        self.directory = directory
        self.data = directory / "data"
        self.port = port
        self.user = user
        self.log = directory / "postgres.log"
        atexit.register(self.destroy)

    @classmethod
    def create(
        cls, settings: dict[str, str] | None = None, *, initialize: bool = True
    ) -> PrivateCluster:
        """Make (``initdb``) a cluster; skip (or fail under CI) when the binaries are absent."""
        bin_dir = binaries()
        if bin_dir is None:
            unavailable("no PostgreSQL binaries (initdb, pg_ctl) on PATH or /usr/lib/postgresql")
        user = None
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres").pw_name
            except KeyError:
                user = "nobody"
        directory = Path(tempfile.mkdtemp(prefix="disquette-pg-"))
        cluster = cls(bin_dir, directory, free_port(), user)
        if user is not None:
            shutil.chown(directory, user)
            directory.chmod(0o700)
        if initialize:
            cluster._run(
                "initdb", "-D", str(cluster.data), "-U", "postgres", "--auth=trust",
                "-E", "UTF8", "--no-sync", "--no-instructions",
            )  # fmt: skip
            cluster.configure(
                {
                    "listen_addresses": "'127.0.0.1'",
                    "unix_socket_directories": f"'{directory}'",
                    "fsync": "off",
                    "full_page_writes": "off",
                    "max_connections": "200",
                    "wal_level": "replica",
                    "max_wal_senders": "5",
                    **(settings or {}),
                }
            )
        return cluster

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / tool), *args],
            user=self.user,
            capture_output=True,
            text=True,
            check=check,
            cwd=self.directory,
            timeout=120,
        )

    def configure(self, settings: dict[str, str]) -> None:
        """Append settings to ``postgresql.conf`` (effective at the next start or reload)."""
        lines = "".join(f"{name} = {value}\n" for name, value in settings.items())
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(lines)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
            "-o", f"-p {self.port}", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: disconnect clients; ``immediate``: like a crash)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self, mode: str = "fast") -> None:
        """Stop then start."""
        self.stop(mode)
        self.start()

    def reload(self) -> None:
        """Re-read ``postgresql.conf``."""
        self._run("pg_ctl", "-D", str(self.data), "reload")

    def url(self, database: str = "postgres") -> str:
        """The URL of a database of this cluster."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def base_backup_into(self, standby: PrivateCluster, application_name: str) -> None:
        """Fill ``standby`` (made with ``initialize=False``) with a streaming copy of this
        cluster, configured to follow it under ``application_name``."""
        self._run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
            "-D", str(standby.data), "-R", "-X", "stream", "--no-sync",
            "-d", f"application_name={application_name}",
        )  # fmt: skip
        standby.configure(
            {
                "port": str(standby.port),
                "unix_socket_directories": f"'{standby.directory}'",
            }
        )

    def destroy(self) -> None:
        """Stop the server (if running) and remove its files."""
        if self.data.exists():
            self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


@functools.cache
def _server() -> tuple[str | None, str]:
    """(admin URL of the server the tests use, or None; why not, when None)."""
    env = os.environ.get("DISQUETTE_TEST_POSTGRES_URL")
    if env:
        if reachable(env):
            return env, ""
        return None, f"$DISQUETTE_TEST_POSTGRES_URL={env} does not answer"
    if reachable(SHARED_URL):
        return SHARED_URL, ""
    if binaries() is None:
        return None, "no server at 127.0.0.1:5432 and no initdb/pg_ctl to start one"
    cluster = PrivateCluster.create()
    cluster.start()
    return cluster.url(), ""


@functools.cache
def session_database_url() -> str:
    """A database created for this test session (dropped at exit) on the server in use."""
    admin, why = _server()
    if admin is None:
        unavailable(why)
    psycopg = _driver()
    name = f"disquette_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(admin, autocommit=True) as conn,
        ):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    atexit.register(drop)
    return with_database(admin, name)


def fresh_url(tmp_path: Path | None = None, **parameters: str) -> str:
    """The URL of a new, empty store: a schema no one used, in the session's database."""
    schema = f"t{next(_schemas)}_{uuid.uuid4().hex[:6]}"
    query = "&".join(f"{k}={v}" for k, v in {"schema": schema, **parameters}.items())
    base = session_database_url()
    return f"{base}{'&' if '?' in base else '?'}{query}"


def split_url(url: str) -> tuple[str, str]:
    """(libpq URL, schema) of a store URL made by :func:`fresh_url`."""
    base, _, query = url.partition("?")
    params = dict(pair.split("=", 1) for pair in query.split("&"))
    return base, params["schema"]


def conformance_url(tmp_path: Path) -> str:
    """The URL of a fresh, empty PostgreSQL store (used by tests/conformance)."""
    return fresh_url(tmp_path)
