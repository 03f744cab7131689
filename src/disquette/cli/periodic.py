"""Commands for periodic jobs: ``scheduler`` (fire an app's schedules) and ``periodic``
(list them with their last and next firing)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from datetime import datetime
from zoneinfo import ZoneInfo

import click
from rich.console import Console
from rich.table import Table

from .. import errors
from ..client import connect
from ..client_async import AsyncClient
from ..periodic import Periodic
from ..stores import resolve_url
from ..worker import as_registry
from ..worker.scheduler import Scheduler
from .common import _url_option
from .run import _client_factory, _setup_logging, load_app


def _schedules(app: str) -> tuple[object, list[Periodic]]:
    target = load_app(app)
    schedules = as_registry(target).schedules
    if not schedules:
        raise errors.AppImportError(f"{app!r} has no periodic jobs")
    return target, schedules


@click.command()
@click.argument("app")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
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
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, runner.stop)
        await runner.run()
    finally:
        await client.close()


@click.command()
@click.argument("app")
@_url_option
def periodic(app: str, url: str | None) -> None:
    """List the periodic jobs of APP with their last firing (the latest slot whose job
    the store still holds, looking back 100 slots) and their next one."""
    target, schedules = _schedules(app)
    connect_app = getattr(target, "connect", None)
    client = connect_app(url) if callable(connect_app) else connect(resolve_url(url))
    table = Table("name", "schedule", "queue", "type", "catch up", "last", "next")
    with client:
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
                _when(last, zone),
                _when(item.schedule.next_after(now), zone),
            )
    Console().print(table)


def _when(slot: float | None, zone: ZoneInfo) -> str:
    if slot is None:
        return "never"
    return datetime.fromtimestamp(slot, zone).isoformat(timespec="seconds")
