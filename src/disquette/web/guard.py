"""The dashboard's guard, around every request: basic auth (compared in constant time),
same-origin checks on POST, a CSRF cookie for the forms (each handler checks the form's
token against it), and security headers on every response."""

from __future__ import annotations

import base64
import hmac
import secrets
import urllib.parse

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSRF_COOKIE = "disquette_csrf"
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'; object-src 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


class Guard:
    """Basic auth (constant-time), same-origin and token checks on POST, security headers
    on every response, and a CSRF cookie for the forms."""

    def __init__(self, app: ASGIApp, credentials: tuple[str, str] | None) -> None:
        self.app = app
        self.credentials = credentials

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry: refuse, or pass on with the headers and cookie added."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        path = scope["path"][len(scope.get("root_path", "")) :] or "/"
        credentials = self.credentials
        open_path = path in ("/healthz", "/readyz")
        if credentials and not open_path and not _authorized(request, credentials):
            response: Response = PlainTextResponse(
                "authentication required",
                401,
                headers={"www-authenticate": 'Basic realm="disquette"'},
            )
            await _secured(response)(scope, receive, send)
            return
        token = request.cookies.get(CSRF_COOKIE)
        fresh = token is None or len(token) != 43
        if fresh:
            token = secrets.token_urlsafe(32)
        scope.setdefault("state", {})["csrf"] = token
        if request.method not in ("GET", "HEAD") and not _same_origin(request):
            await _secured(PlainTextResponse("cross-site request refused", 403))(
                scope, receive, send
            )
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                if fresh:
                    cookie = f"{CSRF_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
                    headers.append((b"set-cookie", cookie.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_secured)


def _secured(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def _authorized(request: Request, credentials: tuple[str, str]) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except ValueError:
        return False
    # Both compared, always: the time taken says nothing about which one was wrong.
    user_ok = hmac.compare_digest(user.encode(), credentials[0].encode())
    password_ok = hmac.compare_digest(password.encode(), credentials[1].encode())
    return user_ok & password_ok


def _same_origin(request: Request) -> bool:
    """A POST is refused when the browser says it comes from another site (``Origin``,
    ``Sec-Fetch-Site``); the form token is checked by the handler."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urllib.parse.urlsplit(origin).netloc == request.headers.get("host", "")
