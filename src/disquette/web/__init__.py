"""The web dashboard (extra ``web``): ``disquette web``, or :func:`create_app` mounted in
any ASGI application.

    from disquette.web import create_app
    app = create_app("sqlite:///jobs.db")        # an ASGI app (Starlette)

Server-rendered pages (Starlette, Jinja2) refreshed live by htmx over server-sent events;
htmx and its SSE extension are vendored, so nothing is fetched from a CDN.
"""

from __future__ import annotations

from ..errors import UnsafeBind
from ..server import is_loopback
from .app import BODY_CAP, BodyFormatter, Permission, create_app, error_class

__all__ = [
    "BODY_CAP",
    "BodyFormatter",
    "Permission",
    "check_bind",
    "create_app",
    "error_class",
    "run",
]


def check_bind(host: str, credentials: tuple[str, str] | None, unprotected: bool = False) -> None:
    """Refuse (:class:`~disquette.errors.UnsafeBind`) to serve beyond loopback without
    credentials, unless ``unprotected``: anyone on the network could delete jobs."""
    if not is_loopback(host) and credentials is None and not unprotected:
        raise UnsafeBind(
            f"refusing to serve the dashboard on {host} without credentials: pass --user and "
            "--password (or $DISQUETTE_WEB_PASSWORD), or --unprotected if the network is trusted"
        )


def run(
    url: str | None,
    *,
    host: str = "127.0.0.1",
    port: int = 8700,
    credentials: tuple[str, str] | None = None,
    unprotected: bool = False,
    read_only: bool = False,
    max_len: dict[str, int] | None = None,
) -> None:
    """Serve the dashboard with uvicorn until interrupted (what ``disquette web`` runs)."""
    check_bind(host, credentials, unprotected)
    import uvicorn

    app = create_app(url, credentials=credentials, read_only=read_only, max_len=max_len)
    # Live streams never end by themselves: give them 2 s at a stop, then close them.
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=2)
