"""How the CLI prints values, jobs and tables (``stats``, ``failed``, ``show``)."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
from collections.abc import Sequence
from typing import Final

import click
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..job import Job, Stats


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


def _listing() -> Table:
    """A table of rows under a ruled header, without edges, one space between columns
    (``stats``, ``failed``)."""
    return Table(box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), show_edge=False)


def stats_view(stats: Stats, now: float, store: str) -> Group:
    """What ``stats`` prints: the store's name, then :func:`stats_table`."""
    return _titled(f"disquette stats: {store}", stats_table(stats, now))


def stats_table(stats: Stats, now: float) -> Table:
    """The ``stats`` table: one row per queue and type ("age": of the oldest pending job;
    "max err": the highest error count; a paused queue is marked ``*``)."""
    table = _listing()
    table.add_column("queue", overflow="fold")
    table.add_column("type", overflow="fold")
    for name in ("sched", "queued", "active", "done", "failed", "cancel", "max err", "age"):
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
            str(row.cancelled),
            str(row.max_error_count),
            age,
        )
    for queue in sorted(stats.paused - {row.queue for row in stats.rows}):
        table.add_row(f"{queue}*", "", *[""] * 8)
    if stats.paused:
        table.caption = "* paused"
        table.caption_justify = "left"
    return table


def failed_table(jobs: Sequence[Job], store: str) -> Group:
    """The ``failed`` table, under a title naming the store: a row per job, its last error
    under its id.

    An id is never wrapped nor cut, whatever the width, so that it can be copied; the last
    error goes under it rather than in a column of its own, which would be squeezed to
    nothing on an 80-column terminal.
    """
    table = _listing()
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
