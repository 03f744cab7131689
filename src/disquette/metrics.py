"""Prometheus metrics (extra ``prometheus``): what clients and workers did, counted where
it happens, and what the store holds, read at scrape time.

    import disquette.metrics
    disquette.metrics.enable()                          # count in this process
    disquette.metrics.serve(9108, url="sqlite:///jobs.db")   # or: worker --metrics-port

Counted by every client (labels ``queue`` and ``type``):
``disquette_jobs_added_total``, ``disquette_jobs_add_rejected_total{reason}``,
``disquette_jobs_delivered_total``, ``disquette_jobs_completed_total`` (acked),
``disquette_jobs_nacked_total``, ``disquette_jobs_failed_total`` (failed for good), and
the histogram ``disquette_job_wait_seconds`` (delivery minus the later of ``run_at`` and
creation). Counted by workers: ``disquette_job_errors_total{error_type}``,
``disquette_jobs_timed_out_total`` and ``disquette_job_duration_seconds{outcome}``.

Read from the store at each scrape, by :class:`StoreCollector` only:
``disquette_queue_jobs{queue,state}``, ``disquette_queue_latency_seconds{queue}`` (age of
the oldest ready job), ``disquette_queue_paused{queue}``, ``disquette_workers`` (worker
processes registered, on stores with a worker registry) and ``disquette_store_up``
(:func:`store_families`, the one place they are made, from a :class:`StoreReading`).
``disquette server --metrics-port`` adds the server's connections and commands
(:class:`ServerCollector`).

Labels never carry a job id, and each label keeps at most :data:`MAX_LABEL_VALUES`
values per process: later ones are counted under ``_other``. Worker processes started by
``worker --processes`` count into files under ``PROMETHEUS_MULTIPROC_DIR`` (made for them
when unset) that the parent adds up at each scrape. Until :func:`enable` is called,
nothing is imported from ``prometheus_client`` and every hook returns at once.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from .errors import DisquetteError, StoreError
from .job import Job, JobState, StatsRow
from .stores.types import QueueInfo

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector

    from .client import Client
    from .client_async import AsyncClient

#: Distinct values one label keeps per process before the rest count as ``_other``.
MAX_LABEL_VALUES = 100
OTHER = "_other"
UNKNOWN = "_unknown"
#: Environment variable that tells a worker process started by the supervisor to count.
ENV_METRICS = "DISQUETTE_METRICS"
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"

#: Why an add was refused, by error class (the rest: the class name).
_REASONS = {
    "QueueFull": "queue_full",
    "QueuePaused": "queue_paused",
    "NotReplicated": "not_replicated",
    "StoreUnavailable": "store_unavailable",
    "StoreRefused": "store_unavailable",
    "BodyTooLarge": "body_too_large",
    "BodyNotSerializable": "body_not_serializable",
    "NotSupported": "not_supported",
}
_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 1800, 3600)


class _Capped:
    """The values a label has taken in this process, at most ``limit`` of them."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str | None) -> str:
        if value is None:
            return UNKNOWN
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) >= self._limit:
                return OTHER
            self._seen.add(value)
        return value


class _Metrics:
    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self.queue = _Capped(MAX_LABEL_VALUES)
        self.type = _Capped(MAX_LABEL_VALUES)
        self.error_type = _Capped(MAX_LABEL_VALUES)
        job = ("queue", "type")
        # Registered by registry(), not here: each exposition builds its own registry.
        kw: dict[str, Any] = {"registry": None}
        self.added = Counter("disquette_jobs_added", "Jobs added.", job, **kw)
        self.rejected = Counter(
            "disquette_jobs_add_rejected", "Adds refused.", ("queue", "reason"), **kw
        )
        self.delivered = Counter("disquette_jobs_delivered", "Jobs delivered by get.", job, **kw)
        self.completed = Counter("disquette_jobs_completed", "Jobs acked.", job, **kw)
        self.nacked = Counter("disquette_jobs_nacked", "Jobs given back.", job, **kw)
        self.failed = Counter("disquette_jobs_failed", "Jobs failed for good.", job, **kw)
        self.errors = Counter("disquette_job_errors", "Handler errors.", (*job, "error_type"), **kw)
        self.timed_out = Counter(
            "disquette_jobs_timed_out", "Handlers past their time limit.", job, **kw
        )
        self.duration = Histogram(
            "disquette_job_duration_seconds",
            "Handler run time.",
            (*job, "outcome"),
            buckets=_DURATION_BUCKETS,
            **kw,
        )
        self.wait = Histogram(
            "disquette_job_wait_seconds",
            "Time from ready to delivered.",
            job,
            buckets=_WAIT_BUCKETS,
            **kw,
        )
        self.collectors = (
            self.added, self.rejected, self.delivered, self.completed, self.nacked,
            self.failed, self.errors, self.timed_out, self.duration, self.wait,
        )  # fmt: skip

    def labels(self, job: Job) -> tuple[str, str]:
        return self.queue(job.queue), self.type(job.type)


_metrics: _Metrics | None = None


def enable() -> None:
    """Count from now on in this process (idempotent). Under ``PROMETHEUS_MULTIPROC_DIR``
    the counts go to that directory for a parent process to expose."""
    global _metrics
    if _metrics is None:
        _metrics = _Metrics()


def is_enabled() -> bool:
    """Whether :func:`enable` was called in this process."""
    return _metrics is not None


# -- hooks: one global check when disabled ---------------------------------------------------


def added(queue: str, jobs: Sequence[Job], existing: dict[str, str]) -> None:
    """``jobs`` were given to the store; those in ``existing`` were not created."""
    if _metrics is None:
        return
    for job in jobs:
        if job.id not in existing:
            _metrics.added.labels(*_metrics.labels(job)).inc()


def add_rejected(queue: str, error: BaseException) -> None:
    """An add to ``queue`` raised ``error``."""
    if _metrics is None:
        return
    name = type(error).__name__
    reason = _REASONS.get(name, name)
    _metrics.rejected.labels(_metrics.queue(queue), _metrics.error_type(reason)).inc()


def delivered(jobs: Sequence[Job], now: float) -> None:
    """A get returned ``jobs`` at ``now`` (store clock)."""
    if _metrics is None:
        return
    for job in jobs:
        labels = _metrics.labels(job)
        _metrics.delivered.labels(*labels).inc()
        _metrics.wait.labels(*labels).observe(max(0.0, now - max(job.run_at, job.created_at)))


def completed(jobs: Iterable[object], count: int) -> None:
    """``count`` of ``jobs`` (jobs or ids) were acked."""
    _settled("completed", jobs, count)


def nacked(jobs: Iterable[object], count: int) -> None:
    """``count`` of ``jobs`` (jobs or ids) were given back."""
    _settled("nacked", jobs, count)


def failed(job: Job) -> None:
    """``job`` failed for good."""
    if _metrics is not None:
        _metrics.failed.labels(*_metrics.labels(job)).inc()


def handled(job: Job, outcome: str, duration: float, error: BaseException | None) -> None:
    """A worker's handler for ``job`` ended with ``outcome`` (``ok``, ``error``,
    ``timeout``, ``cancelled``) after ``duration`` seconds."""
    if _metrics is None:
        return
    labels = _metrics.labels(job)
    _metrics.duration.labels(*labels, outcome).observe(duration)
    if outcome == "timeout":
        _metrics.timed_out.labels(*labels).inc()
    if error is not None:
        error_type = _metrics.error_type(type(error).__name__)
        _metrics.errors.labels(*labels, error_type).inc()


def _settled(counter: str, jobs: Iterable[object], count: int) -> None:
    if _metrics is None or count <= 0:
        return
    metric = getattr(_metrics, counter)
    known = [job for job in jobs if isinstance(job, Job)]
    if len(known) == count:
        for job in known:
            metric.labels(*_metrics.labels(job)).inc()
    else:  # by id, or some were not settled: which ones is not known here
        metric.labels(UNKNOWN, UNKNOWN).inc(count)


# -- exposition ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class StoreReading:
    """What the store gauges show, read from the store at one scrape."""

    #: Jobs by state, per queue (every :class:`~disquette.JobState`).
    jobs: Mapping[str, Mapping[str, int]]
    #: Per queue: its pause mode and, when a job is ready, when the next one became ready.
    pause: Mapping[str, str]
    ready_since: Mapping[str, float]
    now: float
    #: Workers registered (None: the store keeps no worker registry).
    workers: int | None


def read_store(client: Client) -> StoreReading:
    """Read the store gauges through a synchronous client."""
    by_queue = client.stats().by_queue()
    infos = {info.name: info for info in client.queues()}
    names = sorted(set(by_queue) | set(infos))[:MAX_LABEL_VALUES]
    since = {}
    for name in names:
        info = infos.get(name)
        oldest = client.peek(name) if info and info.queued else []
        if oldest:
            since[name] = max(oldest[0].run_at, oldest[0].created_at)
    workers = len(client.workers()) if client.store.capabilities.workers else None
    return _reading(by_queue, infos, names, since, client.store.clock.now(), workers)


async def read_store_async(client: AsyncClient) -> StoreReading:
    """Read the store gauges through an asyncio client (what the dashboard's ``/metrics``
    does when it has no synchronous client)."""
    by_queue = (await client.stats()).by_queue()
    infos = {info.name: info for info in await client.queues()}
    names = sorted(set(by_queue) | set(infos))[:MAX_LABEL_VALUES]
    since = {}
    for name in names:
        info = infos.get(name)
        oldest = await client.peek(name) if info and info.queued else []
        if oldest:
            since[name] = max(oldest[0].run_at, oldest[0].created_at)
    workers = len(await client.workers()) if client.store.capabilities.workers else None
    return _reading(by_queue, infos, names, since, client.store.clock.now(), workers)


def _reading(
    by_queue: dict[str, StatsRow],
    infos: dict[str, QueueInfo],
    names: list[str],
    since: dict[str, float],
    now: float,
    workers: int | None,
) -> StoreReading:
    jobs = {
        name: {state.value: getattr(by_queue.get(name), state.value, 0) for state in JobState}
        for name in names
    }
    pause = {name: infos[name].pause if name in infos else "none" for name in names}
    return StoreReading(jobs, pause, since, now, workers)


def store_families(reading: StoreReading) -> list[Metric]:
    """The store gauges of one reading: queue jobs by state, latency, pause, workers."""
    from prometheus_client.core import GaugeMetricFamily

    jobs = GaugeMetricFamily(
        "disquette_queue_jobs", "Jobs in the store.", labels=("queue", "state")
    )
    latency = GaugeMetricFamily(
        "disquette_queue_latency_seconds",
        "Age of the oldest ready job.",
        labels=("queue",),
    )
    paused = GaugeMetricFamily(
        "disquette_queue_paused", "1 if the queue is paused.", labels=("queue",)
    )
    for name, counts in reading.jobs.items():
        for state, count in counts.items():
            jobs.add_metric([name, state], count)
        paused.add_metric([name], 1 if reading.pause[name] != "none" else 0)
        since = reading.ready_since.get(name)
        latency.add_metric([name], 0.0 if since is None else max(0.0, reading.now - since))
    families: list[Metric] = [jobs, latency, paused]
    if reading.workers is not None:
        workers = GaugeMetricFamily("disquette_workers", "Worker processes registered.")
        workers.add_metric([], reading.workers)
        families.append(workers)
    return families


def _up(value: int) -> Metric:
    from prometheus_client.core import GaugeMetricFamily

    up = GaugeMetricFamily("disquette_store_up", "Whether the store answered the scrape.")
    up.add_metric([], value)
    return up


class StoreCollector:
    """The store's gauges, read at each scrape through ``client`` (one place only:
    :func:`store_families`)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._lock = threading.Lock()  # one scrape at a time per client

    def describe(self) -> list[Metric]:
        """Nothing up front: the collector's values come from the store at scrape time."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Queue counts by state, latency, pause, and whether the store answered."""
        try:
            with self._lock:
                reading = read_store(self.client)
        except _UNREADABLE:
            yield _up(0)
            return
        yield _up(1)
        yield from store_families(reading)


class ReadingCollector:
    """The store's gauges of a reading made beforehand (by :func:`read_store_async`;
    None: the store did not answer)."""

    def __init__(self, reading: StoreReading | None) -> None:
        self.reading = reading

    def describe(self) -> list[Metric]:
        """Nothing up front, as :class:`StoreCollector`."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The reading's families, and whether the store answered."""
        yield _up(0 if self.reading is None else 1)
        if self.reading is not None:
            yield from store_families(self.reading)


_UNREADABLE = (StoreError, DisquetteError, OSError)


def registry(client: Client | None = None, extra: Iterable[Collector] = ()) -> CollectorRegistry:
    """A registry for exposition: this process's counts (or, under
    ``PROMETHEUS_MULTIPROC_DIR``, every process's), plus the store's gauges read through
    ``client``, plus ``extra`` collectors (:class:`ReadingCollector`,
    :class:`ServerCollector`)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    exposed = CollectorRegistry()
    directory = os.environ.get(MULTIPROC_DIR)
    if directory:
        MultiProcessCollector(exposed, path=directory)  # type: ignore[no-untyped-call]
    elif _metrics is not None:
        for collector in _metrics.collectors:
            exposed.register(collector)
    if client is not None:
        exposed.register(StoreCollector(client))
    for added in extra:
        exposed.register(added)
    return exposed


class ServerCounters(Protocol):
    """What :class:`ServerCollector` reads of a Disque-protocol server (its INFO)."""

    connected: int
    blocked: int
    total_connections: int
    rejected_connections: int
    commands_processed: int
    net_input_bytes: int
    net_output_bytes: int


class ServerCollector:
    """A ``disquette server``'s connections and commands, read at each scrape (what its
    INFO says): ``disquette_server_connections`` (clients connected now),
    ``disquette_server_blocked_clients``, and the counters
    ``disquette_server_connections_accepted_total``,
    ``disquette_server_connections_rejected_total``, ``disquette_server_commands_total``,
    ``disquette_server_net_input_bytes_total`` and ``disquette_server_net_output_bytes_total``.
    """

    def __init__(self, server: ServerCounters) -> None:
        self.server = server

    def describe(self) -> list[Metric]:
        """Nothing up front: the values are read at scrape time."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The server's gauges and counters now."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        server = self.server
        gauges = (
            ("disquette_server_connections", "Clients connected now.", server.connected),
            ("disquette_server_blocked_clients", "Clients blocked in GETJOB.", server.blocked),
        )
        for name, help_text, value in gauges:
            yield GaugeMetricFamily(name, help_text, value=value)
        counters = (
            ("connections_accepted", "Connections accepted.", server.total_connections),
            ("connections_rejected", "Connections refused.", server.rejected_connections),
            ("commands", "Commands processed.", server.commands_processed),
            ("net_input_bytes", "Bytes read from clients.", server.net_input_bytes),
            ("net_output_bytes", "Bytes written to clients.", server.net_output_bytes),
        )
        for name, help_text, value in counters:
            yield CounterMetricFamily(f"disquette_server_{name}", help_text, value=value)


class Exporter:
    """A ``/metrics`` HTTP endpoint served from a daemon thread (:func:`start`)."""

    def __init__(self, port: int, close: Callable[[], None]) -> None:
        #: The port bound.
        self.port = port
        self._close = close

    def close(self) -> None:
        """Stop serving."""
        self._close()


def start(
    port: int,
    client: Client | None = None,
    host: str = "127.0.0.1",
    extra: Iterable[Collector] = (),
) -> Exporter:
    """Serve ``/metrics`` on ``host:port`` (0: a free port) from a daemon thread: this
    process's counts, the store's gauges through ``client``, and ``extra`` collectors."""
    from prometheus_client import start_http_server

    enable()
    server, thread = start_http_server(port, host, registry(client, extra))

    def close() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return Exporter(int(server.server_port), close)


def serve(port: int, client: Client | None = None, host: str = "127.0.0.1") -> int:
    """Serve ``/metrics`` on ``host:port`` from a daemon thread; return the port bound
    (``port`` 0 picks a free one)."""
    return start(port, client, host).port
