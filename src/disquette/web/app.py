"""The dashboard's ASGI application: pages, actions, the live stream, health and metrics.

Every page is rendered on the server (Jinja2, autoescaped); htmx and its SSE extension,
served from ``static/``, refresh parts of a page when :meth:`AsyncClient.watch` says a
queue changed, and every 10 s without it. Links are built from the request's
``root_path``, so the app works mounted under a prefix.
"""

from __future__ import annotations

import hmac
import json
import time
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..client import Client
from ..client_admin_async import BULK_ACTIONS
from ..client_async import AsyncClient, connect_async
from ..errors import DisquetteError, InvalidInput, InvalidOption, JobNotFound, NotSupported
from ..job import Encoding, Job, JobState, check_queue_name
from ..stores.types import JobFilter
from . import queues
from .guard import CSRF_COOKIE, Guard
from .live import Broadcast

HERE = Path(__file__).parent
#: Bodies, results and errors longer than this are cut on the job page.
BODY_CAP = 64 * 1024
#: Failed jobs the failed page groups at most.
FAILED_GROUPED = 1000
#: Jobs a bulk action over a filter touches at most in one request.
BULK_LIMIT = 100_000
PAUSE_MODES = ("in", "out", "all")
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"

#: ``can(request, action) -> bool``: whether this request may do ``action`` (``retry``,
#: ``delete``, ``cancel``, ``enqueue``, ``pause``, ``resume``, ``recover``, ``schedule``).
Permission = Callable[[Request, str], bool]
#: ``formatter(job) -> str``: the text shown for a job's body (to redact secrets).
BodyFormatter = Callable[[Job], str]


@dataclass
class Settings:
    """What :func:`create_app` was given, shared by the handlers."""

    client: AsyncClient
    metrics_client: Client | None
    read_only: bool
    can: Permission | None
    formatter: BodyFormatter | None
    credentials: tuple[str, str] | None
    title: str
    poll: float
    #: The ``max_len`` the app's adds use, by queue (the store keeps none: it is an add's
    #: option), for the overview's fill.
    max_len: Mapping[str, int]
    templates: jinja2.Environment = field(init=False)
    live: Broadcast = field(init=False)

    def allowed(self, request: Request, action: str) -> bool:
        """Whether the page shows, and the app does, ``action`` for this request."""
        if self.read_only:
            return False
        return self.can is None or bool(self.can(request, action))


def create_app(
    client_or_url: AsyncClient | str | None = None,
    *,
    read_only: bool = False,
    can: Permission | None = None,
    formatter: BodyFormatter | None = None,
    credentials: tuple[str, str] | None = None,
    metrics_client: Client | None = None,
    title: str = "disquette",
    poll: float = 10.0,
    max_len: Mapping[str, int] | None = None,
) -> Starlette:
    """The dashboard as an ASGI app over ``client_or_url`` (an :class:`AsyncClient`, a
    store URL, or None for ``$DISQUETTE_URL``); mount it anywhere, under any prefix.

    ``read_only`` hides every button and refuses every action; ``can(request, action)``
    decides action by action. ``formatter(job)`` gives the text shown for a body (redact
    there). ``credentials`` (user, password) require HTTP basic auth on every path but
    ``/healthz`` and ``/readyz``. ``/metrics`` needs ``prometheus-client``; it reads the
    store's gauges through ``metrics_client`` when given, else through the app's client.
    Live parts of the pages follow the server-sent events (one store watch for all the
    browser tabs), and reload every ``poll`` seconds should the stream be cut.
    ``max_len`` maps queue names to the ``max_len`` your adds pass (the store keeps no
    such bound: it is an option of each add); the overview shows those queues' fill.
    """
    if credentials is not None and (len(credentials) != 2 or not all(credentials)):
        raise InvalidOption("credentials", "(…)", "a (user, password) pair of non-empty str")
    if isinstance(poll, bool) or not isinstance(poll, int | float) or not 1 <= poll <= 3600:
        raise InvalidOption("poll", poll, "seconds between 1 and 3600")
    bounds = dict(max_len or {})
    for queue, bound in bounds.items():
        check_queue_name(queue)
        if isinstance(bound, bool) or not isinstance(bound, int) or bound < 1:
            raise InvalidOption("max_len", bound, f"a positive int for queue {queue!r}")
    if isinstance(client_or_url, AsyncClient):
        client = client_or_url
    else:
        client = connect_async(client_or_url)
    settings = Settings(
        client, metrics_client, read_only, can, formatter, credentials, title, poll, bounds
    )
    settings.templates = _templates()
    settings.live = Broadcast(client)
    pages = _Pages(settings)
    routes = [
        Route("/", pages.overview),
        Route("/queues/{name:path}/pause", pages.pause, methods=["POST"]),
        Route("/queues/{name:path}/resume", pages.resume, methods=["POST"]),
        Route("/queues/{name:path}", pages.queue),
        Route("/jobs", pages.jobs),
        Route("/count", pages.count),
        Route("/jobs/{id:path}", pages.job),
        Route("/jobs/{id:path}/{action}", pages.job_action, methods=["POST"]),
        Route("/bulk", pages.bulk, methods=["POST"]),
        Route("/recover-stale", pages.recover, methods=["POST"]),
        Route("/failed", pages.failed),
        Route("/scheduled", pages.scheduled),
        Route("/schedules", pages.schedules),
        Route("/schedules/{name:path}/{action}", pages.schedule_action, methods=["POST"]),
        Route("/workers", pages.workers),
        Route("/events", pages.events),
        Route("/healthz", pages.healthz),
        Route("/readyz", pages.readyz),
        Route("/metrics", pages.metrics),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [Middleware(Guard, credentials=settings.credentials)]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers={})
    app.state.live = settings.live  # the shared watch (its subscribers, watches started)
    return app


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["ts"] = _timestamp
    env.filters["duration"] = _duration
    env.filters["q"] = lambda value: urllib.parse.quote(str(value), safe="")
    return env


def _timestamp(value: float | None) -> str:
    if value is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(value))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# -- pages ----------------------------------------------------------------------------


def _filter_from(params: Mapping[str, str]) -> JobFilter:
    """A :class:`JobFilter` from query or form fields (empty fields match anything)."""

    def text(name: str) -> str | None:
        value = params.get(name, "").strip()
        return value or None

    def when(name: str) -> float | None:
        value = text(name)
        if value is None:
            return None
        try:
            return time.mktime(time.strptime(value, "%Y-%m-%dT%H:%M")) - time.timezone
        except ValueError:
            raise InvalidOption(name, value, "a date and time, YYYY-MM-DDTHH:MM (UTC)") from None

    states = params.get("state", "")
    chosen = [s for s in states.split(",") if s] if states else []
    for state in chosen:
        if state not in JobState.__members__.values():
            raise InvalidOption("state", state, "one of " + ", ".join(JobState))
    return JobFilter(
        queue=text("queue"),
        states=frozenset(JobState(s) for s in chosen) or None,
        type=text("type"),
        error=text("error"),
        id_prefix=text("id"),
        since=when("since"),
        until=when("until"),
        body_path=text("path"),
        body_value=text("value"),
    )


FILTER_FIELDS = ("queue", "state", "type", "error", "id", "since", "until", "path", "value")


def error_class(last_error: str | None) -> str:
    """The exception class a job's ``last_error`` ends with (a traceback's last line),
    else the error's first 60 characters."""
    if not last_error:
        return "—"
    last = last_error.strip().splitlines()[-1]
    head = last.split(":", 1)[0].strip()
    if head and all(part.isidentifier() for part in head.split(".")):
        return head
    return last[:60]


def _body_text(job: Job, formatter: BodyFormatter | None) -> str:
    if formatter is not None:
        text = formatter(job)
    elif job.encoding is Encoding.JSON:
        try:
            text = json.dumps(json.loads(job.raw_body), indent=2, ensure_ascii=False)
        except ValueError:
            text = job.raw_body.decode("utf-8", "replace")
    else:
        text = job.raw_body.decode("utf-8", "replace") if job.raw_body else ""
    return _capped(text)


def _capped(text: str) -> str:
    if len(text) <= BODY_CAP:
        return text
    return text[:BODY_CAP] + f"\n… ({len(text) - BODY_CAP:,} more characters not shown)"


class _Pages:
    """The request handlers, over one :class:`Settings`."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.client = settings.client

    # -- rendering helpers ---------------------------------------------------------

    def render(
        self, request: Request, template_name: str, status: int = 200, **context: Any
    ) -> Response:
        """Render a template with what every page needs (prefix, token, permissions)."""
        prefix = request.scope.get("root_path", "").rstrip("/")
        template = self.s.templates.get_template(template_name)
        html = template.render(
            request=request,
            p=prefix,
            csrf=request.state.csrf,
            title=self.s.title,
            poll=f"{self.s.poll:g}s",
            read_only=self.s.read_only,
            allowed=lambda action: self.s.allowed(request, action),
            caps=self.client.store.capabilities,
            now=self.client.store.clock.now(),
            **context,
        )
        return HTMLResponse(html, status)

    async def _checked(self, request: Request, action: str) -> dict[str, str]:
        """The POSTed form, after the permission and the CSRF token are checked."""
        if not self.s.allowed(request, action):
            raise _Refused(403, f"{action}: not allowed (read-only dashboard)")
        raw = (await request.body()).decode("utf-8", "replace")
        form = {key: values[-1] for key, values in urllib.parse.parse_qs(raw).items()}
        sent = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER, "")
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not cookie or not hmac.compare_digest(sent.encode(), cookie.encode()):
            raise _Refused(403, "missing or wrong CSRF token: reload the page")
        return form

    def back(self, request: Request, form: Mapping[str, str], default: str) -> Response:
        """Redirect after a POST: to the form's ``next`` when it is a path of this app."""
        prefix = request.scope.get("root_path", "").rstrip("/")
        target = form.get("next", "")
        if not target.startswith(prefix + "/") or target.startswith("//"):
            target = prefix + default
        return RedirectResponse(target, 303)

    async def guarded(
        self, request: Request, handler: Callable[[], Awaitable[Response]]
    ) -> Response:
        """Run a handler, rendering disquette errors as an error page."""
        try:
            return await handler()
        except _Refused as refused:
            return self.render(request, "error.html", refused.status, message=refused.message)
        except JobNotFound as exc:
            return self.render(request, "error.html", 404, message=str(exc))
        except NotSupported as exc:
            return self.render(request, "error.html", 501, message=str(exc))
        except InvalidInput as exc:
            return self.render(request, "error.html", 400, message=str(exc))
        except DisquetteError as exc:
            return self.render(request, "error.html", 409, message=str(exc))

    # -- read-only pages -----------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        """Every queue: counts by state, pause mode, limits, max_len fill, latency, a
        throughput sparkline; three store calls (see :mod:`disquette.web.queues`)."""

        async def page() -> Response:
            now = self.client.store.clock.now()
            counts = await queues.read_counts(self.client, None)
            sparks = await queues.sparklines(self.client, now, None)
            limits = await queues.read_limits(self.client)
            rows = queues.rows(counts, sparks, limits, self.s.max_len, now)
            template = "_queues.html" if request.query_params.get("fragment") else "overview.html"
            return self.render(request, template, rows=rows, **self._queue_context())

        return await self.guarded(request, page)

    def _queue_context(self) -> dict[str, Any]:
        return {"states": [state.value for state in JobState], "limits_text": queues.limits_text}

    async def queue(self, request: Request) -> Response:
        """One queue: counts by state, pause mode, limits, the next ready jobs; three store
        calls."""
        name = request.path_params["name"]

        async def page() -> Response:
            now = self.client.store.clock.now()
            counts = await queues.read_counts(self.client, name)
            ready = await self.client.peek(name, 20)
            limits = await queues.read_limits(self.client)
            found = [
                row
                for row in queues.rows(counts, {}, limits, self.s.max_len, now)
                if row.name == name
            ]
            row = found[0] if found else None
            return self.render(
                request,
                "queue.html",
                name=name,
                row=row,
                mode=row.pause if row else "none",
                ready=ready,
                **self._queue_context(),
            )

        return await self.guarded(request, page)

    async def jobs(self, request: Request) -> Response:
        """Jobs matching the filter, newest first, a page at a time."""

        async def page() -> Response:
            params = dict(request.query_params)
            job_filter = _filter_from(params)
            cursor = params.get("cursor") or None
            if self.client.store.capabilities.job_filter:
                result = await self.client.scan_jobs(job_filter, cursor, 50)
                jobs, next_cursor = result.jobs, result.cursor
            else:  # the Disque protocol selects by queue and state only
                if job_filter.path or any(
                    (job_filter.type, job_filter.error, job_filter.id_prefix, job_filter.since)
                ):
                    raise NotSupported(
                        type(self.client.store).__name__, "filter", "by queue and state only"
                    )
                start = int(cursor) if cursor and cursor.isdigit() else 0
                raw, jobs = await self.client.scan(
                    start, 50, queue=job_filter.queue, states=job_filter.states
                )
                next_cursor = str(raw) if raw else None
            query = {k: params[k] for k in FILTER_FIELDS if params.get(k)}
            return self.render(
                request,
                "jobs.html",
                jobs=jobs,
                next_cursor=next_cursor,
                query=query,
                query_string=urllib.parse.urlencode(query),
                states=list(JobState),
                fields=FILTER_FIELDS,
                heading=f"{params['state'].capitalize()} jobs" if params.get("state") else "Jobs",
            )

        return await self.guarded(request, page)

    async def count(self, request: Request) -> Response:
        """The capped count of the jobs page's filter, loaded after the page (a count may
        read more rows than a page does)."""

        async def fragment() -> Response:
            if not self.client.store.capabilities.job_filter:
                return HTMLResponse("")
            found = await self.client.count(_filter_from(dict(request.query_params)))
            return HTMLResponse(f"({found})")

        return await self.guarded(request, fragment)

    async def job(self, request: Request) -> Response:
        """Every field of one job, its body, result, error, timeline and headers."""

        async def page() -> Response:
            job = await self.client.show(request.path_params["id"])
            result = None
            if job.raw_result is not None:
                result = _capped(job.raw_result.decode("utf-8", "replace"))
            timeline = sorted(
                (when, what)
                for what, when in (
                    ("created", job.created_at),
                    ("ready at" if job.state is not JobState.SCHEDULED else "runs at", job.run_at),
                    ("lease ends", job.lease_until),
                    ("finished", job.finished_at),
                    ("expires", job.expires_at),
                )
                if when
            )
            return self.render(
                request,
                "job.html",
                job=job,
                body=_body_text(job, self.s.formatter),
                result=result,
                error=_capped(job.last_error) if job.last_error else None,
                error_class=error_class(job.last_error),
                timeline=timeline,
                progress=json.dumps(job.progress) if job.progress is not None else None,
            )

        return await self.guarded(request, page)

    async def failed(self, request: Request) -> Response:
        """Failed jobs grouped by queue, type and error class."""

        async def page() -> Response:
            groups: Counter[tuple[str, str, str]] = Counter()
            # failed() reads the failed jobs' own index: no scan of the other states.
            jobs = await self.client.failed(limit=FAILED_GROUPED)
            more = len(jobs) == FAILED_GROUPED
            for job in jobs:
                groups[(job.queue, job.type or "", error_class(job.last_error))] += 1
            ordered = sorted(groups.items(), key=lambda item: (-item[1], item[0]))
            template = "_failed.html" if request.query_params.get("fragment") else "failed.html"
            return self.render(request, template, groups=ordered, more=more, total=len(jobs))

        return await self.guarded(request, page)

    async def scheduled(self, request: Request) -> Response:
        """Jobs waiting for their time (delays and retry backoffs)."""
        query = urllib.parse.urlencode({"state": "scheduled"})
        prefix = request.scope.get("root_path", "").rstrip("/")
        return RedirectResponse(f"{prefix}/jobs?{query}", 307)

    async def schedules(self, request: Request) -> Response:
        """The periodic jobs' definitions the store keeps."""

        async def page() -> Response:
            items = (
                await self.client.schedules() if self.client.store.capabilities.schedules else []
            )
            return self.render(request, "schedules.html", schedules=items)

        return await self.guarded(request, page)

    async def workers(self, request: Request) -> Response:
        """The worker processes whose heartbeats go on."""

        async def page() -> Response:
            items = await self.client.workers() if self.client.store.capabilities.workers else []
            return self.render(request, "workers.html", workers=items)

        return await self.guarded(request, page)

    # -- actions ----------------------------------------------------------------------

    async def job_action(self, request: Request) -> Response:
        """retry, delete, cancel or enqueue (run now) one job."""
        job_id = request.path_params["id"]
        action = request.path_params["action"]

        async def act() -> Response:
            if action not in BULK_ACTIONS:
                raise _Refused(404, f"no action {action!r}")
            form = await self._checked(request, action)
            if action == "retry":
                await self.client.retry(job_id)
            elif action == "delete":
                await self.client.delete(job_id)
                return self.back(request, {}, "/jobs")
            elif action == "cancel":
                await self.client.cancel(job_id)
            else:
                await self.client.enqueue([job_id])
            return self.back(request, form, f"/jobs/{urllib.parse.quote(job_id)}")

        return await self.guarded(request, act)

    async def pause(self, request: Request) -> Response:
        """Pause a queue: ``mode`` in (adds refused), out (deliveries stop) or all."""
        name = request.path_params["name"]

        async def act() -> Response:
            form = await self._checked(request, "pause")
            mode = form.get("mode", "all")
            if mode not in PAUSE_MODES:
                raise InvalidOption("mode", mode, "in, out or all")
            await self.client.set_pause(name, mode)  # type: ignore[arg-type]
            return self.back(request, form, "/queues/" + urllib.parse.quote(name))

        return await self.guarded(request, act)

    async def resume(self, request: Request) -> Response:
        """Resume a paused queue: adds and deliveries both (``resume`` alone keeps ``in``)."""
        name = request.path_params["name"]

        async def act() -> Response:
            form = await self._checked(request, "resume")
            await self.client.set_pause(name, "none")
            return self.back(request, form, "/queues/" + urllib.parse.quote(name))

        return await self.guarded(request, act)

    async def recover(self, request: Request) -> Response:
        """Requeue the jobs whose lease ran out."""

        async def act() -> Response:
            await self._checked(request, "recover")
            n = await self.client.recover_stale()
            return self.render(request, "done.html", message=f"{n} stale job(s) requeued")

        return await self.guarded(request, act)

    async def schedule_action(self, request: Request) -> Response:
        """Pause, resume or fire now a stored schedule."""
        name = request.path_params["name"]
        action = request.path_params["action"]

        async def act() -> Response:
            form = await self._checked(request, "schedule")
            if action == "pause":
                await self.client.pause_schedule(name)
            elif action == "resume":
                await self.client.resume_schedule(name)
            elif action == "fire":
                await self.client.fire_schedule(name)
            else:
                raise _Refused(404, f"no schedule action {action!r}")
            return self.back(request, form, "/schedules")

        return await self.guarded(request, act)

    async def bulk(self, request: Request) -> Response:
        """An action over the selected ids, or over everything the filter matches: a first
        POST shows the dry-run count and asks to confirm; the confirmed one acts."""

        async def act() -> Response:
            raw = (await request.body()).decode("utf-8", "replace")
            action = urllib.parse.parse_qs(raw).get("action", [""])[-1]
            if action not in BULK_ACTIONS:
                raise InvalidOption("action", action, "one of " + ", ".join(BULK_ACTIONS))
            form = await self._checked(request, action)
            ids = [i for i in urllib.parse.parse_qs(raw).get("ids", []) if i]
            job_filter = None if ids else _filter_from(form)
            if not form.get("confirm"):
                count = str(len(ids)) if ids else str(await self.client.count(job_filter))
                query = {k: form[k] for k in FILTER_FIELDS if form.get(k)}
                return self.render(
                    request, "confirm.html", action=action, ids=ids, count=count, query=query
                )
            if ids:
                n = await self.client.bulk(action, ids=ids)
            else:
                n = await self.client.bulk(action, filter=job_filter, limit=BULK_LIMIT)
            return self.render(request, "done.html", message=f"{action}: {n} job(s) changed")

        return await self.guarded(request, act)

    # -- live, health, metrics ------------------------------------------------------

    async def events(self, request: Request) -> Response:
        """Server-sent events: ``changed`` with the queue's name, debounced by ``watch``."""

        async def stream() -> AsyncIterator[str]:
            yield ": connected\n\n"
            async with self.s.live.subscribe(debounce=0.5) as subscriber:
                async for changed in subscriber.changes():
                    if await request.is_disconnected():
                        break
                    for queue in changed:
                        yield f"event: changed\ndata: {json.dumps(queue)}\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def healthz(self, request: Request) -> Response:
        """The process answers."""
        return PlainTextResponse("ok")

    async def readyz(self, request: Request) -> Response:
        """The store answers."""
        try:
            await self.client.queues()
        except DisquetteError as exc:
            return JSONResponse({"ready": False, "error": str(exc)}, 503)
        return JSONResponse({"ready": True})

    async def metrics(self, request: Request) -> Response:
        """Prometheus exposition: this process's counts and the store's gauges, read
        through ``metrics_client`` when given, else through the app's own client."""
        try:
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
        except ImportError:
            return PlainTextResponse("pip install 'disquette[prometheus]'", 501)
        from starlette.concurrency import run_in_threadpool

        from .. import metrics as metrics_module

        sync_client = self.s.metrics_client
        if sync_client is not None:
            exposed = await run_in_threadpool(metrics_module.registry, sync_client)
        else:
            try:
                reading = await metrics_module.read_store_async(self.client)
            except (DisquetteError, OSError):
                reading = None
            exposed = metrics_module.registry(extra=[metrics_module.ReadingCollector(reading)])
        body = await run_in_threadpool(generate_latest, exposed)
        return Response(body, headers={"content-type": CONTENT_TYPE_LATEST})


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)
