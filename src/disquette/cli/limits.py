"""``disquette limits``: list, set and clear queues' flow limits (issue 16)."""

from __future__ import annotations

import click

from .. import errors
from ..stores.limits import QueueLimits
from .common import _connect, _url_option


def _rate(text: str) -> tuple[int, float]:
    """``"10/1"`` (COUNT/SECONDS) as ``(10, 1.0)``; a typed error otherwise."""
    count, sep, per = text.partition("/")
    try:
        if not sep:
            raise ValueError(text)
        return int(count), float(per)
    except ValueError:
        raise errors.InvalidOption("rate", text, "COUNT/SECONDS, as 10/1") from None


def describe(limits: QueueLimits) -> str:
    """One line for a queue's limits."""
    parts = []
    if limits.concurrency is not None:
        parts.append(f"concurrency {limits.concurrency}")
    if limits.rate is not None:
        parts.append(f"rate {limits.rate[0]}/{limits.rate[1]:g}s")
    return ", ".join(parts)


@click.command()
@click.argument("queue", required=False)
@click.option("--concurrency", type=int, help="At most N jobs of QUEUE active at once.")
@click.option("--rate", metavar="COUNT/SECONDS", help="At most COUNT claims per SECONDS.")
@click.option("--clear", is_flag=True, help="Remove QUEUE's limits.")
@_url_option
def limits(
    queue: str | None, concurrency: int | None, rate: str | None, clear: bool, url: str | None
) -> None:
    """List the queues' limits, or set (or --clear) QUEUE's. Every worker and server on
    the store obeys them; setting replaces both limits."""
    setting = concurrency is not None or rate is not None
    if (setting or clear) and queue is None:
        raise click.UsageError("--concurrency, --rate and --clear need a QUEUE")
    if setting and clear:
        raise click.UsageError("--clear takes no limits")
    with _connect(url) as client:
        if queue is not None and (setting or clear):
            client.set_limits(
                queue, concurrency=concurrency, rate=None if rate is None else _rate(rate)
            )
        for name, queue_limits in sorted(client.limits().items()):
            if queue is None or name == queue:
                click.echo(f"{name}: {describe(queue_limits)}")
