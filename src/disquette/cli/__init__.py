"""The ``disquette`` command line (also ``python -m disquette``).

Every command takes ``--url`` (default ``$DISQUETTE_URL``, else ``./disquette.db``).
Exit statuses: 0 success; 1 the operation failed (unknown job, wrong state, queue full,
job failed); 2 usage error (bad arguments, bad URL, APP cannot be imported); 3 the store
is unreachable; 4 nothing came in time (``get``, ``wait``); 75 a worker process asks its
supervisor to replace it; 130 interrupted.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import importlib
import json
import logging
import os
import random
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar, cast

import click
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .. import errors
from .._async.client import AsyncClient, connect_async
from .._sync.client import Client, connect
from ..job import Job, Options, Stats
from ..stores import resolve_url, sqlite_path
from ..worker import (
    ENV_CONCURRENCY,
    ENV_QUEUES,
    ENV_SUPERVISOR_PID,
    EXIT_REPLACE,
    Handlers,
    Supervisor,
    Worker,
    WorkerPool,
    as_registry,
    worker_command,
)

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNAVAILABLE: Final = 3
EXIT_TIMEOUT: Final = 4
EXIT_INTERRUPTED: Final = 130
#: Set (to 1) to print the traceback of an error raised while importing APP.
ENV_TRACEBACK: Final = "DISQUETTE_TRACEBACK"
_TRACEBACK_KEY: Final = "disquette.traceback"

F = TypeVar("F", bound=Callable[..., Any])

_USAGE_ERRORS: Final = (
    errors.InvalidURL,
    errors.InvalidOption,
    errors.InvalidQueueName,
    errors.InvalidJobId,
    errors.BodyNotSerializable,
    errors.BodyTooLarge,
)


class CliError(click.ClickException):
    """A one-line error with the exit status that says what kind it is."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click reads it per instance


class AppImportError(errors.DisquetteError):
    """The APP argument of ``disquette worker`` cannot be imported or is not an app.

    ``cause``: the exception the app's module raised, if that is why (its traceback is
    printed with ``--traceback``).
    """

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


def exit_code_for(exc: BaseException) -> int:
    """The exit status for an error raised by a command."""
    if isinstance(exc, (*_USAGE_ERRORS, AppImportError)):
        return EXIT_USAGE
    if isinstance(exc, errors.StoreUnavailable):
        return EXIT_UNAVAILABLE
    if isinstance(exc, errors.Timeout):
        return EXIT_TIMEOUT
    return EXIT_FAILED


@contextlib.contextmanager
def _errors_as_exit() -> Iterator[None]:
    try:
        yield
    except errors.DisquetteError as exc:
        message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        if isinstance(exc, errors.StoreRefused):  # reachable, but it refuses this URL
            message = f"store refused: {message}"
        elif isinstance(exc, errors.StoreUnavailable):
            message = f"store unreachable: {message}"
        if isinstance(exc, AppImportError) and exc.cause is not None:
            context = click.get_current_context(silent=True)
            if context is not None and context.meta.get(_TRACEBACK_KEY):
                _print_traceback(exc.cause)
            else:
                message += f" (--traceback or {ENV_TRACEBACK}=1 shows where)"
        raise CliError(message, exit_code_for(exc)) from None
    except KeyboardInterrupt:
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None


def _url_option(function: F) -> F:
    return click.option(
        "--url",
        metavar="URL",
        default=None,
        help="Store URL (default: $DISQUETTE_URL, else sqlite:///disquette.db).",
    )(function)


def _connect(url: str | None, *, existing: bool = False) -> Client:
    """A client on the store; with ``existing``, refuse a SQLite file that does not exist
    (opening it would create an empty store, and a command that only reads or acts on
    existing jobs would then report on nothing: the wrong directory, most likely)."""
    resolved = resolve_url(url)
    path = sqlite_path(resolved)
    if existing and path is not None and not Path(path).exists():
        raise CliError(
            f"store unreachable: no SQLite store at {Path(path).resolve()} "
            "(this command does not create one; check --url or $DISQUETTE_URL)",
            EXIT_UNAVAILABLE,
        )
    return connect(resolved)


def store_name(client: Client) -> str:
    """The store a command reads, for a title: its URL without a password, and the
    absolute path of a SQLite file."""
    url = client.store.url
    path = sqlite_path(url)
    if path is None or Path(path).is_absolute():
        return url
    return f"{url} ({Path(path).resolve()})"


class _Group(click.Group):
    """Turns disquette errors raised by any command into one-line errors and exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        with _errors_as_exit():
            return super().invoke(ctx)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="disquette")
@click.option(
    "--traceback",
    "show_traceback",
    is_flag=True,
    envvar=ENV_TRACEBACK,
    help=f"Print the traceback of an error raised by APP's module (also ${ENV_TRACEBACK}=1).",
)
@click.pass_context
def main(ctx: click.Context, show_traceback: bool) -> None:
    """disquette: a persistent job queue. Start with `disquette demo`.

    Exit statuses: 0 ok, 1 operation failed, 2 usage error (bad arguments, bad URL,
    APP import error), 3 store unreachable, 4 timed out, 130 interrupted.
    """
    ctx.meta[_TRACEBACK_KEY] = show_traceback


def _print_traceback(exc: BaseException) -> None:
    """The traceback of an error raised by the app's module, without the import machinery."""
    report = traceback.TracebackException.from_exception(exc)
    report.stack = traceback.StackSummary.from_list(
        [frame for frame in report.stack if not frame.filename.startswith("<frozen importlib")]
    )
    click.echo("".join(report.format()).rstrip(), err=True)


# -- formatting ----------------------------------------------------------------------------


def _value_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(value).decode()
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _json_value(value: object) -> object:
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode()}
    return value


def job_to_dict(job: Job) -> dict[str, object]:
    """A job as JSON-ready fields (body and result decoded; raw bytes as base64)."""
    fields = dataclasses.asdict(job)
    del fields["raw_body"], fields["raw_result"]
    fields["state"] = job.state.value
    fields["encoding"] = job.encoding.name.lower()
    fields["result_encoding"] = job.result_encoding.name.lower()
    fields["body"] = _json_value(job.body)
    fields["result"] = _json_value(job.result)
    return fields


def _when(timestamp: float | None, *, precise: bool = True) -> str:
    if timestamp is None:
        return ""
    if not precise:
        return time.strftime("%m-%d %H:%M", time.localtime(timestamp))
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp)) + (
        f".{int(timestamp % 1 * 1000):03d}"
    )


#: Job ids are 40 characters (Disque's format).
ID_WIDTH: Final = 40


def _id_text(job_id: str) -> Text:
    """A job id for a table cell: never wrapped, never cut (it must copy whole)."""
    return Text(job_id, no_wrap=True, overflow="ignore")


def _print_job_line(job: Job, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(job_to_dict(job), ensure_ascii=False))
    else:
        click.echo(f"{job.id}\t{job.queue}\t{_value_text(job.body)}")


def _titled(title: str, table: Table) -> Group:
    """A table under a title line that is never wrapped (a title of the table itself would
    be wrapped to the table's width, and a store's URL or path cut in pieces)."""
    return Group(Text(title, no_wrap=True, overflow="ignore"), table)


def stats_view(stats: Stats, now: float, store: str) -> Group:
    """What ``stats`` prints: the store's name, then :func:`stats_table`."""
    return _titled(f"disquette stats: {store}", stats_table(stats, now))


def stats_table(stats: Stats, now: float) -> Table:
    """The ``stats`` table: one row per queue and type ("age": of the oldest pending job;
    "max err": the highest error count; a paused queue is marked ``*``)."""
    table = Table(
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        show_edge=False,
    )
    table.add_column("queue", overflow="fold")
    table.add_column("type", overflow="fold")
    for name in ("sched", "queued", "active", "done", "failed", "max err", "age"):
        table.add_column(name, justify="right")
    for row in stats.rows:
        queue = row.queue + ("*" if row.queue in stats.paused else "")
        age = "" if row.oldest_run_at is None else f"{max(0.0, now - row.oldest_run_at):.1f}s"
        table.add_row(
            queue,
            row.type or "",
            str(row.scheduled),
            str(row.queued),
            str(row.active),
            str(row.done),
            str(row.failed),
            str(row.max_error_count),
            age,
        )
    for queue in sorted(stats.paused - {row.queue for row in stats.rows}):
        table.add_row(f"{queue}*", "", *[""] * 7)
    if stats.paused:
        table.caption = "* paused"
        table.caption_justify = "left"
    return table


# -- producing and consuming -------------------------------------------------------------


def body_value(body: str, as_json: bool, as_base64: bool) -> object:
    """The job body ``add`` sends: BODY (or standard input for ``-``) as bytes, then
    decoded as base64, parsed as JSON, or text when it is UTF-8, else the bytes as they are."""
    if as_json and as_base64:
        raise CliError("--json and --base64 do not go together", EXIT_USAGE)
    # os.fsencode gives back the bytes the shell passed, even those that are not UTF-8.
    data = sys.stdin.buffer.read() if body == "-" else os.fsencode(body)
    if as_base64:
        try:
            return base64.b64decode(b"".join(data.split()), validate=True)
        except ValueError as exc:  # binascii.Error
            raise CliError(f"BODY is not base64: {exc}", EXIT_USAGE) from None
    if as_json:
        try:
            return json.loads(data)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            raise CliError(f"BODY is not JSON: {exc}", EXIT_USAGE) from None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return data


def _seconds(name: str) -> Callable[[F], F]:
    return click.option(f"--{name}", type=click.FloatRange(min=0), default=None, metavar="SECONDS")


@main.command()
@click.argument("queue")
@click.argument("body")
@click.option("--json", "-j", "as_json", is_flag=True, help="BODY is JSON (else text).")
@click.option(
    "--base64", "as_base64", is_flag=True, help="BODY is base64: the job's body is its bytes."
)
@_seconds("delay")
@_seconds("retry-after")
@_seconds("ttl")
@_seconds("result-ttl")
@click.option("--max-len", type=int, default=None, help="Refuse when the queue holds this many.")
@click.option("--priority", type=int, default=None, help="Lower runs first (default 100).")
@click.option("--type", "job_type", default=None, help="The handler name.")
@click.option("--max-attempts", type=int, default=None, help="Errors before it is failed.")
@click.option("--replicate", type=int, default=None, help="Copies before add returns.")
@_url_option
def add(
    queue: str,
    body: str,
    as_json: bool,
    as_base64: bool,
    delay: float | None,
    retry_after: float | None,
    ttl: float | None,
    result_ttl: float | None,
    max_len: int | None,
    priority: int | None,
    job_type: str | None,
    max_attempts: int | None,
    replicate: int | None,
    url: str | None,
) -> None:
    """Add a job with BODY to QUEUE and print its id (BODY "-" reads standard input).

    BODY is text if it is UTF-8, else bytes (kept exactly); --json parses it, --base64
    decodes it into bytes.
    """
    value = body_value(body, as_json, as_base64)
    options = Options(
        delay=delay,
        retry_after=retry_after,
        ttl=ttl,
        result_ttl=result_ttl,
        max_len=max_len,
        priority=priority,
        type=job_type,
        max_attempts=max_attempts,
        replicate=replicate,
    )
    with _connect(url) as client:
        click.echo(client.with_options(options).add(value, queue))


@main.command()
@click.argument("queues", nargs=-1, required=True)
@click.option("--count", "-n", type=click.IntRange(1, 10_000), default=1, show_default=True)
@click.option(
    "--timeout",
    "-t",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds to wait for a job (0: do not wait).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per job.")
@_url_option
def get(
    queues: tuple[str, ...], count: int, timeout: float, as_json: bool, url: str | None
) -> None:
    """Lease jobs from QUEUES (leftmost first) and print them: id, queue, body.

    Exits 4 when no job came in time. Ack or nack them by id afterwards.
    """
    with _connect(url) as client:
        jobs = client.timeout(timeout).get_many(*queues, count=count)
        if not jobs:
            raise CliError(f"no job in {', '.join(queues)} within {timeout:g}s", EXIT_TIMEOUT)
        for job in jobs:
            _print_job_line(job, as_json)


@main.command()
@click.argument("job_ids", nargs=-1, required=True)
@click.option("--result", default=None, help="A JSON result for wait() (one job only).")
@_url_option
def ack(job_ids: tuple[str, ...], result: str | None, url: str | None) -> None:
    """Acknowledge jobs: they are done."""
    value = None
    if result is not None:
        if len(job_ids) != 1:
            raise CliError("--result goes with exactly one job id", EXIT_USAGE)
        try:
            value = json.loads(result)
        except json.JSONDecodeError as exc:
            raise CliError(f"--result is not JSON: {exc}", EXIT_USAGE) from None
    with _connect(url, existing=True) as client:
        for job_id in job_ids:
            client.ack(job_id, value)


@main.command()
@click.argument("job_ids", nargs=-1, required=True)
@_url_option
def nack(job_ids: tuple[str, ...], url: str | None) -> None:
    """Give leased jobs back: they are delivered again at once."""
    with _connect(url, existing=True) as client:
        for job_id in job_ids:
            client.nack(job_id)


@main.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@_url_option
def show(job_id: str, as_json: bool, url: str | None) -> None:
    """Show every field of a job."""
    with _connect(url, existing=True) as client:
        job = client.show(job_id)
    fields = job_to_dict(job)
    if as_json:
        click.echo(json.dumps(fields, ensure_ascii=False, indent=2))
        return
    table = Table(show_header=False, box=None)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold", min_width=ID_WIDTH)
    for name, value in fields.items():
        if name == "id":
            table.add_row(name, _id_text(job.id))
            continue
        if name.endswith("_at") or name in ("lease_until", "run_at"):
            text = _when(value if isinstance(value, float) else None)
        else:
            text = _value_text(value)
        table.add_row(name, text)
    Console().print(table, crop=False)  # an id wider than the terminal stays whole


@main.command()
@click.argument("job_ids", nargs=-1, required=True)
@_url_option
def delete(job_ids: tuple[str, ...], url: str | None) -> None:
    """Delete jobs in any state."""
    with _connect(url, existing=True) as client:
        for job_id in job_ids:
            client.delete(job_id)


@main.command()
@click.argument("job_id")
@click.option("--timeout", "-t", type=click.FloatRange(min=0), default=None, metavar="SECONDS")
@_url_option
def wait(job_id: str, timeout: float | None, url: str | None) -> None:
    """Wait until a job is done and print its result (exit 1 if it failed, 4 on timeout)."""
    with _connect(url, existing=True) as client:
        click.echo(_value_text(client.wait(job_id, timeout)))


@main.command()
@click.argument("queue")
@_url_option
def qlen(queue: str, url: str | None) -> None:
    """Print how many jobs are ready in QUEUE."""
    with _connect(url, existing=True) as client:
        click.echo(client.qlen(queue))


@main.command()
@click.argument("queue")
@click.option("--count", "-n", type=click.IntRange(1, 10_000), default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per job.")
@_url_option
def peek(queue: str, count: int, as_json: bool, url: str | None) -> None:
    """Print the next jobs of QUEUE, without leasing them."""
    with _connect(url, existing=True) as client:
        for job in client.peek(queue, count):
            _print_job_line(job, as_json)


# -- managing ------------------------------------------------------------------------------


@main.command()
@click.option("--watch", "-w", is_flag=True, help="Refresh until interrupted.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=1.0, show_default=True)
@_url_option
def stats(watch: bool, interval: float, url: str | None) -> None:
    """Counts per queue and type: scheduled, queued, active, done, failed."""
    console = Console()
    with _connect(url, existing=True) as client:
        store = store_name(client)
        if not watch:
            console.print(stats_view(client.stats(), client.store.clock.now(), store))
            return
        # Ctrl-C sets a flag rather than raising: a KeyboardInterrupt raised inside a store
        # call (holding its lock, mid-statement) could leave the close that follows stuck.
        stop = threading.Event()
        previous = signal.signal(signal.SIGINT, lambda _signum, _frame: stop.set())
        try:
            if not console.is_terminal:  # a pipe or a file: one table after the other
                while not stop.is_set():
                    console.print(stats_view(client.stats(), client.store.clock.now(), store))
                    console.file.flush()
                    stop.wait(interval)
                return
            with Live(console=console, auto_refresh=False) as live:
                while not stop.is_set():
                    view = stats_view(client.stats(), client.store.clock.now(), store)
                    live.update(view, refresh=True)
                    stop.wait(interval)
        finally:
            signal.signal(signal.SIGINT, previous)


@main.group(invoke_without_command=True)
@click.option("--queue", "-q", default=None, help="Only this queue.")
@click.option("--limit", "-n", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per job.")
@_url_option
@click.pass_context
def failed(
    ctx: click.Context, queue: str | None, limit: int, as_json: bool, url: str | None
) -> None:
    """List failed jobs (oldest failure first); `failed retry` and `failed delete` act on them."""
    ctx.obj = {"url": url, "queue": queue}
    if ctx.invoked_subcommand is not None:
        return
    with _errors_as_exit(), _connect(url, existing=True) as client:
        jobs = client.failed(queue, limit)
        store = store_name(client)
    if as_json:
        for job in jobs:
            click.echo(json.dumps(job_to_dict(job), ensure_ascii=False))
        return
    Console().print(failed_table(jobs, store), crop=False)  # ids stay whole


def failed_table(jobs: Sequence[Job], store: str) -> Group:
    """The ``failed`` table, under a title naming the store: a row per job, its last error
    under its id.

    An id is never wrapped nor cut, whatever the width, so that it can be copied; the last
    error goes under it rather than in a column of its own, which would be squeezed to
    nothing on an 80-column terminal.
    """
    table = Table(
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        show_edge=False,
    )
    table.add_column("id / last error", min_width=ID_WIDTH)
    table.add_column("queue", overflow="fold", max_width=10)
    table.add_column("type", overflow="fold", max_width=10)
    table.add_column("errors", justify="right", no_wrap=True)
    table.add_column("failed at", no_wrap=True)
    for job in jobs:
        last_line = (job.last_error or "").strip().splitlines()[-1:] or [""]
        table.add_row(
            Group(_id_text(job.id), Text(last_line[0], style="dim", overflow="fold")),
            job.queue,
            job.type or "",
            str(job.error_count),
            _when(job.finished_at, precise=False),
        )
    return _titled(f"{len(jobs)} failed job(s) in {store}", table)


def _failed_targets(
    client: Client, job_ids: Sequence[str], every: bool, queue: str | None
) -> list[str]:
    if every == bool(job_ids):
        raise CliError("give job ids or --all, not both or neither", EXIT_USAGE)
    if job_ids:
        return list(job_ids)
    ids: list[str] = []
    while True:
        batch = [job.id for job in client.failed(queue, 10_000) if job.id not in set(ids)]
        if not batch:
            return ids
        ids.extend(batch)
        if len(batch) < 10_000:
            return ids


@failed.command("retry")
@click.argument("job_ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every failed job (of --queue).")
@click.option("--queue", "-q", default=None, help="With --all: only this queue.")
@_url_option
@click.pass_context
def failed_retry(
    ctx: click.Context, job_ids: tuple[str, ...], every: bool, queue: str | None, url: str | None
) -> None:
    """Make failed jobs ready again."""
    with _errors_as_exit(), _connect(url or ctx.obj["url"], existing=True) as client:
        targets = _failed_targets(client, job_ids, every, queue or ctx.obj["queue"])
        for job_id in targets:
            client.retry(job_id)
    click.echo(f"{len(targets)} job(s) retried")


@failed.command("delete")
@click.argument("job_ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every failed job (of --queue).")
@click.option("--queue", "-q", default=None, help="With --all: only this queue.")
@_url_option
@click.pass_context
def failed_delete(
    ctx: click.Context, job_ids: tuple[str, ...], every: bool, queue: str | None, url: str | None
) -> None:
    """Delete failed jobs."""
    with _errors_as_exit(), _connect(url or ctx.obj["url"], existing=True) as client:
        targets = _failed_targets(client, job_ids, every, queue or ctx.obj["queue"])
        for job_id in targets:
            if client.show(job_id).state.value != "failed":
                raise errors.InvalidState(job_id, client.show(job_id).state, "delete as failed")
            client.delete(job_id)
    click.echo(f"{len(targets)} job(s) deleted")


@main.command()
@click.argument("queues", nargs=-1, required=True)
@_url_option
def pause(queues: tuple[str, ...], url: str | None) -> None:
    """Stop delivering jobs from QUEUES (adds are still accepted)."""
    with _connect(url) as client:
        for queue in queues:
            client.pause(queue)


@main.command()
@click.argument("queues", nargs=-1, required=True)
@_url_option
def resume(queues: tuple[str, ...], url: str | None) -> None:
    """Deliver jobs from QUEUES again."""
    with _connect(url) as client:
        for queue in queues:
            client.resume(queue)


@main.command("recover-stale")
@click.option(
    "--max-age",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Also requeue jobs leased longer ago than this (even at-most-once ones).",
)
@_url_option
def recover_stale(max_age: float | None, url: str | None) -> None:
    """Requeue jobs whose worker is gone (lease run out); print how many."""
    with _connect(url, existing=True) as client:
        click.echo(client.recover_stale(max_age))


@main.command()
@_url_option
def migrate(url: str | None) -> None:
    """Create or upgrade the store's schema; print its version and the migrations applied.

    PostgreSQL runs its numbered migrations (also done on first use unless the URL says
    ``migrate=false``); SQLite and memory create their schema when opened.
    """
    with _connect(url) as client:
        run = getattr(client.store, "migrate", None)
        if run is None:
            click.echo(f"nothing to migrate: the {client.store.url.partition(':')[0]} store")
            return
        applied = run()
        schema = f"schema {getattr(client.store, 'schema', '')!r}"
        if applied:
            versions = ", ".join(map(str, applied))
            click.echo(f"{schema} at version {max(applied)} (applied {versions})")
        else:
            from .._sync.stores.postgres import _migrations  # only PostgreSQL migrates

            latest = max(version for version, _name, _text in _migrations())
            click.echo(f"{schema} already at version {latest}")


# -- the worker ----------------------------------------------------------------------------


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


async def _probe(factory: Callable[[], AsyncClient], queue: str) -> None:
    client = factory()
    try:
        await client.qlen(queue)
    finally:
        await client.close()


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s [%(process)d] %(name)s: %(message)s",
        stream=sys.stderr,
    )


@main.command()
@click.argument("app")
@click.option("--queues", "-q", envvar=ENV_QUEUES, help="Comma-separated, leftmost first.")
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
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@_url_option
def worker(
    app: str,
    queues: str | None,
    concurrency: int | None,
    processes: int,
    prefetch: int | None,
    poll_interval: float | None,
    exec_timeout: float | None,
    grace: float,
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
    queue_list = [name.strip() for name in queues.split(",") if name.strip()] if queues else None
    supervisor_pid = os.environ.get(ENV_SUPERVISOR_PID)
    factory = _client_factory(target, url)
    runner = Worker(
        factory,
        target,
        queues=queue_list,
        concurrency=concurrency,
        prefetch=prefetch,
        poll_interval=poll_interval,
        exec_timeout=exec_timeout,
        grace=grace,
        parent_pid=int(supervisor_pid) if supervisor_pid else None,
        replace_on_abandon=supervisor_pid is not None,
    )
    if supervisor_pid is None:
        # A bad URL or an unreachable store is one clear error here, not endless retries.
        asyncio.run(_probe(factory, runner.queues[0]))
    if processes > 1:
        arguments = ["--traceback"] if context.meta.get(_TRACEBACK_KEY) else []
        arguments += ["worker", app, "--processes", "1", "--grace", str(grace)]
        arguments += ["--log-level", log_level]
        for flag, value in (
            ("--url", url),
            ("--queues", queues),
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


# -- the demo ------------------------------------------------------------------------------


@dataclasses.dataclass
class DemoResult:
    """What ``disquette demo`` measured."""

    jobs: int
    done: int
    failed: int
    retries: int
    #: Seconds from the first add of the burst to the last of its jobs finished.
    burst_seconds: float
    #: Add-to-start latencies of the paced jobs, in seconds.
    latencies: list[float]

    @property
    def burst_rate(self) -> float:
        """Burst jobs finished per second."""
        return self.burst_jobs / self.burst_seconds if self.burst_seconds > 0 else 0.0

    burst_jobs: int = 0

    def percentile(self, fraction: float) -> float:
        """A latency percentile of the paced jobs, in seconds."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def run_demo(
    url: str,
    burst: int,
    paced: int,
    rate: float,
    workers: int,
    concurrency: int,
    fail_rate: float,
    on_progress: Callable[[int], None] = lambda completed: None,
) -> DemoResult:
    """Run a worker pool while a producer adds ``burst`` jobs at once (throughput), then
    ``paced`` jobs at ``rate`` per second (add-to-start latency)."""
    client = connect_async(url, backoff_base=0.05, backoff_cap=1.0)
    latencies: list[float] = []
    counts = {"done": 0, "failed": 0, "retries": 0, "burst": 0}
    burst_finished = asyncio.Event()
    all_finished = asyncio.Event()
    clock = client.store.clock

    async def flaky(job: Job) -> None:
        paced_job = job.body["paced"]
        if paced_job and job.attempts == 1:
            latencies.append(clock.now() - job.created_at)
        await asyncio.sleep(random.uniform(0.0, 0.002))  # some I/O
        if random.random() < fail_rate:
            if job.error_count + 1 >= job.max_attempts:
                counts["failed"] += 1
                _finished(paced_job)
            else:
                counts["retries"] += 1
            raise RuntimeError("simulated failure")
        counts["done"] += 1
        _finished(paced_job)
        return None  # no result: acks go to the store in batches

    def _finished(paced_job: bool) -> None:
        if not paced_job:
            counts["burst"] += 1
            if counts["burst"] >= burst:
                burst_finished.set()
        completed = counts["done"] + counts["failed"]
        on_progress(completed)
        if completed >= burst + paced:
            all_finished.set()

    pool = WorkerPool(
        client, {"demo.flaky": flaky}, size=workers, queues=["demo"], concurrency=concurrency
    )
    producer = client.with_options(Options(type="demo.flaky", max_attempts=3))
    try:
        await pool.start_async()
        started = time.perf_counter()
        for first in range(0, burst, 100):
            bodies = [{"n": n, "paced": False} for n in range(first, min(burst, first + 100))]
            await producer.add_many(bodies, "demo")
        if burst:
            await burst_finished.wait()
        burst_seconds = time.perf_counter() - started
        paced_start = time.perf_counter()
        for n in range(paced):
            # Sleep until this job's slot in the schedule, so adds do not bunch up.
            await asyncio.sleep(max(0.0, paced_start + n / rate - time.perf_counter()))
            await producer.add({"n": burst + n, "paced": True}, "demo")
        await all_finished.wait()
        await pool.stop_async()
    finally:
        if pool.running:
            await pool.stop_async(force=True)
        await client.close()
    return DemoResult(
        burst + paced,
        counts["done"],
        counts["failed"],
        counts["retries"],
        burst_seconds,
        latencies,
        burst_jobs=burst,
    )


@main.command()
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
    console = Console()
    logging.getLogger("disquette.worker").setLevel(logging.CRITICAL)  # failures are the show
    with contextlib.ExitStack() as stack:
        if url is None:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="disquette-demo-"))
            url = f"sqlite:///{Path(directory) / 'demo.db'}"
        console.print(
            f"[bold]disquette demo[/]: {jobs} jobs at once, then {paced} at {rate:g}/s; "
            f"{workers} workers x {concurrency}; store {url}"
        )
        progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        with progress:
            task = progress.add_task("jobs finished", total=jobs + paced)
            result = asyncio.run(
                run_demo(
                    url,
                    jobs,
                    paced,
                    rate,
                    workers,
                    concurrency,
                    fail_rate,
                    lambda completed: progress.update(task, completed=completed),
                )
            )
        with connect(url) as client:
            row = client.stats().by_queue().get("demo")
    table = Table(title="results", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("jobs finished", f"{result.done + result.failed} / {result.jobs}")
    table.add_row("done / failed for good", f"{result.done} / {result.failed}")
    table.add_row("retries (simulated failures)", str(result.retries))
    if jobs:
        table.add_row(
            f"throughput ({jobs} at once)",
            f"{result.burst_rate:,.0f} jobs/s in {result.burst_seconds:.2f}s",
        )
    if result.latencies:
        for label, fraction in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
            value = f"{result.percentile(fraction) * 1000:.1f} ms"
            table.add_row(f"add-to-start latency {label} ({rate:g}/s)", value)
    if row is not None:
        table.add_row("the store says done / failed", f"{row.done} / {row.failed}")
    console.print(table)
    consistent = row is not None and (row.done, row.failed) == (result.done, result.failed)
    if not consistent:
        raise CliError("the store does not agree with what the workers did", EXIT_FAILED)


@main.command()
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
    default=3600.0,
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
    url: str | None,
) -> None:
    """Serve the Disque protocol (port 7711) over the store, for any Disque client.

    Several servers over one shared store (PostgreSQL, Redis, one SQLite file) form a pool.
    """
    try:
        from ..server import Limits, UnsafeBind, run
    except ImportError as exc:
        raise CliError(
            f"the server needs {exc.name}: pip install 'disquette[server]'", EXIT_USAGE
        ) from None
    if unixsocketperm is not None and unixsocket is None:
        raise CliError("--unixsocketperm goes with --unixsocket", EXIT_USAGE)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    limits = Limits(max_clients=max_clients, max_argument_bytes=max_argument_bytes)
    with _errors_as_exit():
        try:
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
            )
        except UnsafeBind as exc:
            raise CliError(str(exc), EXIT_USAGE) from None


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


if __name__ == "__main__":  # pragma: no cover
    main()
