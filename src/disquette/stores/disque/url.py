"""``disque://`` URLs: the nodes they name and their parameters (see the store's module
documentation for the forms)."""

from __future__ import annotations

import os
from typing import Final
from urllib.parse import parse_qs, unquote, urlsplit

from ...disque import DEFAULT_PORT
from ...errors import InvalidURL
from .._url import check_known

_PARAMETERS: Final = frozenset(
    {
        "password",
        "max_idle",
        "max_active",
        "idle_timeout",
        "connect_timeout",
        "replicate_timeout",
        "cycle",
        "poll_interval",
        "retry_for",
    }
)


def parse_url(
    url: str, environ: dict[str, str] | None = None
) -> tuple[list[tuple[str, int]], dict[str, str]]:
    """The nodes (host, port) and the parameters (password included) a URL names."""
    environ = dict(os.environ) if environ is None else environ
    nodes: list[tuple[str, int]] = []
    params: dict[str, str] = {}
    body = url[len("disque://") :] if url.startswith("disque://") else url
    pieces = [piece for piece in body.split(",")]
    if not any(p.split("?")[0].rpartition("@")[2] for p in pieces):
        # disque:// (maybe with a password or parameters): the nodes come from the environment.
        for piece in pieces:
            _parse_piece(url, piece, [], params)
        listed = environ.get("DISQUE_NODES", "")
        pieces = [piece.strip() for piece in listed.split(",") if piece.strip()]
        if not pieces:
            raise InvalidURL(url, "no node: name host:port in the URL or in $DISQUE_NODES")
        pieces = [p[len("disque://") :] if p.startswith("disque://") else p for p in pieces]
    for piece in pieces:
        if piece.startswith("disque://"):
            piece = piece[len("disque://") :]
        _parse_piece(url, piece, nodes, params)
    check_known(url, params, _PARAMETERS)
    return nodes, params


def _parse_piece(
    url: str, piece: str, nodes: list[tuple[str, int]], params: dict[str, str]
) -> None:
    try:
        parts = urlsplit("disque://" + piece)
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(url, str(exc)) from None
    if parts.path not in ("", "/"):
        raise InvalidURL(url, "a disque URL has no path")
    params.update({key: values[-1] for key, values in parse_qs(parts.query).items()})
    if parts.password is not None:
        params["password"] = unquote(parts.password)
    if parts.hostname:
        nodes.append((parts.hostname, port or DEFAULT_PORT))
