"""The Redis store's URL: ``redis://[[user]:password@]host[:port][/db][?options]``
(``rediss://`` for TLS), or, to follow whichever server Sentinel says is the primary,
``redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db][?options]``
(the hosts are Sentinels; the user and password are the primary's). Both take redis-py's
own connection options plus:

===================  ==========================================================
``prefix``           key prefix, default ``disquette`` (no ``{`` or ``}``)
``poll_interval``    seconds between re-checks of a blocked ``get`` (default 1): only
                     delays and lapsed leases need it, adds wake waiters at once
``retry_for``        seconds to retry a call, opening the store included, while Redis
                     is unreachable or loading (default 10; 0 tries once), then
                     :class:`~disquette.errors.StoreUnavailable`
``replicate_timeout``  seconds ``WAIT`` waits for replicas (default 1)
``cluster``          ``auto`` (default: ask the server), ``yes`` or ``no``
===================  ==========================================================

A Sentinel URL also takes ``sentinel_username`` and ``sentinel_password`` (for the
Sentinels themselves) and ``socket_timeout``/``socket_connect_timeout`` (seconds, for the
primary and the Sentinels); ``cluster`` must then be ``no`` or absent. Each connection
asks the Sentinels for the primary's address, so after a failover the store's retries
(``retry_for``) land on the promoted replica.

Both flavours read it with :func:`parse_url` and open it with :func:`open_client`; this
module imports no driver.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from types import ModuleType
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from ...errors import InvalidURL
from .._url import number

#: The scheme of URLs naming Sentinels rather than a server.
SENTINEL_SCHEME: Final = "redis+sentinel"
_SENTINEL_OPTIONS: Final = (
    "sentinel_username", "sentinel_password", "socket_timeout", "socket_connect_timeout"
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Sentinels:
    """What a ``redis+sentinel://`` URL names: Sentinels, a service, a database."""

    hosts: tuple[tuple[str, int], ...]
    service: str
    db: int
    #: For the primary: ``username``, ``password``, timeouts.
    connection: dict[str, Any]
    #: For the Sentinels: their own credentials, the same timeouts.
    sentinel: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a ``redis://`` URL says, split into redis-py's part and ours."""

    url: str
    redis_url: str
    prefix: str
    poll_interval: float
    retry_for: float
    replicate_timeout: float
    cluster: bool | None
    #: Set for ``redis+sentinel://`` URLs (``redis_url`` then names no server).
    sentinels: Sentinels | None = None


def parse_url(url: str) -> Settings:
    """Split a store URL into redis-py's URL and the store's own options."""
    try:
        parts = urlsplit(url)
        params = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError as exc:
        raise InvalidURL(url, str(exc)) from None
    ours = {"prefix", "poll_interval", "retry_for", "replicate_timeout", "cluster"}
    options = {key: value for key, value in params if key in ours}
    rest = [(key, value) for key, value in params if key not in ours]
    redis_url = urlunsplit(parts._replace(query=urlencode(rest)))
    prefix = options.get("prefix", "disquette")
    if not prefix or "{" in prefix or "}" in prefix:
        raise InvalidURL(url, "prefix is a non-empty string without { or }")
    poll_interval = number(url, options, "poll_interval", 1, 0.001, 60)
    retry_for = number(url, options, "retry_for", 10, 0, 3600)
    replicate_timeout = number(url, options, "replicate_timeout", 1, 0.001, 3600)
    cluster_option = options.get("cluster", "auto").lower()
    if cluster_option not in ("auto", "yes", "no"):
        raise InvalidURL(url, "cluster is auto, yes or no")
    cluster = None if cluster_option == "auto" else cluster_option == "yes"
    sentinels = None
    if parts.scheme == SENTINEL_SCHEME:
        if cluster:
            raise InvalidURL(url, "a Sentinel URL names a primary, not a Cluster: cluster=no")
        cluster = False
        sentinels = _sentinels(url, parts.netloc, parts.path, dict(rest))
    safe_url = url
    if parts.password:
        safe_url = urlunsplit(parts._replace(netloc=parts.netloc.replace(parts.password, "***")))
    safe_url = re.sub(r"([?&]sentinel_password=)[^&]*", r"\1***", safe_url)
    return Settings(
        url=safe_url,
        redis_url=redis_url,
        prefix=prefix + ":",
        poll_interval=poll_interval,
        retry_for=retry_for,
        replicate_timeout=replicate_timeout,
        cluster=cluster,
        sentinels=sentinels,
    )


def _sentinels(url: str, netloc: str, path: str, options: dict[str, str]) -> Sentinels:
    """Read the Sentinel part of a URL: hosts, service, database and options."""
    unknown = set(options) - set(_SENTINEL_OPTIONS)
    if unknown:
        raise InvalidURL(url, f"unknown parameter(s) for Sentinel: {', '.join(sorted(unknown))}")
    credentials, _, hostlist = netloc.rpartition("@")
    hosts = []
    for item in hostlist.split(","):
        host, colon, port = item.rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidURL(url, f"a Sentinel is host:port, not {item!r}")
        hosts.append((host.strip("[]"), int(port)))
    names = [unquote(part) for part in path.split("/") if part]
    if not names or len(names) > 2 or (len(names) == 2 and not names[1].isdigit()):
        raise InvalidURL(url, "the path is /service_name or /service_name/db")
    connection: dict[str, Any] = {}
    user, colon, password = credentials.partition(":")
    if user:
        connection["username"] = unquote(user)
    if colon:
        connection["password"] = unquote(password)
    sentinel: dict[str, Any] = {}
    for name in ("socket_timeout", "socket_connect_timeout"):
        if name in options:
            connection[name] = sentinel[name] = number(url, options, name, 0, 0.001, 3600)
    for name in ("sentinel_username", "sentinel_password"):
        if name in options:
            sentinel[name.removeprefix("sentinel_")] = options[name]
    db = int(names[1]) if len(names) == 2 else 0
    return Sentinels(tuple(hosts), names[0], db, connection, sentinel)


def open_client(settings: Settings | str, driver: ModuleType, **kwargs: Any) -> Any:
    """A client of the server the settings (or a URL) name, from ``driver`` (``redis`` or
    ``redis.asyncio``): redis-py's URL, or the primary of a Sentinel service, looked up
    again on every new connection."""
    if isinstance(settings, str):
        settings = parse_url(settings)
    found = settings.sentinels
    if found is None:
        return driver.Redis.from_url(settings.redis_url, **kwargs)
    # A pool from Sentinel: one dedicated connection is asked of the client, not the pool.
    single = kwargs.pop("single_connection_client", False)
    sentinel = importlib.import_module(driver.__name__ + ".sentinel")
    # Asking a Sentinel is one quick call: it must not hang on one that is cut off.
    asking = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0} | found.sentinel
    sentinels = sentinel.Sentinel(list(found.hosts), sentinel_kwargs=asking)
    client = sentinels.master_for(found.service, db=found.db, **(found.connection | kwargs))
    if single:
        return driver.Redis(connection_pool=client.connection_pool, single_connection_client=True)
    return client
