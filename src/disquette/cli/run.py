"""Commands that run something: ``worker``, ``server``, ``demo``."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import click
from rich.console import Console

from .. import errors
from ..client import Client, connect
from ..client_async import AsyncClient, connect_async
from ..defaults import RESULT_TTL
from ..demo import show_demo
from ..metrics import ENV_METRICS, MULTIPROC_DIR
from ..stores import resolve_url
from ..worker import (
    ENV_CONCURRENCY,
    ENV_QUEUES,
    ENV_SUPERVISOR_PID,
    EXIT_REPLACE,
    Handlers,
    Supervisor,
    Worker,
    as_registry,
    worker_command,
)
from ..worker.fairness import check_order, parse_queue_spec
from .common import (
    _TRACEBACK_KEY,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    AppImportError,
    CliError,
    _errors_as_exit,
    _url_option,
)


def load_app(path: str) -> Handlers:
    """Import ``module:attribute`` (or ``module``, whose ``app`` is used): an App, a
    Registry, or a mapping of job types to handlers. Raises :class:`AppImportError`."""
    module_name, _, attribute = path.partition(":")
    if not module_name:
        raise AppImportError(f"APP {path!r} is not module:attribute")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise AppImportError(
                f"cannot import {module_name!r}: no module named {exc.name!r}"
            ) from None
        raise AppImportError(f"error importing {module_name!r}: {exc}", exc) from None
    except Exception as exc:
        raise AppImportError(
            f"error importing {module_name!r}: {type(exc).__name__}: {exc}", exc
        ) from None
    name = attribute or "app"
    try:
        target: Any = module
        for part in name.split("."):
            target = getattr(target, part)
    except AttributeError:
        raise AppImportError(f"module {module_name!r} has no attribute {name!r}") from None
    try:
        registry = as_registry(target)
    except errors.InvalidOption:
        raise AppImportError(
            f"{path!r} is a {type(target).__name__}, not an App or a mapping of handlers"
        ) from None
    if not registry:
        raise AppImportError(f"{path!r} has no handlers")
    result: Handlers = target
    return result


def _client_factory(target: Handlers, url: str | None) -> Callable[[], AsyncClient]:
    connect_app = getattr(target, "connect_async", None)
    if callable(connect_app):
        return lambda: cast(AsyncClient, connect_app(url))
    return lambda: connect_async(resolve_url(url))


def _sync_client(target: object, url: str | None) -> Client:
    """A sync client on the store the app (or ``url``) names."""
    connect_app = getattr(target, "connect", None)
    if callable(connect_app):
        return cast(Client, connect_app(url))
    return connect(resolve_url(url))


def _serve_metrics(target: Handlers, url: str | None, port: int, processes: int) -> None:
    """Serve ``/metrics`` from this process; with child processes, they count into a
    ``PROMETHEUS_MULTIPROC_DIR`` (made now unless set) that this process adds up."""
    if processes > 1 and not os.environ.get(MULTIPROC_DIR):
        # Before prometheus_client is imported: it reads the variable at import.
        directory = tempfile.mkdtemp(prefix="disquette-metrics-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        os.environ[MULTIPROC_DIR] = directory
    os.environ[ENV_METRICS] = "1"  # the children count too
    from .. import metrics

    try:
        bound = metrics.serve(port, _sync_client(target, url))
    except OSError as exc:
        raise errors.CannotListen(f"127.0.0.1:{port}", str(exc)) from exc
    logging.getLogger("disquette.worker").info("metrics on http://127.0.0.1:%d/metrics", bound)


async def _probe(factory: Callable[[], AsyncClient], queue: str) -> None:
    client = factory()
    try:
        await client.qlen(queue)
    finally:
        await client.close()


_log_level_option = click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s [%(process)d] %(name)s: %(message)s",
        stream=sys.stderr,
    )


@click.command()
@click.argument("app")
@click.option(
    "--queues",
    "-q",
    envvar=ENV_QUEUES,
    help="Comma-separated, leftmost first; NAME:WEIGHT weighs a queue (mail:3,images:1).",
)
@click.option(
    "--order",
    type=click.Choice(["strict", "weighted", "round-robin"]),
    help="Which queue each claim serves first (default: weighted with weights, else strict).",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(1, 100_000),
    envvar=ENV_CONCURRENCY,
    help="Jobs run at once per process (default 10).",
)
@click.option("--processes", "-p", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option("--prefetch", type=click.IntRange(0, 100_000), help="Jobs claimed ahead.")
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.001),
    metavar="SECONDS",
    help="Poll the store this often when it cannot wake the worker.",
)
@click.option(
    "--exec-timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Per-job limit (handlers may set their own).",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="How long a stop waits for running jobs.",
)
@click.option(
    "--schedules/--no-schedules",
    default=True,
    show_default=True,
    help="Also fire the app's periodic jobs (any number of workers may).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics (extra `prometheus`).",
)
@_log_level_option
@_url_option
def worker(
    app: str,
    queues: str | None,
    order: str | None,
    concurrency: int | None,
    processes: int,
    prefetch: int | None,
    poll_interval: float | None,
    exec_timeout: float | None,
    grace: float,
    schedules: bool,
    metrics_port: int | None,
    log_level: str,
    url: str | None,
) -> None:
    """Run the handlers of APP (module:attribute: an App or a dict of handlers).

    SIGTERM or Ctrl-C stops gracefully (running jobs finish, prefetched ones are given
    back); a second one gives the running jobs back too. Exits 0 after SIGTERM, 130 after
    Ctrl-C (SIGINT). Environment: DISQUETTE_URL, DISQUETTE_QUEUES, DISQUETTE_CONCURRENCY.
    """
    _setup_logging(log_level)
    context = click.get_current_context()
    target = load_app(app)
    queue_weights = parse_queue_spec(queues) if queues else None
    supervisor_pid = os.environ.get(ENV_SUPERVISOR_PID)
    factory = _client_factory(target, url)
    runner = Worker(
        factory,
        target,
        queues=queue_weights,
        order=None if order is None else check_order(order),
        concurrency=concurrency,
        prefetch=prefetch,
        poll_interval=poll_interval,
        exec_timeout=exec_timeout,
        grace=grace,
        schedules=schedules,
        parent_pid=int(supervisor_pid) if supervisor_pid else None,
        replace_on_abandon=supervisor_pid is not None,
    )
    if supervisor_pid is None:
        # A bad URL or an unreachable store is one clear error here, not endless retries.
        asyncio.run(_probe(factory, runner.queues[0]))
    if metrics_port is not None:
        _serve_metrics(target, url, metrics_port, processes)
    elif os.environ.get(ENV_METRICS):  # a child of a worker serving its metrics
        from .. import metrics

        metrics.enable()
    if processes > 1:
        arguments = ["--traceback"] if context.meta.get(_TRACEBACK_KEY) else []
        arguments += ["worker", app, "--processes", "1", "--grace", str(grace)]
        arguments += ["--log-level", log_level]
        arguments += [] if schedules else ["--no-schedules"]
        for flag, value in (
            ("--url", url),
            ("--queues", queues),
            ("--order", order),
            ("--concurrency", concurrency),
            ("--prefetch", prefetch),
            ("--poll-interval", poll_interval),
            ("--exec-timeout", exec_timeout),
        ):
            if value is not None:
                arguments += [flag, str(value)]
        supervisor = Supervisor(worker_command(arguments), processes, client=factory)
        status = supervisor.run()
        if status == EXIT_OK:
            status = exit_status_after(supervisor.stop_signal)
        raise click.exceptions.Exit(status)
    runner.run()
    if runner.replace_requested:
        raise click.exceptions.Exit(EXIT_REPLACE)
    raise click.exceptions.Exit(exit_status_after(runner.stop_signal))


def exit_status_after(stop_signal: int | None) -> int:
    """A worker's exit status after a graceful stop: 130 when Ctrl-C (SIGINT) stopped it,
    as the shell reports an interrupted command; 0 after SIGTERM, which is how service
    managers (systemd, Kubernetes, the supervisor of ``-p``) ask a worker to stop: a
    requested stop is a success."""
    return EXIT_INTERRUPTED if stop_signal == signal.SIGINT else EXIT_OK


@click.command()
@click.option(
    "--jobs",
    "-n",
    type=click.IntRange(0, 10_000_000),
    default=5000,
    show_default=True,
    help="Jobs added at once (throughput).",
)
@click.option(
    "--paced",
    type=click.IntRange(0, 1_000_000),
    default=500,
    show_default=True,
    help="Jobs added one at a time afterwards, at --rate (latency).",
)
@click.option("--rate", type=click.FloatRange(min=1), default=500.0, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option("--concurrency", "-c", type=click.IntRange(1, 10_000), default=32, show_default=True)
@click.option(
    "--fail-rate",
    type=click.FloatRange(0, 1),
    default=0.05,
    show_default=True,
    help="Chance that an attempt raises (each job gets 3 attempts).",
)
@click.option(
    "--url",
    metavar="URL",
    default=None,
    help="Store URL (default: a SQLite file in a temporary directory, removed afterwards).",
)
def demo(
    jobs: int,
    paced: int,
    rate: float,
    workers: int,
    concurrency: int,
    fail_rate: float,
    url: str | None,
) -> None:
    """Watch a worker pool at work on the embedded SQLite store.

    A producer adds --jobs jobs at once, then --paced more one at a time; a pool of
    workers runs them (async handlers, a few ms of simulated I/O, --fail-rate of the
    attempts raise and are retried). Shows a progress bar, then throughput, add-to-start
    latency percentiles and retries, checked against the store.
    """
    if jobs + paced == 0:
        raise CliError("nothing to do: --jobs and --paced are both 0", EXIT_USAGE)
    logging.getLogger("disquette.worker").setLevel(logging.CRITICAL)  # failures are the show
    with contextlib.ExitStack() as stack:
        if url is None:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="disquette-demo-"))
            url = f"sqlite:///{Path(directory) / 'demo.db'}"
        consistent = show_demo(Console(), url, jobs, paced, rate, workers, concurrency, fail_rate)
    if not consistent:
        raise CliError("the store does not agree with what the workers did", EXIT_FAILED)


@click.command()
@click.option("--bind", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=7711, show_default=True)
@click.option(
    "--requirepass",
    default=None,
    envvar="DISQUETTE_REQUIREPASS",
    help="Password clients must AUTH with (also $DISQUETTE_REQUIREPASS).",
)
@click.option(
    "--unprotected",
    is_flag=True,
    help="Allow a non-loopback --bind without --requirepass (trusted networks only).",
)
@click.option("--max-clients", type=click.IntRange(1), default=10_000, show_default=True)
@click.option(
    "--max-argument-bytes",
    type=click.IntRange(1024),
    default=64 * 1024 * 1024,
    show_default=True,
    help="Largest argument (job body) a request may carry.",
)
@click.option(
    "--result-ttl",
    type=click.FloatRange(min=0),
    default=RESULT_TTL,
    show_default=True,
    metavar="SECONDS",
    help="How long an acked job stays for Python wait() (SHOW says $-1 at once).",
)
@click.option(
    "--unixsocket",
    metavar="PATH",
    default=None,
    help="Also listen on a Unix socket at PATH (a stale socket file there is replaced).",
)
@click.option(
    "--unixsocketperm",
    metavar="OCTAL",
    default=None,
    callback=lambda ctx, param, value: _octal_mode(value),
    help="Permissions of the Unix socket, in octal (e.g. 770).",
)
@click.option(
    "--pool-nodes-as-replicas",
    is_flag=True,
    help="Accept ADDJOB REPLICATE n when the pool has n live nodes. The nodes share one "
    "store: the job is one copy (or what the store replicates), reachable through n nodes.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus metrics (connections, commands) on 127.0.0.1:PORT/metrics "
    "(extra `prometheus`).",
)
@_url_option
def server(
    bind: str,
    port: int,
    requirepass: str | None,
    unprotected: bool,
    max_clients: int,
    max_argument_bytes: int,
    result_ttl: float,
    unixsocket: str | None,
    unixsocketperm: int | None,
    pool_nodes_as_replicas: bool,
    metrics_port: int | None,
    url: str | None,
) -> None:
    """Serve the Disque protocol (port 7711) over the store, for any Disque client.

    Several servers over one shared store (PostgreSQL, Redis, one SQLite file) form a pool.
    """
    try:
        from ..server import Limits, run
    except ImportError as exc:
        raise CliError(
            f"the server needs {exc.name}: pip install 'disquette[server]'", EXIT_USAGE
        ) from None
    if unixsocketperm is not None and unixsocket is None:
        raise CliError("--unixsocketperm goes with --unixsocket", EXIT_USAGE)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    limits = Limits(max_clients=max_clients, max_argument_bytes=max_argument_bytes)
    with _errors_as_exit():  # UnsafeBind is an InvalidInput: a usage error, exit 2
        run(
            resolve_url(url),
            host=bind,
            port=port,
            requirepass=requirepass,
            unprotected=unprotected,
            limits=limits,
            result_ttl=result_ttl,
            unixsocket=unixsocket,
            unixsocketperm=unixsocketperm,
            pool_nodes_as_replicas=pool_nodes_as_replicas,
            metrics_port=metrics_port,
        )


def _octal_mode(value: str | None) -> int | None:
    """``--unixsocketperm``: file permissions in octal, as disque-server reads them."""
    if value is None:
        return None
    try:
        mode = int(value, 8)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an octal mode such as 770") from None
    if not 0 <= mode <= 0o777:
        raise click.BadParameter(f"{value!r} is not a mode between 0 and 777")
    return mode
