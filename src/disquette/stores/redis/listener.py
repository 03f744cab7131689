"""The parts of the Redis store that block a thread in both flavours: the wake-up listener
(a thread reading a pub/sub connection) and the probe run once when a store is opened.

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
from ..types import CANCEL_CHANNEL, DONE_CHANNEL, Wakeups
from .url import Settings, open_client

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
        self._wakeups = wakeups
        self._client = open_client(redis_url, redis, retry=redis.retry.Retry(NoBackoff(), 0))
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


class RedisWakeups(Wakeups):
    """:class:`Wakeups` that also listens to Redis for the channels someone waits on."""

    def __init__(self, listener_factory: Callable[[], WakeupListener]) -> None:
        super().__init__()
        self._factory = listener_factory
        self._listener: WakeupListener | None = None
        self._listener_lock = threading.Lock()

    def subscribe(
        self, channels: Iterable[str], callback: Callable[[], None]
    ) -> Callable[[], None]:
        """Subscribe in-process, and make sure Redis messages for ``channels`` arrive."""
        names = list(channels)
        unsubscribe = super().subscribe(names, callback)
        with self._listener_lock:
            if self._listener is None:
                self._listener = self._factory()
            listener = self._listener
        listener.ensure(names)
        return unsubscribe

    def close(self) -> None:
        """Stop listening."""
        with self._listener_lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()


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
