"""disquette: a persistent, distributed job priority queue.

    import disquette
    jobs = disquette.connect()              # $DISQUETTE_URL, else ./disquette.db (SQLite)
    job_id = jobs.add({"to": "ada"}, "mail")
    job = jobs.get("mail")
    jobs.ack(job)

``disquette.connect_async`` gives the same client for asyncio.
"""

from . import errors
from .app import App, JobFunction
from .client import Client, connect
from .client_async import AsyncClient, connect_async
from .clock import Clock, ManualClock, SystemClock
from .errors import DisquetteError
from .flows import Group, Step, step
from .funnel import Funnel
from .funnel_async import AsyncFunnel
from .job import AddResult, Encoding, Job, JobState, Options, Stats, StatsRow
from .stores.store import Store
from .stores.store_async import AsyncStore
from .worker import Registry, Supervisor, Worker, WorkerPool

__all__ = [
    "AddResult",
    "App",
    "AsyncClient",
    "AsyncFunnel",
    "AsyncStore",
    "Client",
    "Clock",
    "DisquetteError",
    "Encoding",
    "Funnel",
    "Group",
    "Job",
    "JobFunction",
    "JobState",
    "ManualClock",
    "Options",
    "Registry",
    "Stats",
    "StatsRow",
    "Step",
    "Store",
    "Supervisor",
    "SystemClock",
    "Worker",
    "WorkerPool",
    "connect",
    "connect_async",
    "errors",
    "step",
]
__version__ = "0.1.0"
