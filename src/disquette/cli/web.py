"""``disquette web``: the dashboard (extra ``web``)."""

from __future__ import annotations

import os

import click

from ..stores import resolve_url
from .common import EXIT_USAGE, CliError, _errors_as_exit, _url_option

#: Where ``disquette web`` reads the dashboard's password when ``--password`` is not given.
ENV_PASSWORD = "DISQUETTE_WEB_PASSWORD"


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8700, show_default=True, type=click.IntRange(0, 65535))
@click.option("--user", default="admin", show_default=True, help="Basic auth user name.")
@click.option(
    "--password",
    default=None,
    help=f"Require HTTP basic auth with this password (default ${ENV_PASSWORD}); needed "
    "to listen beyond loopback.",
)
@click.option(
    "--unprotected",
    is_flag=True,
    help="Listen beyond loopback without a password (a trusted network only).",
)
@click.option("--read-only", is_flag=True, help="Show everything, change nothing.")
@click.option(
    "--max-len",
    "max_len",
    multiple=True,
    metavar="QUEUE=N",
    callback=lambda ctx, param, value: _bounds(value),
    help="The max_len your adds pass to QUEUE, for the overview's fill (repeatable; the "
    "store keeps no such bound).",
)
@_url_option
def web(
    host: str,
    port: int,
    user: str,
    password: str | None,
    unprotected: bool,
    read_only: bool,
    max_len: dict[str, int],
    url: str | None,
) -> None:
    """Serve the web dashboard (http://127.0.0.1:8700 by default)."""
    try:
        from ..web import run
    except ImportError as exc:
        raise CliError(
            f"the dashboard needs {exc.name}: pip install 'disquette[web]'", EXIT_USAGE
        ) from None
    password = password or os.environ.get(ENV_PASSWORD) or None
    credentials = (user, password) if password else None
    with _errors_as_exit():  # UnsafeBind is an InvalidInput: a usage error, exit 2
        run(
            resolve_url(url),
            host=host,
            port=port,
            credentials=credentials,
            unprotected=unprotected,
            read_only=read_only,
            max_len=max_len,
        )


def _bounds(values: tuple[str, ...]) -> dict[str, int]:
    """``--max-len QUEUE=N`` options, by queue."""
    bounds = {}
    for value in values:
        queue, _, number = value.rpartition("=")
        if not queue or not number.isdigit() or int(number) < 1:
            raise click.BadParameter(f"{value!r} is not QUEUE=N with N a positive int")
        bounds[queue] = int(number)
    return bounds
