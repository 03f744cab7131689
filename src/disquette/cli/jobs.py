"""Commands on jobs: ``add``, ``get``, ``ack``, ``nack``, ``show``, ``delete``, ``cancel``,
``wait``, ``qlen``, ``peek``."""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Callable
from typing import Literal

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..defaults import PRIORITY
from ..job import JobState, Options
from .common import (
    EXIT_TIMEOUT,
    EXIT_USAGE,
    CliError,
    F,
    _connect,
    _json_lines_option,
    _url_option,
)
from .format import ID_WIDTH, _id_text, _print_job_line, _value_text, _when, job_to_dict


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


def header_pairs(pairs: tuple[str, ...]) -> dict[str, str] | None:
    """``--header NAME=VALUE`` options as headers (the first ``=`` splits; a name given
    twice keeps its last value); None when there are none."""
    headers: dict[str, str] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals:
            raise CliError(f"--header {pair!r} is not NAME=VALUE", EXIT_USAGE)
        headers[name] = value
    return headers or None


def _seconds(name: str) -> Callable[[F], F]:
    return click.option(f"--{name}", type=click.FloatRange(min=0), default=None, metavar="SECONDS")


@click.command()
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
@click.option("--priority", type=int, default=None, help=f"Lower runs first (default {PRIORITY}).")
@click.option("--type", "job_type", default=None, help="The handler name.")
@click.option("--max-attempts", type=int, default=None, help="Errors before it is failed.")
@click.option("--replicate", type=int, default=None, help="Copies before add returns.")
@click.option(
    "--header",
    "-H",
    "headers",
    multiple=True,
    metavar="NAME=VALUE",
    help="A header the job carries (repeatable).",
)
@click.option(
    "--after",
    "depends_on",
    multiple=True,
    metavar="JOB_ID",
    help="A job this one waits for (repeatable): it runs once each is done.",
)
@click.option(
    "--on-dependency-failure",
    type=click.Choice(["fail", "run"]),
    default="fail",
    show_default=True,
    help="When a job it waits for fails for good: end this one too, or run it anyway.",
)
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
    headers: tuple[str, ...],
    depends_on: tuple[str, ...],
    on_dependency_failure: Literal["fail", "run"],
    url: str | None,
) -> None:
    """Add a job with BODY to QUEUE and print its id (BODY "-" reads standard input).

    BODY is text if it is UTF-8, else bytes (kept exactly); --json parses it, --base64
    decodes it into bytes. Each --header NAME=VALUE goes with the job (job.headers).
    Each --after JOB_ID is a job it waits for (state "waiting" until each is done).
    """
    value = body_value(body, as_json, as_base64)
    given = header_pairs(headers)
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
        added = client.with_options(options).add(
            value,
            queue,
            headers=given,
            depends_on=depends_on or None,
            on_dependency_failure=on_dependency_failure,
        )
        click.echo(added)


@click.command()
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
@_json_lines_option
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


@click.command()
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


@click.command()
@click.argument("job_ids", nargs=-1, required=True)
@_url_option
def nack(job_ids: tuple[str, ...], url: str | None) -> None:
    """Give leased jobs back: they are delivered again at once."""
    with _connect(url, existing=True) as client:
        for job_id in job_ids:
            client.nack(job_id)


@click.command()
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
        if name == "headers":
            # One "name: value" line each, as they were given; never read as markup.
            table.add_row(name, Text("\n".join(f"{k}: {v}" for k, v in job.headers.items())))
            continue
        if name.endswith("_at") or name in ("lease_until", "run_at"):
            text = _when(value if isinstance(value, float) else None)
        else:
            text = _value_text(value)
        table.add_row(name, text)
    Console().print(table, crop=False)  # an id wider than the terminal stays whole


@click.command()
@click.argument("job_ids", nargs=-1, required=True)
@_url_option
def delete(job_ids: tuple[str, ...], url: str | None) -> None:
    """Delete jobs in any state."""
    with _connect(url, existing=True) as client:
        for job_id in job_ids:
            client.delete(job_id)


@click.command()
@click.argument("job_ids", nargs=-1, required=True)
@_url_option
def cancel(job_ids: tuple[str, ...], url: str | None) -> None:
    """Cancel jobs: a scheduled or queued one ends cancelled at once, a running one is
    asked to stop (its worker ends it cancelled). Prints each id and what happened."""
    with _connect(url, existing=True) as client:
        for job_id in job_ids:
            state = client.cancel(job_id)
            outcome = "cancelled" if state is JobState.CANCELLED else "cancel requested"
            click.echo(f"{job_id}\t{outcome}")


@click.command()
@click.argument("job_id")
@click.option("--timeout", "-t", type=click.FloatRange(min=0), default=None, metavar="SECONDS")
@_url_option
def wait(job_id: str, timeout: float | None, url: str | None) -> None:
    """Wait until a job is done and print its result (exit 1 if it failed or was cancelled,
    4 on timeout)."""
    with _connect(url, existing=True) as client:
        click.echo(_value_text(client.wait(job_id, timeout)))


@click.command()
@click.argument("queue")
@_url_option
def qlen(queue: str, url: str | None) -> None:
    """Print how many jobs are ready in QUEUE."""
    with _connect(url, existing=True) as client:
        click.echo(client.qlen(queue))


@click.command()
@click.argument("queue")
@click.option("--count", "-n", type=click.IntRange(1, 10_000), default=10, show_default=True)
@_json_lines_option
@_url_option
def peek(queue: str, count: int, as_json: bool, url: str | None) -> None:
    """Print the next jobs of QUEUE, without leasing them."""
    with _connect(url, existing=True) as client:
        for job in client.peek(queue, count):
            _print_job_line(job, as_json)
