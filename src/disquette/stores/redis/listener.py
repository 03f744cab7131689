"""The parts of the Redis store that block a thread in both flavours: the wake-up listener
(a thread reading a pub/sub connection), the marker watcher (a thread blocked on the queue
markers of the queues this process waits on) and the probe run once when a store is opened.

Hand-written, not generated: the asyncio sources (``store_async.py``, ``runner_async.py``)
and their generated sync twins all import from here, so the sources import only
``redis.asyncio``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

import redis
import redis.retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    RedisError,
    ResponseError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)

from ...errors import StoreRefused, StoreUnavailable
from ..types import CANCEL_CHANNEL, DONE_CHANNEL, JOB_DONE_PREFIX, Wakeups, job_done_channel
from .codec import queue_base
from .url import Settings, open_client

#: How much longer than its BZPOPMIN timeout the marker watcher waits for the reply before
#: it drops the connection (a connection a reconnect left blocked would never answer).
WATCH_MARGIN: Final = 2.0
#: Sets field w of a job that exists: a wait() registers interest in its end.
_REGISTER_WAITER: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'w', '1') end
return 0
"""

#: Server replies that mean "not now, try again": a restart, a failover, a resharding.
_TRANSIENT_REPLIES: Final = ("LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN")


def is_transient(exc: Exception) -> bool:
    """Whether ``exc`` means Redis is away for now (unreachable, loading, failing over)."""
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith(_TRANSIENT_REPLIES)


class WakeupListener:
    """A thread that turns Redis wake-up messages into :meth:`Wakeups.notify` calls.

    It subscribes to a channel the first time a caller blocks on it and stays subscribed
    (scripts publish only when a queue goes from empty to not empty, so an idle
    subscription costs nothing). Every subscribe confirmation, including the ones redis-py
    sends again after a reconnect, notifies the channel's waiters, so whatever was
    published while the connection was down is looked at again.
    """

    def __init__(self, redis_url: str, prefix: str, wakeups: Wakeups) -> None:
        self._prefix = prefix
        self._done = (prefix + "done").encode()
        self._cancel = (prefix + "cancel").encode()
        self._queue_prefix = (prefix + "w:").encode()
        self._job_prefix = (prefix + "d:").encode()
        self._wakeups = wakeups
        self._client: redis.Redis = open_client(
            redis_url, redis, retry=redis.retry.Retry(NoBackoff(), 0)
        )
        self._pubsub = self._client.pubsub()
        self._lock = threading.Lock()
        self._confirmed: dict[bytes, threading.Event] = {}
        self._thread: threading.Thread | None = None
        self._closed = False

    def channel(self, name: str) -> bytes:
        """The Redis channel of a wake-up channel name (a queue, ``DONE_CHANNEL`` or
        ``CANCEL_CHANNEL``)."""
        if name == DONE_CHANNEL:
            return self._done
        if name == CANCEL_CHANNEL:
            return self._cancel
        if name.startswith(JOB_DONE_PREFIX):
            return self._job_prefix + name[len(JOB_DONE_PREFIX) :].encode()
        return self._queue_prefix + name.encode()

    def ensure(self, names: Iterable[str], wait: float = 0.5) -> None:
        """Subscribe to ``names`` and wait (at most ``wait`` s) until Redis confirms."""
        channels = [self.channel(name) for name in names]
        with self._lock:
            if self._closed:
                return
            new = [channel for channel in channels if channel not in self._confirmed]
            for channel in new:
                self._confirmed[channel] = threading.Event()
            events = [self._confirmed[channel] for channel in channels]
            if new:
                # On failure redis-py subscribes again when it reconnects; polling covers it.
                with contextlib.suppress(RedisError):
                    self._pubsub.subscribe(*new)
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="disquette-redis-wakeups", daemon=True
                    )
                    self._thread.start()
        deadline = time.monotonic() + wait
        for event in events:
            event.wait(max(0.0, deadline - time.monotonic()))

    def release(self, names: Iterable[str]) -> None:
        """Unsubscribe from ``names`` (a job's channel, once nobody here waits on it)."""
        channels = [self.channel(name) for name in names]
        with self._lock:
            if self._closed:
                return
            for channel in channels:
                self._confirmed.pop(channel, None)
            with contextlib.suppress(RedisError):
                self._pubsub.unsubscribe(*channels)  # type: ignore[no-untyped-call,unused-ignore]

    def _run(self) -> None:
        failures = 0
        while not self._closed:
            try:
                message = self._pubsub.get_message(timeout=1.0)
                failures = 0
            except Exception:
                if self._closed:
                    return
                # Redis went away: redis-py reconnects and subscribes again on a later
                # call; its confirmations wake the waiters then.
                failures += 1
                time.sleep(min(0.05 * failures, 1.0))
                continue
            if message is not None:
                self._handle(message)

    def _handle(self, message: dict[str, Any]) -> None:
        channel = message["channel"]
        if message["type"] == "subscribe":
            event = self._confirmed.get(channel)
            if event is not None:
                event.set()
        elif message["type"] != "message":
            return
        if channel == self._done:
            self._wakeups.notify([DONE_CHANNEL])
        elif channel == self._cancel:
            self._wakeups.notify([CANCEL_CHANNEL])
        elif channel.startswith(self._job_prefix):
            self._wakeups.notify([job_done_channel(channel[len(self._job_prefix) :].decode())])
        elif channel.startswith(self._queue_prefix):
            self._wakeups.notify([channel[len(self._queue_prefix) :].decode()])

    def close(self) -> None:
        """Stop the thread and close the connection."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
        try:
            self._pubsub.close()
            self._client.close()
        except Exception:  # pragma: no cover - best effort while the thread reads
            pass
        if thread is not None and thread is not threading.current_thread():
            thread.join(2.0)


class MarkerWatcher:
    """A thread blocked in ``BZPOPMIN`` on the markers of the queues this process waits on
    through :class:`Wakeups` (a worker's fetcher), turning each marker it pops into a
    notify of that queue: an add wakes one process, not every one (one server only; on a
    Cluster the scripts publish instead).

    A new queue interrupts the block (``CLIENT UNBLOCK``); a marker popped for a queue
    nobody here waits on any more is put back. The block lasts ``block`` seconds at most,
    and a reply later than that by ``WATCH_MARGIN`` drops the connection: a connection a
    reconnect left blocked cannot stall the watcher. After any failure every queue
    watched is notified, so what its markers said meanwhile is looked at again.
    """

    def __init__(self, redis_url: str, prefix: str, wakeups: Wakeups, block: float) -> None:
        self._prefix = prefix
        self._wakeups = wakeups
        self._block = block
        retry = redis.retry.Retry(NoBackoff(), 0)
        self._client: redis.Redis = open_client(
            redis_url, redis, retry=retry, socket_timeout=block + WATCH_MARGIN,
            single_connection_client=True,
        )  # fmt: skip
        self._control: redis.Redis = open_client(redis_url, redis, retry=retry, socket_timeout=5.0)
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._changed = threading.Event()
        self._client_id: int | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def marker(self, queue: str) -> str:
        """A queue's marker key (see ``common.lua``)."""
        return queue_base(self._prefix, queue) + "w"

    def watch(self, queues: Iterable[str]) -> None:
        """Wake ``queues``' subscribers on their markers, until as many :meth:`unwatch`."""
        with self._lock:
            if self._closed:
                return
            new = False
            for queue in queues:
                new = new or queue not in self._counts
                self._counts[queue] = self._counts.get(queue, 0) + 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="disquette-redis-markers", daemon=True
                )
                self._thread.start()
            blocked = self._client_id
        if new:
            self._changed.set()
            if blocked is not None:  # block again, on the new list too
                with contextlib.suppress(RedisError):
                    self._control.execute_command(  # type: ignore[no-untyped-call]
                        "CLIENT", "UNBLOCK", blocked
                    )

    def unwatch(self, queues: Iterable[str]) -> None:
        """Undo one :meth:`watch` of ``queues``."""
        with self._lock:
            for queue in queues:
                left = self._counts.get(queue, 0) - 1
                if left > 0:
                    self._counts[queue] = left
                else:
                    self._counts.pop(queue, None)

    def _run(self) -> None:
        failures = 0
        while not self._closed:
            self._changed.clear()
            with self._lock:
                queues = list(self._counts)
            if not queues:
                self._changed.wait(1.0)
                continue
            try:
                if self._client_id is None:
                    self._client_id = int(self._client.client_id())
                keys = [self.marker(queue) for queue in queues]
                popped = self._client.bzpopmin(keys, timeout=self._block)
                failures = 0
            except Exception:
                if self._closed:
                    return
                self._client_id = None
                failures += 1
                time.sleep(min(0.05 * failures, 1.0))
                self._wakeups.notify(queues)
                continue
            if popped:
                key = bytes(popped[0]).decode()  # type: ignore[arg-type]
                self._woken(queues[keys.index(key)], key)

    def _woken(self, queue: str, key: str) -> None:
        with self._lock:
            watched = queue in self._counts
        if watched:
            self._wakeups.notify([queue])
        else:  # nobody here waits on it any more: the wake-up is someone else's
            with contextlib.suppress(RedisError):
                self._client.zadd(key, {"0": 0})

    def close(self) -> None:
        """Stop the thread and close the connections."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
            blocked = self._client_id
        self._changed.set()
        with contextlib.suppress(Exception):
            if blocked is not None:
                self._control.execute_command(  # type: ignore[no-untyped-call]
                    "CLIENT", "UNBLOCK", blocked
                )
        if thread is not None and thread is not threading.current_thread():
            thread.join(2.0)
        with contextlib.suppress(Exception):
            self._client.close()
            self._control.close()


class RedisWakeups(Wakeups):
    """:class:`Wakeups` that also listens to Redis for the channels someone waits on: a
    queue's marker (one server) or its published wake-ups (a Cluster), a job's end (a
    channel of its own, its waiter registered in the job so that only it is signalled),
    flushes and cancel requests."""

    def __init__(
        self,
        listener_factory: Callable[[], WakeupListener],
        watcher_factory: Callable[[], MarkerWatcher] | None,
        register_waiter: Callable[[str], None],
    ) -> None:
        super().__init__()
        self._factory = listener_factory
        self._watcher_factory = watcher_factory
        self._register_waiter = register_waiter
        self._listener: WakeupListener | None = None
        self._watcher: MarkerWatcher | None = None
        self._listener_lock = threading.Lock()
        self._job_waits: dict[str, int] = {}

    def subscribe(
        self, channels: Iterable[str], callback: Callable[[], None]
    ) -> Callable[[], None]:
        """Subscribe in-process, and make sure Redis wakes ``channels``."""
        names = list(channels)
        unsubscribe = super().subscribe(names, callback)
        marked = self._watcher_factory is not None
        queues = [n for n in names if marked and n not in (DONE_CHANNEL, CANCEL_CHANNEL)]
        queues = [n for n in queues if not n.startswith(JOB_DONE_PREFIX)]
        published = [n for n in names if n not in queues]
        jobs = [n for n in names if n.startswith(JOB_DONE_PREFIX)]
        with self._listener_lock:
            if self._listener is None:
                self._listener = self._factory()
            listener = self._listener
            if queues and self._watcher is None and self._watcher_factory is not None:
                self._watcher = self._watcher_factory()
            watcher = self._watcher
            for name in jobs:
                self._job_waits[name] = self._job_waits.get(name, 0) + 1
        if published:
            listener.ensure(published)
        for name in jobs:  # subscribed first: an end right after this is not missed
            with contextlib.suppress(RedisError):
                self._register_waiter(name[len(JOB_DONE_PREFIX) :])
        if queues and watcher is not None:
            watcher.watch(queues)

        def undo() -> None:
            unsubscribe()
            if queues and watcher is not None:
                watcher.unwatch(queues)
            if jobs:
                self._release_jobs(listener, jobs)

        return undo

    def _release_jobs(self, listener: WakeupListener, jobs: list[str]) -> None:
        gone = []
        with self._listener_lock:
            for name in jobs:
                left = self._job_waits.get(name, 0) - 1
                if left > 0:
                    self._job_waits[name] = left
                else:
                    self._job_waits.pop(name, None)
                    gone.append(name)
        if gone:
            listener.release(gone)

    def close(self) -> None:
        """Stop listening."""
        with self._listener_lock:
            listener, self._listener = self._listener, None
            watcher, self._watcher = self._watcher, None
        if listener is not None:
            listener.close()
        if watcher is not None:
            watcher.close()


class WaiterRegistry:
    """Registers a ``wait()`` in the job it waits on (field ``w``), so that the scripts
    publish that job's end on its own channel (see ``common.lua``). Its own connection,
    made on first use: the waits of both flavours call it from a subscribe."""

    def __init__(self, redis_url: str, prefix: str, *, cluster: bool) -> None:
        self._url = redis_url
        self._prefix = prefix
        self._cluster = cluster
        self._client: Any = None
        self._script: Any = None
        self._lock = threading.Lock()

    def __call__(self, job_id: str) -> None:
        """Mark the job ``job_id`` (if it exists) as waited on."""
        with self._lock:
            if self._client is None:
                retry = redis.retry.Retry(NoBackoff(), 0)
                if self._cluster:
                    self._client = redis.RedisCluster.from_url(
                        self._url, retry=retry, socket_timeout=5.0
                    )
                else:
                    self._client = open_client(self._url, redis, retry=retry, socket_timeout=5.0)
                self._script = self._client.register_script(_REGISTER_WAITER)
            client, script = self._client, self._script
        if self._cluster:
            queue = client.get(self._prefix + "id:" + job_id)
            if queue is None:
                return
            key = queue_base(self._prefix, queue.decode()) + "j:" + job_id
        else:
            key = self._prefix + "j:" + job_id
        script(keys=[key])

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()


def retried(settings: Settings) -> str:
    """How long a call was retried, for error messages (empty when it was not)."""
    return f" (retried for {settings.retry_for:g} s)" if settings.retry_for else ""


def probe(settings: Settings) -> tuple[bool, int]:
    """Ask the server whether it is a Cluster node and how many replicas it has.

    Retried for ``retry_for`` seconds while Redis cannot be reached or is loading, as every
    call is (a worker may start before its Redis does); a server that refuses us (failed
    authentication, a database index it does not have) raises :class:`StoreRefused` at once.
    """
    client = open_client(
        settings,
        redis,
        retry=redis.retry.Retry(NoBackoff(), 0),
        socket_connect_timeout=min(10.0, max(1.0, settings.retry_for)),
    )
    started = time.monotonic()
    pause = 0.02
    try:
        while True:
            try:
                info = client.info()
                break
            except AuthenticationError as exc:
                raise StoreRefused(f"Redis at {settings.url}: {exc}") from exc
            except ResponseError as exc:
                if str(exc).startswith("NOPERM"):
                    # A user without the right to run INFO: trust the URL, promise no replicas.
                    return bool(settings.cluster), 0
                if not is_transient(exc):
                    raise StoreRefused(f"Redis at {settings.url}: {exc}") from exc
                failure: RedisError = exc
            except RedisError as exc:
                failure = exc
            if time.monotonic() - started >= settings.retry_for:
                raise StoreUnavailable(
                    f"cannot reach Redis at {settings.url}: {failure}{retried(settings)}"
                ) from failure
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
    finally:
        client.close()
    cluster = bool(info.get("cluster_enabled")) if settings.cluster is None else settings.cluster
    replicas = int(info.get("connected_slaves", 0)) if info.get("role") == "master" else 0
    return cluster, replicas
