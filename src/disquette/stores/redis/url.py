"""The Redis store's URL: ``redis://[[user]:password@]host[:port][/db][?options]``
(``rediss://`` for TLS), with redis-py's own options plus:

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

Both flavours read it with :func:`parse_url`; it imports no driver.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ...errors import InvalidURL
from .._url import number


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
    safe_url = url
    if parts.password:
        safe_url = urlunsplit(parts._replace(netloc=parts.netloc.replace(parts.password, "***")))
    return Settings(
        url=safe_url,
        redis_url=redis_url,
        prefix=prefix + ":",
        poll_interval=poll_interval,
        retry_for=retry_for,
        replicate_timeout=replicate_timeout,
        cluster=cluster,
    )
