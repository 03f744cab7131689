"""Several workers in one event loop: :class:`WorkerPool`."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

from ..client_async import AsyncClient
from ..errors import AlreadyRunning, InvalidOption, NotRunning
from .config import ClientSource, check_count, open_client
from .registry import Handlers
from .signals import stop_signals
from .worker import Worker


class WorkerPool:
    """Several workers in one event loop, sharing one client (Que's WorkerPool).

    ``WorkerPool(client, handlers, size=4, **worker_options)`` makes ``size`` identical
    workers; ``WorkerPool.of(workers)`` takes ready-made ones (different queues, say).
    """

    def __init__(
        self,
        client: ClientSource,
        handlers: Handlers,
        *,
        size: int = 2,
        **worker_options: Any,
    ) -> None:
        check_count("size", size, 1)
        workers = [Worker(client, handlers, **worker_options) for _ in range(size)]
        self._setup(workers, share=True)

    @classmethod
    def of(cls, workers: Sequence[Worker]) -> WorkerPool:
        """A pool of ready-made workers (each keeps its own client)."""
        if not workers:
            raise InvalidOption("workers", workers, "a pool needs at least one worker")
        pool = cls.__new__(cls)
        pool._setup(list(workers), share=False)
        return pool

    def _setup(self, workers: list[Worker], *, share: bool) -> None:
        self.workers = workers
        self._share = share
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = threading.Lock()
        self._running = False
        self._stopping = False
        self._idle = threading.Event()
        self._idle.set()

    def __repr__(self) -> str:
        return f"WorkerPool({self.workers})"

    @property
    def running(self) -> bool:
        """Whether the pool is running."""
        return self._running

    def run(self, *, handle_signals: bool = True) -> None:
        """Run every worker until stopped (signals as in :meth:`Worker.run`)."""
        handle = handle_signals and threading.current_thread() is threading.main_thread()
        asyncio.run(self.run_async(handle_signals=handle))

    async def run_async(self, *, handle_signals: bool = False) -> None:
        """Run every worker in the running loop until stopped."""
        with self._lock:
            if self._running:
                raise AlreadyRunning("worker pool")
            self._running = True
            self._stopping = False
            self._idle.clear()
        loop = asyncio.get_running_loop()
        source = self.workers[0]._client_source
        owned = False
        try:
            if self._share:
                # One client (one store connection) for every worker of the pool.
                shared, owned = open_client(source)
                for worker in self.workers:
                    worker._client_source = shared
            with stop_signals(loop, self._on_signal, handle_signals):
                tasks = [asyncio.create_task(worker.run_async()) for worker in self.workers]
                results = await asyncio.gather(*tasks, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        finally:
            if self._share:
                for worker in self.workers:
                    shared_client = worker._client_source
                    worker._client_source = source
                if owned and isinstance(shared_client, AsyncClient):
                    await shared_client.close()
            with self._lock:
                self._running = False
                self._idle.set()

    def _on_signal(self, signum: int) -> None:
        force = self._stopping
        self._stopping = True
        self.request_stop(force=force)

    def request_stop(self, *, force: bool = False, grace: float | None = None) -> None:
        """Ask every worker to stop, without waiting."""
        for worker in self.workers:
            worker.request_stop(force=force, grace=grace)

    def start(self) -> None:
        """Run the pool in a background thread; return once every worker works."""
        with self._lock:
            if self._running:
                raise AlreadyRunning("worker pool")
        errors: list[BaseException] = []

        def main() -> None:
            try:
                asyncio.run(self.run_async())
            except BaseException as exc:
                errors.append(exc)

        self._thread = threading.Thread(target=main, name="disquette-pool", daemon=True)
        self._thread.start()
        while not all(worker._started.is_set() for worker in self.workers):
            if not self._thread.is_alive():
                self._thread = None
                if errors:
                    raise errors[0]
                return
            time.sleep(0.01)

    def stop(self, *, force: bool = False, grace: float | None = None) -> None:
        """Stop every worker and wait. Raises :class:`NotRunning` if the pool is not running."""
        if not self._running:
            raise NotRunning("worker pool")
        self.request_stop(force=force, grace=grace)
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    async def start_async(self) -> None:
        """Run the pool as a task of the running loop; return once every worker works."""
        if self._running:
            raise AlreadyRunning("worker pool")
        self._task = asyncio.create_task(self.run_async(), name="disquette-pool")
        while not all(worker._started.is_set() for worker in self.workers):
            if self._task.done():
                await self._task
                return
            await asyncio.sleep(0.005)

    async def stop_async(self, *, force: bool = False, grace: float | None = None) -> None:
        """Stop every worker and wait until all are done."""
        if not self._running:
            raise NotRunning("worker pool")
        self.request_stop(force=force, grace=grace)
        task, self._task = self._task, None
        if task is not None:
            await task
        else:
            await asyncio.get_running_loop().run_in_executor(None, self._idle.wait)
