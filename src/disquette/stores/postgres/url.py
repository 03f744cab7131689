"""The PostgreSQL store's URL: ``postgresql://user@host/db?schema=disquette`` (or
``postgres://``), read into :class:`Settings` (both flavours).

URL parameters (the others go to libpq): ``schema`` (default ``disquette``), ``migrate``
(``true``), ``poll_interval`` (0.25 s), ``pool_min`` (1), ``pool_max`` (10),
``retry_for`` (10 s: how long a call, the first one included, waits for a database that
cannot be reached or restarts before it raises ``StoreUnavailable`` naming the cause; 0 tries
once; the same name as on Redis, ``reconnect_timeout`` is its older name), ``listen``
(``true``), ``vacuum_every`` (50000: run ``VACUUM`` on the jobs table after this many claims
and acks by this store; 0 disables).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ...errors import InvalidURL
from .._url import flag, number

#: What a schema name may be: an identifier PostgreSQL takes unquoted, at most 63 bytes.
SCHEMA_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")

_PARAMETERS: Final = {
    "schema",
    "migrate",
    "poll_interval",
    "pool_min",
    "pool_max",
    "reconnect_timeout",
    "retry_for",
    "listen",
    "vacuum_every",
}


@dataclass(frozen=True)
class Settings:
    """What a URL asks of the store: the store's constructor arguments."""

    #: The libpq connection string: the URL without the store's own parameters.
    conninfo: str
    #: The URL as shown in messages: without its password.
    url: str
    schema: str = "disquette"
    migrate: bool = True
    poll_interval: float = 0.25
    pool_min: int = 1
    pool_max: int = 10
    #: ``retry_for`` (the store's ``reconnect_timeout``).
    reconnect_timeout: float = 10.0
    listen: bool = True
    vacuum_every: int = 50_000
    #: libpq's ``application_name``, which the store also gives its connections.
    application_name: str = "disquette"


def parse_url(url: str) -> Settings:
    """Read ``postgresql://...``; :class:`InvalidURL` names a bad parameter."""
    try:
        parts = urlsplit(url)
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise InvalidURL(url, str(exc)) from None
    ours = {name: value for name, value in pairs if name in _PARAMETERS}
    libpq = [(name, value) for name, value in pairs if name not in _PARAMETERS]
    conninfo = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(libpq), ""))
    netloc = parts.netloc.rpartition("@")
    shown_user = netloc[0].partition(":")[0]
    shown = urlunsplit(
        (
            parts.scheme,
            f"{shown_user}@{netloc[2]}" if netloc[1] else netloc[2],
            parts.path,
            parts.query,
            "",
        )
    )
    schema = ours.get("schema", "disquette")
    if not SCHEMA_NAME.fullmatch(schema):
        raise InvalidURL(url, "schema is letters, digits, _ and $, at most 63 characters")
    pool_min = int(number(url, ours, "pool_min", 1, 0, 1000))
    pool_max = int(number(url, ours, "pool_max", 10, 1, 1000))
    if pool_max < max(pool_min, 1):
        raise InvalidURL(url, "pool_max must be at least pool_min")
    return Settings(
        conninfo,
        shown,
        schema=schema,
        migrate=flag(url, ours, "migrate", True),
        poll_interval=number(url, ours, "poll_interval", 0.25, 0.001, 60),
        pool_min=pool_min,
        pool_max=pool_max,
        reconnect_timeout=_retry_for(url, ours),
        listen=flag(url, ours, "listen", True),
        vacuum_every=int(number(url, ours, "vacuum_every", 50000, 0, 1e12)),
        application_name=dict(libpq).get("application_name", "disquette"),
    )


def _retry_for(url: str, ours: dict[str, str]) -> float:
    """``retry_for``, the name every store takes; ``reconnect_timeout`` is its older name."""
    given = [name for name in ("retry_for", "reconnect_timeout") if name in ours]
    if len(given) > 1:
        raise InvalidURL(url, "give retry_for or its older name reconnect_timeout, not both")
    return number(url, ours, next(iter(given), "retry_for"), 10, 0, 3600)
