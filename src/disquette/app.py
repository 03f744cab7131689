"""The application object: register handlers with a decorator, enqueue through them.

    # mymodule.py: workers import it too, so it enqueues nothing at import time
    from disquette.app import App

    app = App("sqlite:///jobs.db")

    @app.job(queue="mail", retry_after=60, max_attempts=5)
    def send_email(job):
        deliver(job.body["to"])

    # the producer's code (a request handler, a script's main()...): returns the job id
    send_email.add({"to": "ada@example.com"})
    await send_email.add_async({"to": "ada@example.com"})

    # the worker: `disquette worker mymodule:app`, or from Python
    app.worker(concurrency=8).run()

Eager mode (``App(eager=True)``, or ``DISQUETTE_EAGER=1``) is for tests and development:
``add`` runs the handler at once, in the caller's thread, and raises what it raises. The
job still goes through a store (``memory://`` unless a URL is given), so ``wait`` and
``show`` work as usual; it is added with ``max_attempts=1`` and no delay.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Generic, TypeVar, overload

from . import enqueue, enqueue_async
from .client import Client, connect
from .client_async import BACKOFF_BASE, BACKOFF_CAP, AsyncClient, connect_async
from .clock import Clock
from .errors import EagerError, InvalidOption
from .flows import Step
from .job import DEFAULT_MAX_BODY_BYTES, DependencyPolicy, Job, Options, check_queue_name
from .periodic import CatchUp, Periodic, Schedule, periodic
from .stores import resolve_url
from .worker import (
    DEFAULT_QUEUE,
    Handler,
    Registry,
    Worker,
)

R = TypeVar("R")

ENV_EAGER: Final = "DISQUETTE_EAGER"
_app_ids = itertools.count(1)


class JobFunction(Generic[R]):
    """A handler registered on an :class:`App`. Calling it calls the function; ``add``
    enqueues a job for it (``add_async`` from asyncio code)."""

    #: The function's name (``functools.update_wrapper`` copies it, with its doc string).
    __name__: str

    def __init__(
        self, app: App, function: Callable[[Job], R], name: str, queue: str, options: Options
    ) -> None:
        self.app = app
        self.function = function
        #: The job type, as the worker looks it up.
        self.name = name
        #: Where ``add`` puts its jobs unless told otherwise.
        self.queue = queue
        #: The options its jobs get (type, retry_after, max_attempts...).
        self.options = options
        functools.update_wrapper(self, function)

    def __repr__(self) -> str:
        return f"<job {self.name!r} on queue {self.queue!r}>"

    def __call__(self, job: Job) -> R:
        """Call the function itself (a direct call, not a job)."""
        return self.function(job)

    def _call_options(self, call: Options) -> Options:
        """The options of one add: the handler's, then the call's (eager mode: no delay,
        one attempt)."""
        options = self.options.merge(call)
        if self.app.eager:
            options = options.merge(Options(delay=0.0, max_attempts=1))
        return options

    def _target(self, queue: str | None) -> str:
        return check_queue_name(queue or self.queue)

    def add(
        self,
        body: object = None,
        *,
        queue: str | None = None,
        delay: float | None = None,
        priority: int | None = None,
        ttl: float | None = None,
        retry_after: float | None = None,
        max_attempts: int | None = None,
        result_ttl: float | None = None,
        max_len: int | None = None,
        replicate: int | None = None,
        unique_key: str | None = None,
        headers: dict[str, str] | None = None,
        depends_on: Iterable[str] | None = None,
        on_dependency_failure: DependencyPolicy = "fail",
    ) -> str:
        """Enqueue a job for this handler (``body``: bytes, str, or JSON); return its id.

        ``unique_key``: add nothing while a job of the queue holds that key, and return the
        holder's id (see :meth:`~disquette.AsyncClient.unique`); ``headers``: metadata the
        job carries (see :meth:`~disquette.AsyncClient.add`); ``depends_on`` and
        ``on_dependency_failure``: the jobs it waits for, and what their failure does (see
        :meth:`~disquette.AsyncClient.add`). In eager mode the handler runs before ``add``
        returns (unless the key was held).
        """
        options = self._call_options(
            Options(
                delay=delay,
                priority=priority,
                ttl=ttl,
                retry_after=retry_after,
                max_attempts=max_attempts,
                result_ttl=result_ttl,
                max_len=max_len,
                replicate=replicate,
                unique_key=unique_key,
            )
        )
        app, target = self.app, self._target(queue)
        return enqueue.add_job(
            app.client,
            app.eager_registry,
            options,
            body,
            target,
            headers,
            depends_on=depends_on,
            on_dependency_failure=on_dependency_failure,
        )

    async def add_async(
        self,
        body: object = None,
        *,
        queue: str | None = None,
        delay: float | None = None,
        priority: int | None = None,
        ttl: float | None = None,
        retry_after: float | None = None,
        max_attempts: int | None = None,
        result_ttl: float | None = None,
        max_len: int | None = None,
        replicate: int | None = None,
        unique_key: str | None = None,
        headers: dict[str, str] | None = None,
        depends_on: Iterable[str] | None = None,
        on_dependency_failure: DependencyPolicy = "fail",
    ) -> str:
        """The asyncio flavor of :meth:`add`."""
        options = self._call_options(
            Options(
                delay=delay,
                priority=priority,
                ttl=ttl,
                retry_after=retry_after,
                max_attempts=max_attempts,
                result_ttl=result_ttl,
                max_len=max_len,
                replicate=replicate,
                unique_key=unique_key,
            )
        )
        app, target = self.app, self._target(queue)
        return await enqueue_async.add_job(
            app.async_client,
            app.eager_registry,
            options,
            body,
            target,
            headers,
            depends_on=depends_on,
            on_dependency_failure=on_dependency_failure,
        )

    def step(
        self,
        body: object = None,
        *,
        queue: str | None = None,
        delay: float | None = None,
        priority: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> Step:
        """A job for this handler as a step of a flow (``client.add_chain(a.step(x),
        b.step(y))``, ``add_group``): its type, queue and options are this handler's."""
        options = self._call_options(Options(delay=delay, priority=priority))
        return Step(body, self._target(queue), options, headers)

    def add_many(self, bodies: Iterable[object], *, queue: str | None = None) -> list[str]:
        """Enqueue several jobs in one transaction; return their ids."""
        options, app = self._call_options(Options()), self.app
        return enqueue.add_jobs(
            app.client, app.eager_registry, options, bodies, self._target(queue)
        )

    async def add_many_async(
        self, bodies: Iterable[object], *, queue: str | None = None
    ) -> list[str]:
        """The asyncio flavor of :meth:`add_many`."""
        options, app = self._call_options(Options()), self.app
        return await enqueue_async.add_jobs(
            app.async_client, app.eager_registry, options, bodies, self._target(queue)
        )


class App:
    """Handlers by job type, the client that enqueues for them, and their worker.

    ``url`` defaults to ``$DISQUETTE_URL``, else ``./disquette.db`` (eager mode:
    a private ``memory://`` store). ``options`` apply to every job the app adds; the
    backoff settings are those of :func:`disquette.connect`.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        eager: bool | None = None,
        options: Options | None = None,
        clock: Clock | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        backoff_base: float = BACKOFF_BASE,
        backoff_cap: float = BACKOFF_CAP,
    ) -> None:
        if eager is None:
            eager = os.environ.get(ENV_EAGER, "").strip().lower() in ("1", "true", "yes", "on")
        self.eager = eager
        app_id = next(_app_ids)
        if url is None and eager:
            url = f"memory://disquette-eager-{os.getpid()}-{app_id}"
        url = resolve_url(url)
        if url.rstrip("/") == "memory:":
            # A private memory store would differ between the sync and async clients.
            url = f"memory://disquette-app-{os.getpid()}-{app_id}"
        self.url = url
        self.options = options or Options()
        self.registry = Registry()
        self._clock = clock
        self._client_settings: dict[str, Any] = {
            "max_body_bytes": max_body_bytes,
            "backoff_base": backoff_base,
            "backoff_cap": backoff_cap,
        }
        self._client: Client | None = None
        self._async_client: AsyncClient | None = None

    def __repr__(self) -> str:
        return f"App({self.url!r}, jobs={sorted(self.registry)}, eager={self.eager})"

    # -- registering -----------------------------------------------------------------

    @overload
    def job(self, function: Callable[[Job], R], /) -> JobFunction[R]: ...

    @overload
    def job(
        self,
        name: str | None = None,
        /,
        *,
        queue: str = DEFAULT_QUEUE,
        retry_after: float | None = None,
        exec_timeout: float | None = None,
        max_attempts: int | None = None,
        priority: int | None = None,
        ttl: float | None = None,
        result_ttl: float | None = None,
    ) -> Callable[[Callable[[Job], R]], JobFunction[R]]: ...

    def job(
        self,
        name_or_function: str | Callable[[Job], R] | None = None,
        /,
        *,
        queue: str = DEFAULT_QUEUE,
        retry_after: float | None = None,
        exec_timeout: float | None = None,
        max_attempts: int | None = None,
        priority: int | None = None,
        ttl: float | None = None,
        result_ttl: float | None = None,
    ) -> JobFunction[R] | Callable[[Callable[[Job], R]], JobFunction[R]]:
        """Register a handler: ``@app.job`` or ``@app.job("name", queue=..., ...)``.

        The job type defaults to the function's name. ``retry_after``, ``max_attempts``,
        ``priority``, ``ttl`` and ``result_ttl`` are the options of the jobs ``add``
        creates; ``exec_timeout`` limits how long the worker lets the handler run.
        """

        def register(function: Callable[[Job], R]) -> JobFunction[R]:
            name = name_or_function if isinstance(name_or_function, str) else None
            return self.register(
                function,
                name=name,
                queue=queue,
                retry_after=retry_after,
                exec_timeout=exec_timeout,
                max_attempts=max_attempts,
                priority=priority,
                ttl=ttl,
                result_ttl=result_ttl,
            )

        if callable(name_or_function):
            return register(name_or_function)
        return register

    def register(
        self,
        function: Callable[[Job], R],
        *,
        name: str | None = None,
        queue: str = DEFAULT_QUEUE,
        retry_after: float | None = None,
        exec_timeout: float | None = None,
        max_attempts: int | None = None,
        priority: int | None = None,
        ttl: float | None = None,
        result_ttl: float | None = None,
    ) -> JobFunction[R]:
        """Register ``function`` as the handler of job type ``name`` (default: its name)."""
        job_type = name or getattr(function, "__name__", None)
        if not isinstance(job_type, str):
            raise InvalidOption("name", name, "give the job type a name")
        check_queue_name(queue)
        options = self.options.merge(
            Options(
                type=job_type,
                retry_after=retry_after,
                max_attempts=max_attempts,
                priority=priority,
                ttl=ttl,
                result_ttl=result_ttl,
            )
        )
        self.registry.register(job_type, function, exec_timeout=exec_timeout, queue=queue)
        return JobFunction(self, function, job_type, queue, options)

    @overload
    def periodic(
        self,
        schedule: str | float,
        *,
        type: str,
        queue: str = DEFAULT_QUEUE,
        body: object = None,
        name: str | None = None,
        tz: str = "UTC",
        catch_up: CatchUp = "latest",
    ) -> Periodic: ...

    @overload
    def periodic(
        self,
        schedule: str | float,
        *,
        type: None = None,
        queue: str | None = None,
        body: object = None,
        name: str | None = None,
        tz: str = "UTC",
        catch_up: CatchUp = "latest",
    ) -> Callable[[Callable[[Job], R]], JobFunction[R]]: ...

    def periodic(
        self,
        schedule: str | float,
        *,
        type: str | None = None,
        queue: str | None = None,
        body: object = None,
        name: str | None = None,
        tz: str = "UTC",
        catch_up: CatchUp = "latest",
    ) -> Periodic | Callable[[Callable[[Job], R]], JobFunction[R]]:
        """Fire a job at every slot of ``schedule`` (a 5-field cron expression or alias
        read in time zone ``tz``, or seconds): ``@app.periodic("0 3 * * *")`` on a handler
        (or on an ``@app.job``), or ``app.periodic(..., type="cleanup")`` for a job type
        handled elsewhere. ``name`` (default: the job type) keys the slots, ``catch_up``
        is ``"latest"``, ``"none"`` or a number of missed slots (see
        :mod:`disquette.periodic`). Every worker of the app fires them; so does
        ``disquette scheduler``.
        """
        Schedule(schedule, tz=tz, catch_up=catch_up)  # bad input fails at the call
        if type is not None:
            return self._add_periodic(
                schedule, type, queue or DEFAULT_QUEUE, body, name, tz, catch_up, self.options
            )

        def register(function: Callable[[Job], R]) -> JobFunction[R]:
            job = (
                function
                if isinstance(function, JobFunction)
                else self.register(function, queue=queue or DEFAULT_QUEUE)
            )
            self._add_periodic(
                schedule, job.name, queue or job.queue, body, name, tz, catch_up, job.options
            )
            return job

        return register

    def _add_periodic(
        self,
        schedule: str | float,
        job_type: str,
        queue: str,
        body: object,
        name: str | None,
        tz: str,
        catch_up: CatchUp,
        options: Options,
    ) -> Periodic:
        made = periodic(
            Schedule(schedule, tz=tz, catch_up=catch_up),
            name=name or job_type,
            queue=queue,
            type=job_type,
            body=body,
            priority=options.priority,
            retry_after=options.retry_after,
            max_attempts=options.max_attempts,
            result_ttl=options.result_ttl,
        )
        self.registry.add_schedule(made)
        return made

    @property
    def schedules(self) -> list[Periodic]:
        """The app's periodic jobs."""
        return self.registry.schedules

    @property
    def handlers(self) -> Mapping[str, Handler]:
        """Job type -> function, as a plain mapping."""
        return {name: spec.function for name, spec in self.registry.items()}

    @property
    def queues(self) -> list[str]:
        """The queues of the registered jobs (a worker's default)."""
        return self.registry.queues or [DEFAULT_QUEUE]

    # -- clients and workers -------------------------------------------------------------

    def connect(self, url: str | None = None) -> Client:
        """A new sync client on the app's store (or ``url``), with the app's settings."""
        return connect(url or self.url, clock=self._clock, **self._client_settings)

    def connect_async(self, url: str | None = None) -> AsyncClient:
        """A new asyncio client on the app's store (or ``url``), with the app's settings."""
        return connect_async(url or self.url, clock=self._clock, **self._client_settings)

    @property
    def client(self) -> Client:
        """The app's sync client (opened on first use)."""
        if self._client is None:
            self._client = self.connect()
        return self._client

    @property
    def async_client(self) -> AsyncClient:
        """The app's asyncio client (opened on first use; use it from one event loop)."""
        if self._async_client is None:
            self._async_client = self.connect_async()
        return self._async_client

    def worker(self, url: str | None = None, **options: Any) -> Worker:
        """A :class:`~disquette.worker.Worker` for the app's handlers (on its store, or
        ``url``); ``options`` are the worker's (queues, concurrency, ...)."""
        return Worker(lambda: self.connect_async(url), self, **options)

    def close(self) -> None:
        """Close the app's sync client (the async one: :meth:`aclose`)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        """Close both of the app's clients."""
        self.close()
        if self._async_client is not None:
            await self._async_client.close()
            self._async_client = None

    @property
    def eager_registry(self) -> Registry | None:
        """The registry ``add`` runs handlers from at once: the app's in eager mode, else None."""
        return self.registry if self.eager else None


__all__ = ["App", "EagerError", "JobFunction"]
