"""The ``disquette`` command line (also ``python -m disquette``).

Every command takes ``--url`` (default ``$DISQUETTE_URL``, else ``./disquette.db``).
Exit statuses: 0 success; 1 the operation failed (unknown job, wrong state, queue full,
job failed); 2 usage error (bad arguments, bad URL, APP cannot be imported); 3 the store
is unreachable; 4 nothing came in time (``get``, ``wait``); 75 a worker process asks its
supervisor to replace it; 130 interrupted.

This module holds the group and registers every command on it, in one place. The
commands live by topic in :mod:`.jobs`, :mod:`.admin` and :mod:`.run`, their output in
:mod:`.format`; what they share (exit statuses, errors, ``--url``) in :mod:`.common`.
"""

from __future__ import annotations

from typing import Any

import click

from . import admin, jobs, limits, periodic, run, web
from .common import (
    _TRACEBACK_KEY,
    ENV_TRACEBACK,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    AppImportError,
    CliError,
    _errors_as_exit,
    exit_code_for,
)

__all__ = [
    "ENV_TRACEBACK",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "AppImportError",
    "CliError",
    "exit_code_for",
    "main",
]


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


# Every command, registered on the group here and nowhere else.
for _command in (
    jobs.add,
    jobs.get,
    jobs.ack,
    jobs.nack,
    jobs.show,
    jobs.delete,
    jobs.cancel,
    jobs.wait,
    jobs.qlen,
    jobs.peek,
    admin.stats,
    admin.failed,
    admin.pause,
    admin.resume,
    admin.recover_stale,
    admin.migrate,
    limits.limits,
    run.worker,
    run.server,
    run.demo,
    periodic.scheduler,
    periodic.periodic,
    periodic.schedules,
    web.web,
):
    main.add_command(_command)
