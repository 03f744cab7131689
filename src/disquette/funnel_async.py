"""Funnels: a channel-style view of queues, as in the Go Disque client's funnels.

    async with jobs.funnel("urgent", "high", fetch_count=10, fetch_timeout=1.0) as funnel:
        async for job in funnel:                 # each job is acked as it is handed over
            if not ready_for(job):
                await funnel.requeue(job)        # put it back (as a new job)
            await funnel.put(make_reply(job), "replies")

A background fetcher leases jobs with ``get_many(count=fetch_count)`` (waiting up to
``fetch_timeout`` per fetch) into a bounded buffer; iterating hands them over in the order
they were fetched (leftmost queue first), acking each one just before it is handed over.
Closing the funnel stops the fetcher and NACKs every fetched job not yet handed over, so
nothing is lost: a job is either handed over (and done) or back in its queue.

This file is the asyncio source; ``funnel.py`` beside it is generated from it by
``scripts/unasync.py``: there the fetcher is a daemon thread instead of a task.
"""

from __future__ import annotations

import builtins
import contextlib
import threading
import time
from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING

from ._concurrency import AsyncBackground, AsyncCondition
from .errors import ClientClosed, InvalidOption, LeaseLost
from .job import Job, JobState, Options, check_queue_names, new_job, new_job_id

if TYPE_CHECKING:
    from .client_async import AsyncClient


#: Default of ``fetch_count``: jobs leased per fetch.
FETCH_COUNT = 10
#: Default of ``fetch_timeout``: seconds one fetch waits for a job to come.
FETCH_TIMEOUT = 1.0
#: Upper bound of ``fetch_count`` (the client's ``get_many`` limit).
MAX_FETCH_COUNT = 10_000


class AsyncBuffer:
    """The fetched jobs not yet handed over, at most ``capacity`` of them.

    Shared by the fetcher (which puts) and the consumers (which take). Once closed, nothing
    more is handed over and what is left is drained to be given back.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._jobs: deque[Job] = deque()
        self._changed = AsyncCondition()
        self._closed = False
        self._drained = False
        self._fetcher_done = False
        self._error: Exception | None = None
        #: Fetches started so far, and the number of the last one that found nothing.
        self._fetches = 0
        self._found_none = 0

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    async def room(self) -> int:
        """Wait until the buffer has room; return how many jobs fit (0 once closed). The
        fetcher calls it before each fetch."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._closed or len(self._jobs) < self.capacity)
            if self._closed:
                return 0
            self._fetches += 1
            return self.capacity - len(self._jobs)

    async def put(self, jobs: list[Job]) -> None:
        """Append what a fetch got, maybe nothing (also once closed: :meth:`drain` gives
        the jobs back)."""
        async with self._changed:
            self._jobs.extend(jobs)
            if not jobs:
                self._found_none = self._fetches
            self._changed.notify_all()

    async def put_back(self, job: Job) -> bool:
        """Return a taken job to the front; ``False`` if the buffer was already drained."""
        async with self._changed:
            if self._drained:
                return False
            self._jobs.appendleft(job)
            self._changed.notify_all()
            return True

    async def fetcher_done(self, error: Exception | None) -> None:
        """Record that the fetcher returned, and why if it failed."""
        async with self._changed:
            self._fetcher_done = True
            self._error = error
            self._changed.notify_all()

    async def take(self, deadline: float | None = None) -> Job | None:
        """Wait for the next job; ``None`` once closed, once the fetcher is gone and the
        jobs it fetched are handed over, or once ``deadline`` (``time.monotonic()``) has
        passed and a fetch started after the call found the queues empty. The fetcher's
        error is raised after the jobs fetched before it."""

        def ready() -> bool:
            return self._closed or bool(self._jobs) or self._fetcher_done

        async with self._changed:
            # A fetch in flight may have started before a job was added: not that one.
            fresh = self._fetches + 1
            if deadline is None:
                await self._changed.wait_for(ready)
            elif not await self._changed.wait_until(ready, deadline - time.monotonic()):
                # Time is up, but a job may be on its way: give up once the queues are empty.
                await self._changed.wait_for(lambda: ready() or self._found_none >= fresh)
            if self._closed:
                return None
            if self._jobs:
                job = self._jobs.popleft()
                self._changed.notify_all()
                return job
            if self._error is not None:
                raise self._error
            return None

    async def close(self) -> bool:
        """Stop handing over and wake everyone; ``False`` if it was closed already."""
        async with self._changed:
            if self._closed:
                return False
            self._closed = True
            self._changed.notify_all()
            return True

    async def drain(self) -> list[Job]:
        """Remove and return every job left; later :meth:`put_back` calls are refused."""
        async with self._changed:
            self._drained = True
            jobs = list(self._jobs)
            self._jobs.clear()
            return jobs


class AsyncFunnel:
    """Receive jobs from ``queues`` by iterating, and send jobs with :meth:`put`.

    Use it as a context manager (``async with``): entering starts the background fetcher,
    leaving closes the funnel. Iteration hands over jobs in fetch order (leftmost queue
    first; a job added to a left queue while jobs of a right one are buffered comes after
    them) and acks each job as it is handed over: from then on the consumer owns it, and
    a crash of the consumer does not bring it back (at-most-once). Use :meth:`requeue` to
    put one back. Iteration ends once the funnel is closed; an error of the fetcher (the
    store went away) is raised by the iteration, after the jobs fetched before it.

    ``fetch_count``: jobs leased per fetch. ``fetch_timeout``: seconds a fetch waits for a
    job (closing waits for a fetch in progress, so this also bounds how long :meth:`close`
    takes). ``buffer``: most jobs fetched and not yet handed over (default
    ``fetch_count``); they are leased meanwhile, so keep it small next to the jobs'
    ``retry_after``: a buffered job whose lease ran out is not handed over (the store
    delivers it again, maybe to another consumer) but left to be fetched again.

    ``timeout`` (default: the client's ``timeout`` option, else none): iteration ends once
    no job came for that many seconds and the queues are empty (0: as soon as they are;
    seeing that takes a fetch, up to ``fetch_timeout`` or two). Iterate again to wait again.

    Several consumers (tasks, or threads in the sync flavor) may iterate one funnel.
    """

    def __init__(
        self,
        client: AsyncClient,
        *queues: str,
        fetch_count: int = FETCH_COUNT,
        fetch_timeout: float = FETCH_TIMEOUT,
        buffer: int | None = None,
        timeout: float | None = None,
    ) -> None:
        self.queues = check_queue_names(queues)
        self.fetch_count = _check_count("fetch_count", fetch_count)
        self.fetch_timeout = _check_fetch_timeout(fetch_timeout)
        self.buffer = self.fetch_count if buffer is None else _check_count("buffer", buffer)
        Options(timeout=timeout)  # validates
        #: Seconds iteration waits for a job before it ends (``None``: for ever).
        self.timeout = client.options.timeout if timeout is None else timeout
        self._client = client
        # Derived client: shares the store, and its own options only set the fetch's wait.
        self._fetching = client.timeout(self.fetch_timeout)
        self._buffer = AsyncBuffer(self.buffer)
        self._fetcher: AsyncBackground | None = None
        self._starting = threading.Lock()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._buffer.closed

    def start(self) -> None:
        """Start the background fetcher (entering the funnel or iterating does it)."""
        with self._starting:
            if self._fetcher is None and not self._buffer.closed:
                self._fetcher = AsyncBackground(self._fetch, name="disquette-funnel")

    async def _fetch(self) -> None:
        error: Exception | None = None
        try:
            while room := await self._buffer.room():
                count = min(self.fetch_count, room)
                jobs = await self._fetching.get_many(*self.queues, count=count)
                await self._buffer.put(jobs)
        except Exception as exc:  # handed to the consumers by AsyncBuffer.take
            error = exc
        finally:
            await self._buffer.fetcher_done(error)

    # -- receiving -------------------------------------------------------------------------

    def __aiter__(self) -> AsyncFunnel:
        self.start()
        return self

    async def __anext__(self) -> Job:
        """Hand over the next job, acked (state ``done``); waits until one comes (or
        ``timeout``)."""
        self.start()
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            job = await self._buffer.take(deadline)
            if job is None:
                raise StopAsyncIteration
            if self._lease_ran_out(job):
                # The store may have delivered it again already (maybe to this funnel):
                # handing this copy over as well would run it twice.
                continue
            try:
                acked = await self._client.ack_many([job])
            except LeaseLost:
                continue  # delivered again meanwhile: the newer delivery's consumer has it
            except BaseException:
                # Keep it for the next consumer, or for close() to give back.
                if not await self._buffer.put_back(job):
                    await self._give_back([job])
                raise
            if acked:
                job.state = JobState.DONE
                job.lease_until = None
                return job
            # Already done, deleted or expired meanwhile: not ours to hand over.

    # -- sending ---------------------------------------------------------------------------

    async def put(self, body: object, queue: str, *, headers: dict[str, str] | None = None) -> str:
        """Add a job to ``queue`` through the client (its options apply), with ``headers``
        as ``add`` takes them; return its id.

        Raises :class:`~disquette.errors.ClientClosed` once the funnel is closed.
        """
        self._check_open()
        return await self._client.add(body, queue, headers=headers)

    async def requeue(self, job: Job) -> str:
        """Put back a job this funnel handed over; return the id of the job that replaces it.

        A handed-over job is already acked (done), so it cannot be NACKed: requeueing adds
        a new job to the same queue, with the same body bytes and encoding, type,
        priority, ``retry_after``, ``max_attempts``, ``result_ttl`` and headers, ready now and with
        fresh counters; the client's ``ttl``, ``max_len`` and ``replicate`` apply. It is
        delivered after the jobs already waiting at its priority. The original stays done.
        Raises :class:`~disquette.errors.ClientClosed` once the funnel is closed.
        """
        self._check_open()
        options = self._client.options
        store = self._client.store
        now = store.clock.now()
        copy = new_job(
            new_job_id(options.ttl, job.retry_after),
            job.queue,
            job.raw_body,
            job.encoding,
            now,
            type=job.type,
            priority=job.priority,
            retry_after=job.retry_after,
            expires_at=None if options.ttl is None else now + options.ttl,
            max_attempts=job.max_attempts,
            result_ttl=job.result_ttl,
            headers=dict(job.headers),
        )
        # Through the store, not client.add: the body must keep its exact bytes and
        # encoding (a JSON string would come back as text through add).
        await store.add([copy], options.max_len, replicate=options.replicate or 0)
        return copy.id

    # -- closing ---------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop fetching and NACK every fetched job not yet handed over; ends iteration.

        Waits for a fetch in progress (at most ``fetch_timeout``) so that the jobs it
        leases are given back too. Calling it again does nothing.
        """
        if not await self._buffer.close():
            return
        if self._fetcher is not None:
            await self._fetcher.join()
        await self._give_back(await self._buffer.drain())

    async def __aenter__(self) -> AsyncFunnel:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: builtins.type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def _lease_ran_out(self, job: Job) -> bool:
        lease_until = job.lease_until
        return lease_until is not None and self._client.store.clock.now() >= lease_until

    async def _give_back(self, jobs: list[Job]) -> None:
        # A job whose lease ran out comes back on its own (or is already someone else's,
        # and the NACK of our delivery would be refused): only the others are NACKed.
        leased = [job for job in jobs if not self._lease_ran_out(job)]
        if leased:
            with contextlib.suppress(LeaseLost):  # the others were given back
                await self._client.nack_many(leased)

    def _check_open(self) -> None:
        if self._buffer.closed:
            raise ClientClosed("the funnel is closed")

    def __repr__(self) -> str:
        state = "closed" if self._buffer.closed else "open"
        return f"<{type(self).__name__} {self.queues} {state}>"


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidOption(name, value, "must be an int")
    if not 1 <= value <= MAX_FETCH_COUNT:
        raise InvalidOption(name, value, f"must be between 1 and {MAX_FETCH_COUNT}")
    return value


def _check_fetch_timeout(value: object) -> float:
    # Zero would make the fetcher spin; None would make close() wait for ever.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidOption("fetch_timeout", value, "seconds are an int or a float")
    if not 0 < value <= 3600:
        raise InvalidOption("fetch_timeout", value, "must be more than 0 and at most 3600")
    return float(value)
