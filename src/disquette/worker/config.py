"""Worker settings: defaults, environment readers, option checks, and the client a worker
works through."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Final, TypeAlias

from ..client import Client
from ..client_async import AsyncClient, connect_async
from ..errors import InvalidOption
from ..stores.adapter import SyncStoreAdapter
from .fairness import parse_queue_spec

ENV_URL: Final = "DISQUETTE_URL"
ENV_QUEUES: Final = "DISQUETTE_QUEUES"
ENV_CONCURRENCY: Final = "DISQUETTE_CONCURRENCY"
#: Set by :class:`Supervisor` in its children: the supervisor's pid, watched by the child.
ENV_SUPERVISOR_PID: Final = "DISQUETTE_SUPERVISOR_PID"
DEFAULT_QUEUE: Final = "default"
DEFAULT_CONCURRENCY: Final = 10
DEFAULT_GRACE: Final = 30.0
#: A handler registered under this name receives jobs whose type has no handler of its own.
CATCH_ALL: Final = "*"
#: Exit status of a worker process that asks to be replaced (it abandoned a stuck thread).
EXIT_REPLACE: Final = 75
#: Longest ``last_error`` kept: the end of a traceback says the most.
MAX_ERROR_CHARS: Final = 16_384


# -- settings from the environment ---------------------------------------------------------


def queues_from_env() -> dict[str, int] | None:
    """``$DISQUETTE_QUEUES`` (comma-separated, ``NAME:WEIGHT`` weighs one) as
    ``{name: weight}``, or ``None`` when unset."""
    value = os.environ.get(ENV_QUEUES, "").strip()
    if not value:
        return None
    return parse_queue_spec(value)


def concurrency_from_env() -> int | None:
    """``$DISQUETTE_CONCURRENCY`` as an int, or ``None`` when unset."""
    value = os.environ.get(ENV_CONCURRENCY, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidOption(ENV_CONCURRENCY, value, "must be an int") from None


def check_positive(name: str, value: object) -> float:
    """``value`` as positive, finite seconds, else :class:`InvalidOption` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidOption(name, value, "seconds are an int or a float")
    if not math.isfinite(value) or value <= 0:
        raise InvalidOption(name, value, "must be positive and finite")
    return float(value)


def check_count(name: str, value: object, low: int) -> int:
    """``value`` as an int from ``low`` to 100000, else :class:`InvalidOption`."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 100_000:
        raise InvalidOption(name, value, f"must be an int between {low} and 100000")
    return value


# -- clients ------------------------------------------------------------------------------

ClientSource: TypeAlias = AsyncClient | Client | Callable[[], AsyncClient] | str | None
"""What a worker works through: a client (not closed by the worker), or what opens one
(a URL, ``None`` for the default URL, a factory; closed by the worker when it stops)."""


def async_twin(client: Client) -> AsyncClient:
    """An :class:`AsyncClient` sharing a sync client's store, options and settings.

    Closing the twin would close the shared store: leave that to the sync client.
    """
    adapter = SyncStoreAdapter(client.store)
    return AsyncClient(adapter, client.options, owns_store=False, **client.settings)


def open_client(source: ClientSource) -> tuple[AsyncClient, bool]:
    """The async client to work with, and whether we opened it (and so must close it)."""
    if isinstance(source, AsyncClient):
        return source, False
    if isinstance(source, Client):
        return async_twin(source), False
    if callable(source):
        return source(), True
    return connect_async(source), True
