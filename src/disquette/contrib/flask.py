"""Flask integration (``pip install 'disquette[flask]'``).

::

    from disquette.contrib.flask import Disquette

    disquette = Disquette()  # or Disquette(app)

    def create_app():
        app = Flask(__name__)
        app.config["DISQUETTE_URL"] = "postgresql://app@db/app"  # default: $DISQUETTE_URL
        app.config["DISQUETTE_APP"] = "myproject.jobs:app"  # for `flask disquette worker`
        disquette.init_app(app)
        return app

    @bp.post("/signup")
    def signup():
        disquette.client.add({"to": request.form["email"]}, "mail")

``disquette.client`` is a sync :class:`~disquette.Client` opened on first use in an
application context and closed when that context tears down (a memory or SQLite store opens
in microseconds; on PostgreSQL each context opens a small pool, so give the URL
``?pool_min=1`` or enqueue through one long-lived :class:`~disquette.App` instead).
``flask disquette COMMAND ...`` runs any ``disquette`` command with the application's
``DISQUETTE_URL``; ``worker``, ``scheduler`` and ``periodic`` run ``DISQUETTE_APP``.
"""

from __future__ import annotations

import os
from typing import Any, Final

import click
from flask import Flask, current_app, g
from flask.cli import with_appcontext

from ..cli import main
from ..client import Client, connect
from ..stores import resolve_url

#: The CLI commands that take an APP, given ``DISQUETTE_APP`` here.
APP_COMMANDS: Final = frozenset({"worker", "scheduler", "periodic"})
_CLIENT_KEY: Final = "_disquette_client"


class Disquette:
    """The extension: ``Disquette(app)`` or ``Disquette()`` then ``init_app(app)``."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register the extension, the teardown that closes the client, and the commands."""
        app.config.setdefault("DISQUETTE_URL", None)
        app.config.setdefault("DISQUETTE_APP", None)
        app.extensions["disquette"] = self
        app.teardown_appcontext(self._close)
        app.cli.add_command(command)

    @property
    def client(self) -> Client:
        """The current application context's client (opened on first use)."""
        found: Client | None = g.get(_CLIENT_KEY)
        if found is None:
            found = connect(resolve_url(current_app.config["DISQUETTE_URL"]))
            setattr(g, _CLIENT_KEY, found)
        return found

    @staticmethod
    def _close(_error: BaseException | None) -> None:
        found: Client | None = g.pop(_CLIENT_KEY, None)
        if found is not None:
            found.close()


@click.command(
    "disquette",
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@with_appcontext
def command(args: tuple[str, ...]) -> Any:
    """Run a disquette command (worker, stats, add...) with the application's settings."""
    config = current_app.config
    if config.get("DISQUETTE_URL"):
        os.environ["DISQUETTE_URL"] = config["DISQUETTE_URL"]
    arguments = list(args)
    if arguments and arguments[0] in APP_COMMANDS and not {"-h", "--help"} & set(arguments):
        if not config.get("DISQUETTE_APP"):
            raise click.UsageError("set DISQUETTE_APP to the module:attribute of an App")
        arguments.insert(1, config["DISQUETTE_APP"])
    return main(args=arguments, prog_name="flask disquette")
