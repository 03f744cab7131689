"""Commands that manage the store: ``stats``, ``failed`` (``retry``, ``delete``), ``pause``,
``resume``, ``recover-stale``, ``migrate``."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator, Sequence

import click
from rich.console import Console
from rich.live import Live

from .. import errors
from ..client import Client
from .common import (
    EXIT_USAGE,
    CliError,
    _connect,
    _errors_as_exit,
    _json_lines_option,
    _options,
    _url_option,
    store_name,
)
from .format import _print_job_line, failed_table, stats_view


@click.command()
@click.option("--watch", "-w", is_flag=True, help="Refresh until interrupted.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=1.0, show_default=True)
@_url_option
def stats(watch: bool, interval: float, url: str | None) -> None:
    """Counts per queue and type: scheduled, queued, active, done, failed, cancelled."""
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


@click.group(invoke_without_command=True)
@click.option("--queue", "-q", default=None, help="Only this queue.")
@click.option("--limit", "-n", type=click.IntRange(1, 10_000), default=100, show_default=True)
@_json_lines_option
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
            _print_job_line(job, as_json)
        return
    Console().print(failed_table(jobs, store), crop=False)  # ids stay whole


#: The arguments of ``failed retry`` and ``failed delete``.
_failed_targets_options = _options(
    click.argument("job_ids", nargs=-1),
    click.option("--all", "every", is_flag=True, help="Every failed job (of --queue)."),
    click.option("--queue", "-q", default=None, help="With --all: only this queue."),
    _url_option,
    click.pass_context,
)


@contextlib.contextmanager
def _failed_jobs(
    ctx: click.Context, job_ids: Sequence[str], every: bool, queue: str | None, url: str | None
) -> Iterator[tuple[Client, list[str]]]:
    """A client on the store and the ids a ``failed`` subcommand acts on (its ``--url`` and
    ``--queue``, else those given to ``failed``)."""
    with _errors_as_exit(), _connect(url or ctx.obj["url"], existing=True) as client:
        yield client, _failed_targets(client, job_ids, every, queue or ctx.obj["queue"])


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
@_failed_targets_options
def failed_retry(
    ctx: click.Context, job_ids: tuple[str, ...], every: bool, queue: str | None, url: str | None
) -> None:
    """Make failed jobs ready again."""
    with _failed_jobs(ctx, job_ids, every, queue, url) as (client, targets):
        for job_id in targets:
            client.retry(job_id)
    click.echo(f"{len(targets)} job(s) retried")


@failed.command("delete")
@_failed_targets_options
def failed_delete(
    ctx: click.Context, job_ids: tuple[str, ...], every: bool, queue: str | None, url: str | None
) -> None:
    """Delete failed jobs."""
    with _failed_jobs(ctx, job_ids, every, queue, url) as (client, targets):
        for job_id in targets:
            if client.show(job_id).state.value != "failed":
                raise errors.InvalidState(job_id, client.show(job_id).state, "delete as failed")
            client.delete(job_id)
    click.echo(f"{len(targets)} job(s) deleted")


@click.command()
@click.argument("queues", nargs=-1, required=True)
@_url_option
def pause(queues: tuple[str, ...], url: str | None) -> None:
    """Stop delivering jobs from QUEUES (adds are still accepted)."""
    with _connect(url) as client:
        for queue in queues:
            client.pause(queue)


@click.command()
@click.argument("queues", nargs=-1, required=True)
@_url_option
def resume(queues: tuple[str, ...], url: str | None) -> None:
    """Deliver jobs from QUEUES again."""
    with _connect(url) as client:
        for queue in queues:
            client.resume(queue)


@click.command("recover-stale")
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


@click.command()
@_url_option
def migrate(url: str | None) -> None:
    """Create or upgrade the store's schema; print its version and the migrations applied.

    PostgreSQL runs its numbered migrations (also done on first use unless the URL says
    ``migrate=false``); SQLite and memory create their schema when opened.
    """
    with _connect(url) as client:
        store = client.store
        if not store.capabilities.migrations:
            click.echo(f"nothing to migrate: the {store.url.partition(':')[0]} store")
            return
        applied = store.migrate()
        # Only PostgreSQL migrates: its stores name their schema.
        schema = f"schema {getattr(store, 'schema', '')!r}"
        if applied:
            versions = ", ".join(map(str, applied))
            click.echo(f"{schema} at version {max(applied)} (applied {versions})")
        else:
            from ..stores.postgres.statements import migrations  # only PostgreSQL migrates

            latest = max(version for version, _name, _text in migrations())
            click.echo(f"{schema} already at version {latest}")
