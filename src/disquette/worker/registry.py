"""Handlers by job type: :class:`Registry`, :class:`HandlerSpec`, :func:`as_registry`."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, TypeAlias, cast

from ..errors import InvalidOption
from ..job import Job, Options, check_queue_names
from ..periodic import Periodic
from .config import CATCH_ALL, check_positive

Handler: TypeAlias = Callable[[Job], Any]
"""A job handler: ``def f(job) -> result`` or ``async def f(job) -> result``."""


def is_async_handler(function: Callable[..., Any]) -> bool:
    """Whether calling ``function`` returns a coroutine: ``async def``, a callable object
    whose ``__call__`` is one, a ``functools.partial`` of one, or a wrapper of one made by
    ``functools.wraps`` (an App's decorated job)."""
    with contextlib.suppress(ValueError):  # a cycle of __wrapped__
        function = inspect.unwrap(function)
    if inspect.iscoroutinefunction(function):
        return True
    call = getattr(function, "__call__", None)  # noqa: B004 (callable objects)
    return call is not None and inspect.iscoroutinefunction(call)


@dataclasses.dataclass(frozen=True, slots=True)
class HandlerSpec:
    """A registered handler and how the worker runs it."""

    #: The job type it handles (``Options.type`` of the jobs).
    name: str
    function: Handler
    is_async: bool
    #: Seconds after which the handler is cancelled (async) or abandoned (sync).
    exec_timeout: float | None = None
    #: The queue its jobs go to by default (used to pick a worker's queues).
    queue: str | None = None


class Registry(Mapping[str, HandlerSpec]):
    """Handlers by job type: a plain mapping (Que's WorkMap) with per-handler settings."""

    def __init__(self, handlers: Mapping[str, Handler] | None = None) -> None:
        self._specs: dict[str, HandlerSpec] = {}
        #: Periodic jobs, which the workers of these handlers schedule (``App.periodic``).
        self.schedules: list[Periodic] = []
        for name, function in (handlers or {}).items():
            self.register(name, function)

    def register(
        self,
        name: str,
        function: Handler,
        *,
        exec_timeout: float | None = None,
        queue: str | None = None,
    ) -> HandlerSpec:
        """Add a handler for job type ``name``; return its spec."""
        if name != CATCH_ALL:
            Options(type=name)  # the same rules as the job's type
        if not callable(function):
            raise InvalidOption("handler", function, "a handler is callable")
        if exec_timeout is not None:
            check_positive("exec_timeout", exec_timeout)
        if queue is not None:
            check_queue_names([queue])
        if name in self._specs:
            raise InvalidOption("type", name, "a handler is already registered for this type")
        spec = HandlerSpec(name, function, is_async_handler(function), exec_timeout, queue)
        self._specs[name] = spec
        return spec

    def add_schedule(self, periodic: Periodic) -> None:
        """Schedule a periodic job; its name must be new."""
        if any(known.name == periodic.name for known in self.schedules):
            raise InvalidOption("name", periodic.name, "a periodic job has this name already")
        self.schedules.append(periodic)

    def resolve(self, job_type: str | None, queue: str | None = None) -> HandlerSpec | None:
        """The handler for a job of this type in this queue: its type's own; for a job
        without a type (one a Disque client of another language added), the one handler
        that declared its queue; else the catch-all; else ``None``."""
        if job_type is not None:
            spec = self._specs.get(job_type)
            if spec is not None:
                return spec
        elif queue is not None:
            declared = [s for s in self._specs.values() if s.queue == queue]
            if len(declared) == 1:
                return declared[0]
        return self._specs.get(CATCH_ALL)

    def serves(self, queue: str) -> bool:
        """Whether these handlers are meant for ``queue``: a catch-all, a handler that
        declared it, or one that declared no queue (a plain mapping's, which takes jobs of
        its type from any queue). Else only jobs added there with a handled type would run:
        a worker on such a queue says so."""
        return any(
            spec.name == CATCH_ALL or spec.queue in (None, queue) for spec in self._specs.values()
        )

    @property
    def queues(self) -> list[str]:
        """The queues the handlers declared, in registration order, without repeats."""
        return list(dict.fromkeys(s.queue for s in self._specs.values() if s.queue is not None))

    def __getitem__(self, name: str) -> HandlerSpec:
        return self._specs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        return f"Registry({sorted(self._specs)})"


class HasRegistry(Protocol):
    """Anything with a ``registry`` (an :class:`~disquette.app.App`)."""

    @property
    def registry(self) -> Registry:
        """The handlers."""
        ...


Handlers: TypeAlias = Mapping[str, Handler] | Registry | HasRegistry


def as_registry(handlers: Handlers) -> Registry:
    """Turn a mapping, a :class:`Registry` or an app into a :class:`Registry`."""
    if isinstance(handlers, Registry):
        return handlers
    registry = getattr(handlers, "registry", None)
    if isinstance(registry, Registry):
        return registry
    if isinstance(handlers, Mapping):
        return Registry(cast("Mapping[str, Handler]", handlers))
    raise InvalidOption("handlers", handlers, "a mapping of job type to handler, or an App")
