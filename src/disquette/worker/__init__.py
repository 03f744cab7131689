"""The worker runtime: handlers by job type, workers, pools, and a process supervisor.

    from disquette.worker import Worker

    def send_email(job):                       # sync: runs in the worker's thread pool
        deliver(job.body["to"])
        return "sent"                          # becomes the job's result (``wait`` returns it)

    async def resize(job):                     # async: runs as a task on the event loop
        ...

    Worker("sqlite:///jobs.db", {"send_email": send_email, "resize": resize},
           queues=["mail", "images"], concurrency=8).run()

One engine, written on asyncio over :class:`~disquette.AsyncClient`, serves every entry
point: :meth:`Worker.run` runs it in its own event loop, :meth:`Worker.start` in a thread,
:meth:`Worker.run_async` inside the caller's loop. It uses the client API only, so it works
the same on every store.

What a worker does with a job:

- it claims jobs in batches (``concurrency`` running plus a buffer), and waits for new ones
  on the store's wake-ups, polling only as often as ``poll_interval``; the buffer is
  ``prefetch`` jobs, or by default about 0.1 s of work at the pace jobs finish (at most
  100), so quick jobs are claimed in big batches and slow ones are not hoarded;
- the handler's return value is the job's result (acks are batched when there is none);
- an exception (or an exec timeout) is recorded with its traceback through
  :meth:`AsyncClient.fail`: retried with exponential backoff, failed after ``max_attempts``;
  a job whose type has no handler is an error handled the same way, and logged loudly;
- while a job (running or buffered) is past half its lease, the worker extends it
  (:meth:`AsyncClient.working`), so long jobs are not redelivered; a frozen worker stops
  doing so and its jobs are redelivered to others;
- acks, nacks, failures and lease extensions belong to the delivery the worker got: once
  a job was delivered again (the lease ran out and another worker has it), the store
  refuses them with :class:`~disquette.errors.LeaseLost`; the worker logs that once per
  job at warning, counts it (``Worker.leases_lost``), and leaves the job to the newer
  delivery (it never fails or retries it itself);
- on stop (or SIGTERM/SIGINT) it stops claiming, NACKs the buffered jobs at once, lets
  running jobs finish within ``grace`` seconds, then NACKs what is still running (a second
  signal does that at once). Nothing is lost either way.

Environment (read when the argument is not given): ``DISQUETTE_URL`` (the store),
``DISQUETTE_QUEUES`` (comma-separated, leftmost first), ``DISQUETTE_CONCURRENCY``.

Logging goes to the ``disquette.worker`` logger with structured extras on job records:
``job_id``, ``queue``, ``job_type``, ``attempt``, ``duration``.

One module per runtime role: ``registry`` (handlers by job type), ``config`` (defaults,
environment, option checks, the client), ``handlers`` (running a handler, its outcome),
``engine`` (one run of a worker) and its roles ``fetcher`` (claims, the buffer), ``acks``
(outcomes, in batches), ``watchdog`` (exec timeouts, the supervisor, the tick),
``heartbeat`` (lease extension), over a shared ``state``; ``worker`` (:class:`Worker`), ``pool``
(:class:`WorkerPool`), ``supervisor`` (:class:`Supervisor`, worker processes).
"""

from ..errors import (  # the worker's own errors are re-exported here for convenience
    AlreadyRunning,
    HandlerTimeout,
    NoHandlers,
    NotRunning,
    UnknownJobType,
    WorkerError,
)
from .acks import ACK_BATCH as ACK_BATCH
from .acks import ACK_DELAY as ACK_DELAY
from .config import CATCH_ALL, DEFAULT_CONCURRENCY, DEFAULT_QUEUE, EXIT_REPLACE
from .config import DEFAULT_GRACE as DEFAULT_GRACE
from .config import ENV_CONCURRENCY as ENV_CONCURRENCY
from .config import ENV_QUEUES as ENV_QUEUES
from .config import ENV_SUPERVISOR_PID as ENV_SUPERVISOR_PID
from .config import ENV_URL as ENV_URL
from .config import MAX_ERROR_CHARS as MAX_ERROR_CHARS
from .config import ClientSource as ClientSource
from .config import async_twin as async_twin
from .config import concurrency_from_env as concurrency_from_env
from .config import open_client as open_client
from .config import queues_from_env as queues_from_env
from .fairness import FairOrder as FairOrder
from .fairness import QueueOrder as QueueOrder
from .fetcher import BUFFER_SECONDS as BUFFER_SECONDS
from .fetcher import DEFAULT_MAX_PREFETCH as DEFAULT_MAX_PREFETCH
from .handlers import describe_exception
from .pool import WorkerPool
from .registry import Handler, Handlers, HandlerSpec, Registry, as_registry
from .registry import HasRegistry as HasRegistry
from .registry import is_async_handler as is_async_handler
from .supervisor import Supervisor, worker_command
from .worker import Worker

__all__ = [
    "CATCH_ALL",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_QUEUE",
    "EXIT_REPLACE",
    "AlreadyRunning",
    "Handler",
    "HandlerSpec",
    "HandlerTimeout",
    "Handlers",
    "NoHandlers",
    "NotRunning",
    "Registry",
    "Supervisor",
    "UnknownJobType",
    "Worker",
    "WorkerError",
    "WorkerPool",
    "as_registry",
    "describe_exception",
    "worker_command",
]
