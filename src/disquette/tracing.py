"""OpenTelemetry tracing of adds, gets, handlers and settles (extra ``otel``).

    import disquette.tracing
    disquette.tracing.instrument()      # or run under `opentelemetry-instrument`

Spans follow OpenTelemetry's messaging semantic conventions, with
``messaging.system = "disquette"``:

- ``send {queue}`` (PRODUCER) around an add. An add of several jobs also opens one
  ``create {queue}`` span per job, under the ``send`` span. The context of the span that
  stands for a job (``send`` for a single add, its ``create`` otherwise) travels in the
  job's headers as W3C ``traceparent`` (and ``tracestate``), through every store,
  ``disque://`` and the Disque-protocol server included.
- ``receive {queue}`` (CLIENT) around a get, with the number of jobs it returned and a
  link to the span that added each.
- ``process {queue}`` (CONSUMER) around a handler in the worker: a child of the span that
  added the job, and linked to it, so a producer and a worker in two processes share one
  trace. What the handler raises is recorded on it.
- ``settle {queue}`` (CLIENT) around ``ack``, ``nack`` and ``fail``.

Attributes: ``messaging.destination.name`` (the queue), ``messaging.message.id`` (the job
id) or ``messaging.batch.message_count``, ``messaging.operation.type`` and ``.name``,
``messaging.disquette.attempt`` and ``messaging.disquette.job_type``.

Until :func:`instrument` is called this module imports nothing from ``opentelemetry``,
and every hook is one shared do-nothing context manager.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

    from .job import Job

SYSTEM = "disquette"
#: How the semantic conventions call the operations this module traces.
SEND, CREATE, RECEIVE, PROCESS, SETTLE = "send", "create", "receive", "process", "settle"

Received = Callable[[Sequence["Job"]], None]

_tracer: Tracer | None = None
_NOTHING: AbstractContextManager[None] = contextlib.nullcontext()
_IGNORE_RECEIVED: AbstractContextManager[Received] = contextlib.nullcontext(lambda jobs: None)


def instrument(tracer_provider: TracerProvider | None = None) -> None:
    """Trace every client and worker of this process from now on, through
    ``tracer_provider`` (default: OpenTelemetry's global one)."""
    global _tracer
    from opentelemetry import trace

    from . import __version__

    _tracer = trace.get_tracer(SYSTEM, __version__, tracer_provider)


def uninstrument() -> None:
    """Stop tracing (spans already open end as usual)."""
    global _tracer
    _tracer = None


def is_instrumented() -> bool:
    """Whether :func:`instrument` is in effect."""
    return _tracer is not None


def adding(queue: str, jobs: Sequence[Job]) -> AbstractContextManager[None]:
    """Around an add of ``jobs`` to ``queue``: a ``send`` span whose context (or each job's
    ``create`` span's) is written into each job's headers on entry."""
    if _tracer is None or not jobs:
        return _NOTHING
    return _adding(_tracer, queue, jobs)


def receiving(queues: Sequence[str]) -> AbstractContextManager[Received]:
    """Around a get from ``queues``: a ``receive`` span; call what it yields with the jobs
    the get returned."""
    if _tracer is None:
        return _IGNORE_RECEIVED
    return _receiving(_tracer, queues)


def processing(job: Job) -> AbstractContextManager[None]:
    """Around a handler running ``job``: a ``process`` span, the current span while the
    handler runs, recording what it raises."""
    if _tracer is None:
        return _NOTHING
    return _processing(_tracer, job)


def settling(operation: str, jobs: Sequence[object]) -> AbstractContextManager[None]:
    """Around an ack, nack or fail (``operation``) of ``jobs`` (jobs or ids): a ``settle``
    span."""
    if _tracer is None:
        return _NOTHING
    return _settling(_tracer, operation, jobs)


# -- the spans, only reached once instrumented ---------------------------------------------


def _attributes(operation: str, name: str, queue: str | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": operation,
        "messaging.operation.name": name,
    }
    if queue is not None:
        attributes["messaging.destination.name"] = queue
    return attributes


def _name(operation: str, queue: str | None) -> str:
    return operation if queue is None else f"{operation} {queue}"


def _identify(attributes: dict[str, Any], ids: Sequence[str]) -> None:
    if len(ids) == 1:
        attributes["messaging.message.id"] = ids[0]
    else:
        attributes["messaging.batch.message_count"] = len(ids)


def _inject(job: Job, span: Span | None = None) -> None:
    """Write the context of ``span`` (default: the current span) into the job's headers."""
    from opentelemetry import propagate, trace

    carrier = dict(job.headers)  # the jobs of one add may share one headers dict
    propagate.inject(carrier, None if span is None else trace.set_span_in_context(span))
    job.headers = carrier


def _producer_span(job: Job) -> Any:
    """The span context the job's headers carry, or None."""
    if not job.headers or "traceparent" not in job.headers:
        return None
    from opentelemetry import propagate, trace

    context = trace.get_current_span(propagate.extract(job.headers)).get_span_context()
    return context if context.is_valid else None


@contextlib.contextmanager
def _adding(tracer: Tracer, queue: str, jobs: Sequence[Job]) -> Iterator[None]:
    from opentelemetry.trace import SpanKind

    with tracer.start_as_current_span(
        _name(SEND, queue), kind=SpanKind.PRODUCER, attributes=_attributes(SEND, "add", queue)
    ) as send:
        creates = []
        if len(jobs) == 1:
            _inject(jobs[0])
        else:
            for job in jobs:
                create = tracer.start_span(
                    _name(CREATE, queue),
                    kind=SpanKind.PRODUCER,
                    attributes=_attributes(CREATE, "add", queue),
                )
                _inject(job, create)
                creates.append(create)
        try:
            yield
        finally:
            # Ids are known only now: a Disque server gives its own.
            identified: dict[str, Any] = {}
            _identify(identified, [job.id for job in jobs])
            send.set_attributes(identified)
            for create, job in zip(creates, jobs, strict=False):
                create.set_attribute("messaging.message.id", job.id)
                create.end()


@contextlib.contextmanager
def _receiving(tracer: Tracer, queues: Sequence[str]) -> Iterator[Received]:
    from opentelemetry.trace import SpanKind

    queue = queues[0] if len(queues) == 1 else None
    attributes = _attributes(RECEIVE, "get", queue)
    with tracer.start_as_current_span(
        _name(RECEIVE, queue), kind=SpanKind.CLIENT, attributes=attributes
    ) as span:
        yield lambda jobs: _received(span, jobs)


def _received(span: Span, jobs: Sequence[Job]) -> None:
    if not jobs:
        span.set_attribute("messaging.batch.message_count", 0)
        return
    attributes: dict[str, Any] = {}
    _identify(attributes, [job.id for job in jobs])
    span.set_attributes(attributes)
    for job in jobs:
        producer = _producer_span(job)
        if producer is not None:
            span.add_link(producer)


@contextlib.contextmanager
def _processing(tracer: Tracer, job: Job) -> Iterator[None]:
    from opentelemetry import propagate
    from opentelemetry.trace import Link, SpanKind

    attributes = _attributes(PROCESS, "process", job.queue)
    attributes["messaging.message.id"] = job.id
    attributes["messaging.disquette.attempt"] = job.attempts
    if job.type is not None:
        attributes["messaging.disquette.job_type"] = job.type
    producer = _producer_span(job)
    with tracer.start_as_current_span(
        _name(PROCESS, job.queue),
        context=propagate.extract(job.headers) if producer is not None else None,
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        links=[Link(producer)] if producer is not None else None,
    ):
        yield


@contextlib.contextmanager
def _settling(tracer: Tracer, operation: str, jobs: Sequence[object]) -> Iterator[None]:
    from opentelemetry.trace import SpanKind

    from .job import Job

    queues = {job.queue for job in jobs if isinstance(job, Job)}
    queue = queues.pop() if len(queues) == 1 else None
    attributes = _attributes(SETTLE, operation, queue)
    _identify(attributes, [job.id if isinstance(job, Job) else str(job) for job in jobs])
    with tracer.start_as_current_span(
        _name(SETTLE, queue), kind=SpanKind.CLIENT, attributes=attributes
    ):
        yield
