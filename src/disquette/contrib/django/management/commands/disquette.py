"""``manage.py disquette COMMAND ...``: the ``disquette`` CLI with the project's settings.

The store is the ``DISQUETTE["URL"]`` setting (``--url`` still wins); ``worker``,
``scheduler`` and ``periodic`` run the project's app (every ``jobs.py`` handler), so
``manage.py disquette worker -c 16`` needs no APP argument.
"""

from __future__ import annotations

import os

from django.core.management.base import BaseCommand

from disquette.cli import main
from disquette.contrib.django import get_settings

#: The CLI commands that take an APP, given the project's app here.
APP_COMMANDS = frozenset({"worker", "scheduler", "periodic"})
PROJECT_APP = "disquette.contrib.django:app"


class Command(BaseCommand):  # type: ignore[misc]  # Django ships no types
    """Pass the arguments to the ``disquette`` CLI."""

    help = "Run a disquette command (worker, stats, add...) with the project's settings."

    def run_from_argv(self, argv: list[str]) -> None:
        """Run the CLI on the arguments after ``disquette`` (exits with its status)."""
        args = list(argv[2:])
        url = get_settings().url
        if url:  # the setting wins, as it does for the project's app
            os.environ["DISQUETTE_URL"] = url
        if args and args[0] in APP_COMMANDS and "--help" not in args and "-h" not in args:
            args.insert(1, PROJECT_APP)
        prog = f"{os.path.basename(argv[0])} {argv[1]}"
        main(args=args, prog_name=prog)
