"""What every command shares: exit statuses, how errors map to them, ``--url``, the
connection to the store."""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, TypeVar

import click

from .. import errors
from ..client import Client, connect
from ..stores import resolve_url, sqlite_path

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNAVAILABLE: Final = 3
EXIT_TIMEOUT: Final = 4
EXIT_INTERRUPTED: Final = 130
#: Set (to 1) to print the traceback of an error raised while importing APP.
ENV_TRACEBACK: Final = "DISQUETTE_TRACEBACK"
_TRACEBACK_KEY: Final = "disquette.traceback"

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A one-line error with the exit status that says what kind it is."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click reads it per instance


AppImportError = errors.AppImportError  # re-exported: the CLI's own error


def exit_code_for(exc: BaseException) -> int:
    """The exit status for an error raised by a command."""
    if isinstance(exc, errors.InvalidInput):
        return EXIT_USAGE
    if isinstance(exc, errors.StoreUnavailable):
        return EXIT_UNAVAILABLE
    if isinstance(exc, errors.Timeout):
        return EXIT_TIMEOUT
    return EXIT_FAILED


@contextlib.contextmanager
def _errors_as_exit() -> Iterator[None]:
    try:
        yield
    except errors.DisquetteError as exc:
        message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        if isinstance(exc, errors.StoreRefused):  # reachable, but it refuses this URL
            message = f"store refused: {message}"
        elif isinstance(exc, errors.StoreUnavailable):
            message = f"store unreachable: {message}"
        if isinstance(exc, AppImportError) and exc.cause is not None:
            context = click.get_current_context(silent=True)
            if context is not None and context.meta.get(_TRACEBACK_KEY):
                _print_traceback(exc.cause)
            else:
                message += f" (--traceback or {ENV_TRACEBACK}=1 shows where)"
        raise CliError(message, exit_code_for(exc)) from None
    except KeyboardInterrupt:
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None


def _url_option(function: F) -> F:
    return click.option(
        "--url",
        metavar="URL",
        default=None,
        help="Store URL (default: $DISQUETTE_URL, else sqlite:///disquette.db).",
    )(function)


def _options(*decorators: Callable[[Any], Any]) -> Callable[[F], F]:
    """Decorators that commands share, as one: listed top to bottom as they would be
    written above the function (click lists options in that order)."""

    def apply(function: F) -> F:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


#: ``--json`` of the commands that print jobs (``get``, ``peek``, ``failed``).
_json_lines_option = click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per job."
)


def _connect(url: str | None, *, existing: bool = False) -> Client:
    """A client on the store; with ``existing``, refuse a SQLite file that does not exist
    (opening it would create an empty store, and a command that only reads or acts on
    existing jobs would then report on nothing: the wrong directory, most likely)."""
    resolved = resolve_url(url)
    path = sqlite_path(resolved)
    if existing and path is not None and not Path(path).exists():
        raise CliError(
            f"store unreachable: no SQLite store at {Path(path).resolve()} "
            "(this command does not create one; check --url or $DISQUETTE_URL)",
            EXIT_UNAVAILABLE,
        )
    return connect(resolved)


def store_name(client: Client) -> str:
    """The store a command reads, for a title: its URL without a password, and the
    absolute path of a SQLite file."""
    url = client.store.url
    path = sqlite_path(url)
    if path is None or Path(path).is_absolute():
        return url
    return f"{url} ({Path(path).resolve()})"


def _print_traceback(exc: BaseException) -> None:
    """The traceback of an error raised by the app's module, without the import machinery."""
    report = traceback.TracebackException.from_exception(exc)
    report.stack = traceback.StackSummary.from_list(
        [frame for frame in report.stack if not frame.filename.startswith("<frozen importlib")]
    )
    click.echo("".join(report.format()).rstrip(), err=True)
