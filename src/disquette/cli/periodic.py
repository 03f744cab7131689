"""Commands for periodic jobs: ``scheduler`` (fire an app's schedules), ``periodic`` (list an
app's schedules with their last and next firing) and ``schedules`` (the same from the
store's registry, no app needed; ``pause``, ``resume`` and ``fire`` act on one by name)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

import click
from rich.console import Console
from rich.table import Table

from .. import errors
from ..client import Client
from ..client_async import AsyncClient
from ..periodic import Periodic
from ..worker import as_registry
from ..worker.scheduler import Scheduler
from ..worker.signals import stop_signals
from .common import _connect, _errors_as_exit, _url_option
from .run import _client_factory, _log_level_option, _setup_logging, _sync_client, load_app


def _schedules(app: str) -> tuple[object, list[Periodic]]:
    target = load_app(app)
    schedules = as_registry(target).schedules
    if not schedules:
        raise errors.AppImportError(f"{app!r} has no periodic jobs")
    return target, schedules


@click.command()
@click.argument("app")
@_log_level_option
@_url_option
def scheduler(app: str, log_level: str, url: str | None) -> None:
    """Fire the periodic jobs of APP (module:attribute) as they come due, and run nothing.

    Workers of the app fire them too; any number of schedulers may run, each slot makes one
    job. SIGTERM or Ctrl-C stops it.
    """
    _setup_logging(log_level)
    target, schedules = _schedules(app)
    factory = _client_factory(target, url)  # type: ignore[arg-type]
    asyncio.run(_run_scheduler(factory(), schedules))


async def _run_scheduler(client: AsyncClient, schedules: list[Periodic]) -> None:
    try:
        runner = Scheduler(client, schedules)
        with stop_signals(asyncio.get_running_loop(), lambda signum: runner.stop()):
            await runner.run()
    finally:
        await client.close()


@click.command()
@click.argument("app")
@_url_option
def periodic(app: str, url: str | None) -> None:
    """List the periodic jobs of APP with their last firing (the latest slot whose job
    the store still holds, looking back 100 slots), their next one, and whether they are
    paused in the store."""
    target, schedules = _schedules(app)
    with _sync_client(target, url) as client:
        stored = client.schedules() if client.store.capabilities.schedules else []
        paused = {info.name for info in stored if info.paused}
        table = _table(client, schedules, paused)
    Console().print(table)


@click.group(invoke_without_command=True)
@_url_option
@click.pass_context
def schedules(ctx: click.Context, url: str | None) -> None:
    """List the schedules the store keeps (registered by the schedulers of their apps; no
    APP needed); `schedules pause`, `resume` and `fire` act on one by name."""
    ctx.obj = {"url": url}
    if ctx.invoked_subcommand is not None:
        return
    with _errors_as_exit(), _connect(url, existing=True) as client:
        stored = client.schedules()
        periodics = [Periodic.from_info(info) for info in stored]
        table = _table(client, periodics, {info.name for info in stored if info.paused})
    Console().print(table)


def _table(client: Client, schedules: Sequence[Periodic], paused: set[str]) -> Table:
    table = Table("name", "schedule", "queue", "type", "catch up", "paused", "last", "next")
    now = client.store.clock.now()
    for item in schedules:
        last = item.last_fired(now, lambda job_id: client.store.show(job_id) is not None)
        zone = ZoneInfo(item.schedule.tz)
        table.add_row(
            item.name,
            str(item.schedule),
            item.queue,
            item.type or "",
            str(item.schedule.catch_up),
            "yes" if item.name in paused else "no",
            _when(last, zone),
            _when(item.schedule.next_after(now), zone),
        )
    return table


@schedules.command("pause")
@click.argument("name")
@_url_option
@click.pass_context
def schedules_pause(ctx: click.Context, name: str, url: str | None) -> None:
    """Pause schedule NAME: no scheduler fires it until it is resumed (its slots due
    meanwhile are skipped)."""
    with _errors_as_exit(), _connect(url or ctx.obj["url"], existing=True) as client:
        client.pause_schedule(name)


@schedules.command("resume")
@click.argument("name")
@_url_option
@click.pass_context
def schedules_resume(ctx: click.Context, name: str, url: str | None) -> None:
    """Resume schedule NAME (its next slot fires)."""
    with _errors_as_exit(), _connect(url or ctx.obj["url"], existing=True) as client:
        client.resume_schedule(name)


@schedules.command("fire")
@click.argument("name")
@_url_option
@click.pass_context
def schedules_fire(ctx: click.Context, name: str, url: str | None) -> None:
    """Add one job of schedule NAME now, from its stored definition, and print its id."""
    with _errors_as_exit(), _connect(url or ctx.obj["url"], existing=True) as client:
        click.echo(client.fire_schedule(name))


def _when(slot: float | None, zone: ZoneInfo) -> str:
    if slot is None:
        return "never"
    return datetime.fromtimestamp(slot, zone).isoformat(timespec="seconds")
