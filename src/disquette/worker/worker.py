"""The public worker: :class:`Worker`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator
from typing import Final, Literal

from ..client_async import AsyncClient
from ..errors import AlreadyRunning, InvalidOption, NoHandlers, NotRunning
from .config import (
    CATCH_ALL,
    DEFAULT_CONCURRENCY,
    DEFAULT_GRACE,
    DEFAULT_QUEUE,
    ClientSource,
    check_count,
    check_positive,
    concurrency_from_env,
    open_client,
    queues_from_env,
)
from .engine import Engine
from .fairness import QueueOrder, QueueSpec, check_order, queue_weights
from .registry import Handlers, as_registry
from .signals import stop_signals

logger: Final = logging.getLogger("disquette.worker")

_State = Literal["idle", "starting", "running"]


class Worker:
    """Runs handlers on the jobs of some queues: ``run()`` blocks, ``start()``/``stop()``
    run it in a background thread, ``run_async()`` inside an event loop.

    ``client`` is an :class:`AsyncClient`, a :class:`Client` (its store is shared), or a
    store URL (default ``$DISQUETTE_URL``, else ``./disquette.db``), opened and closed by
    the worker. ``handlers`` maps job types to functions (or is an App). ``queues``
    defaults to ``$DISQUETTE_QUEUES``, else the queues the handlers declared, else
    ``["default"]``; ``concurrency`` (jobs running at once) to ``$DISQUETTE_CONCURRENCY``,
    else 10. ``prefetch`` jobs are claimed ahead and buffered (default: about 0.1 s of
    work at the pace jobs finish, at most 250).
    ``queues`` may also be ``{name: weight}``; ``order`` says which queue each claim
    serves first: ``"strict"`` (leftmost first, as ``get``; the default without weights),
    ``"weighted"`` (the default with weights) or ``"round_robin"`` (see
    :class:`~disquette.worker.fairness.FairOrder`).
    ``poll_interval`` overrides how often the store is polled when it cannot wake us.
    ``exec_timeout`` is the default per-job limit (handlers may set their own); ``grace``
    is how long a graceful stop waits for running jobs. ``schedules`` (default on): also
    fire the app's periodic jobs as they come due (see :mod:`disquette.periodic`).
    """

    def __init__(
        self,
        client: ClientSource,
        handlers: Handlers,
        *,
        queues: QueueSpec | None = None,
        order: QueueOrder | None = None,
        concurrency: int | None = None,
        prefetch: int | None = None,
        poll_interval: float | None = None,
        exec_timeout: float | None = None,
        grace: float = DEFAULT_GRACE,
        parent_pid: int | None = None,
        replace_on_abandon: bool = False,
        schedules: bool = True,
    ) -> None:
        self.registry = as_registry(handlers)
        if not self.registry:
            raise NoHandlers()
        if isinstance(queues, str):
            queues = [queues]
        #: Each queue's weight (1 unless given), in the given order.
        self.weights = queue_weights(
            queues or queues_from_env() or self.registry.queues or [DEFAULT_QUEUE]
        )
        self.queues = list(self.weights)
        if order is None:
            order = "weighted" if any(w != 1 for w in self.weights.values()) else "strict"
        #: How each claim orders the queues (see :class:`FairOrder`).
        self.order = check_order(order)
        if concurrency is None:
            concurrency = concurrency_from_env() or DEFAULT_CONCURRENCY
        self.concurrency = check_count("concurrency", concurrency, 1)
        self.prefetch = None if prefetch is None else check_count("prefetch", prefetch, 0)
        self.poll_interval = (
            None if poll_interval is None else check_positive("poll_interval", poll_interval)
        )
        self.exec_timeout = (
            None if exec_timeout is None else check_positive("exec_timeout", exec_timeout)
        )
        if isinstance(grace, bool) or not isinstance(grace, int | float) or not grace >= 0:
            raise InvalidOption("grace", grace, "seconds, zero or more")
        self.grace = float(grace)
        #: Stop gracefully when this process's parent is no longer this pid.
        self.parent_pid = parent_pid
        #: Fire the handlers' periodic jobs (``App.periodic``) while working.
        self.schedules = schedules
        #: Stop (to be replaced by the supervisor) after abandoning a stuck sync handler.
        self.replace_on_abandon = replace_on_abandon
        #: Set when the worker stopped because it wants its process replaced.
        self.replace_requested = False
        #: The signal that stopped the last run (the first one received), if one did.
        self.stop_signal: signal.Signals | None = None
        #: Handlers that returned, and that raised or timed out, since the worker was made.
        self.processed = 0
        self.errors = 0
        #: Sync handlers abandoned after their exec timeout.
        self.abandoned = 0
        #: Jobs whose delivery to this worker was refused an ack, nack, fail or lease
        #: extension because they were delivered again (see :class:`LeaseLost`).
        self.leases_lost = 0
        self._client_source = client
        self._lock = threading.Lock()
        self._state: _State = "idle"
        self._engine: Engine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending_stop: tuple[bool, float | None] | None = None
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        return (
            f"Worker(queues={self.queues}, concurrency={self.concurrency}, "
            f"types={sorted(self.registry)}, state={self._state})"
        )

    @property
    def running(self) -> bool:
        """Whether the worker is running (or starting)."""
        return self._state != "idle"

    # -- running ---------------------------------------------------------------------

    def run(self, *, handle_signals: bool = True) -> None:
        """Work until stopped (``stop()`` from another thread, SIGTERM or SIGINT).

        Signals are handled only in the main thread: the first stops gracefully, the
        second gives running jobs back and exits.
        """
        handle = handle_signals and threading.current_thread() is threading.main_thread()
        asyncio.run(self.run_async(handle_signals=handle))

    async def run_async(self, *, handle_signals: bool = False) -> None:
        """Work inside the running event loop until stopped."""
        async with self._running() as client:
            await self._run_engine(client, handle_signals)

    @contextlib.asynccontextmanager
    async def _running(self) -> AsyncIterator[AsyncClient]:
        """Mark the worker running and open its client; on the way out, close the client
        (when the worker opened it) and mark the worker idle."""
        self._enter()
        try:
            client, owned = open_client(self._client_source)
            try:
                yield client
            finally:
                if owned:
                    await client.close()
        finally:
            with self._lock:
                self._state = "idle"
                self._engine = None
                self._loop = None
                self._idle.set()

    def _enter(self) -> None:
        with self._lock:
            if self._state != "idle":
                raise AlreadyRunning()
            self._state = "starting"
            self._idle.clear()
            self._pending_stop = None
            self.replace_requested = False
            self.stop_signal = None
            self._started.clear()

    async def _run_engine(self, client: AsyncClient, handle_signals: bool) -> None:
        engine = Engine(self, client)
        with self._lock:
            self._engine = engine
            self._loop = engine.loop
            self._state = "running"
            pending = self._pending_stop
        if pending is not None:
            engine.request_stop(*pending)
        with stop_signals(engine.loop, self._on_signal, handle_signals):
            self._announce(client)
            await engine.run()
        logger.info("worker stopped")

    def _announce(self, client: AsyncClient) -> None:
        """Log the start (and any queue no handler declares), and tell waiters it began."""
        logger.info(
            "worker started: queues %s, concurrency %d, types %s, store %s",
            ",".join(self.queues),
            self.concurrency,
            ", ".join(sorted(self.registry)),
            client.store.url,
        )
        for queue in self.queues:
            if not self.registry.serves(queue):
                logger.warning(
                    "no handler declares queue %r (the handlers declare: %s) and there is no "
                    "catch-all %r: only jobs added there with a handled type will run",
                    queue,
                    ", ".join(self.registry.queues) or "none",
                    CATCH_ALL,
                )
        self._started.set()

    def _on_signal(self, signum: int) -> None:
        logger.info("received %s", signal.Signals(signum).name)
        if self.stop_signal is None:
            self.stop_signal = signal.Signals(signum)
        if self._engine is not None:
            self._engine.request_stop()

    def request_stop(self, *, force: bool = False, grace: float | None = None) -> None:
        """Ask the worker to stop, from any thread, without waiting. Does nothing when idle."""
        with self._lock:
            engine, loop = self._engine, self._loop
            if engine is None:
                if self._state == "starting":
                    self._pending_stop = (force, grace)
                return
        try:
            running_loop = asyncio.get_running_loop()
        except RuntimeError:
            running_loop = None
        if running_loop is loop:
            engine.request_stop(force, grace)
        else:
            assert loop is not None
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(engine.request_stop, force, grace)

    # -- start / stop --------------------------------------------------------------------

    def start(self) -> None:
        """Run the worker in a background thread (with its own event loop) and return once
        it works. Raises :class:`AlreadyRunning`, or what stopped it from starting."""
        with self._lock:
            if self._state != "idle":
                raise AlreadyRunning()
        self._error = None
        self._started.clear()
        self._thread = threading.Thread(target=self._thread_main, name="disquette-worker")
        self._thread.daemon = True
        self._thread.start()
        while not self._started.wait(0.05):
            if not self._thread.is_alive():
                break
        if not self._started.is_set():
            self._thread.join()
            self._thread = None
            if self._error is not None:
                raise self._error

    def _thread_main(self) -> None:
        try:
            asyncio.run(self.run_async())
        except BaseException as exc:
            self._error = exc
            if self._started.is_set():
                logger.exception("the worker thread stopped on an error")

    def stop(
        self, *, force: bool = False, grace: float | None = None, timeout: float | None = None
    ) -> None:
        """Stop gracefully (``force``: give running jobs back at once) and wait for it.

        Raises :class:`NotRunning` if the worker is not running.
        """
        with self._lock:
            if self._state == "idle":
                raise NotRunning()
        self.request_stop(force=force, grace=grace)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if not thread.is_alive():
                self._thread = None

    async def start_async(self) -> None:
        """Run the worker as a task of the running loop; return once it works."""
        with self._lock:
            if self._state != "idle":
                raise AlreadyRunning()
        self._started.clear()
        self._task = asyncio.create_task(self.run_async(), name="disquette-worker")
        while not self._started.is_set():
            if self._task.done():
                task, self._task = self._task, None
                await task  # raises what stopped it
                return
            await asyncio.sleep(0.005)

    async def stop_async(self, *, force: bool = False, grace: float | None = None) -> None:
        """Stop gracefully (or not, with ``force``) and wait until the worker is done."""
        with self._lock:
            if self._state == "idle":
                raise NotRunning()
        self.request_stop(force=force, grace=grace)
        task, self._task = self._task, None
        if task is not None:
            await task
        else:  # running in another task or thread
            await asyncio.get_running_loop().run_in_executor(None, self._idle.wait)

    # -- one job ---------------------------------------------------------------------

    def work_one(self) -> bool:
        """Process one job if one is ready; return whether one was processed."""
        return asyncio.run(self.work_one_async())

    async def work_one_async(self) -> bool:
        """Process one job if one is ready (the async flavor of :meth:`work_one`)."""
        async with self._running() as client:
            jobs = await client.timeout(0).get_many(*self.queues, count=1)
            if not jobs:
                return False
            await Engine(self, client).work_one(jobs)
            return True
