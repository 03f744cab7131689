"""Starlette and FastAPI integration (``pip install 'disquette[starlette]'``).

::

    from disquette import App
    from disquette.contrib.starlette import Disquette, client

    jobs = App("postgresql://app@db/app")

    @jobs.job(queue="mail")
    async def send_welcome(job): ...

    disquette = Disquette(jobs, worker=True)  # worker: also run the handlers in-process
    app = Starlette(routes=[...], lifespan=disquette.lifespan)  # or FastAPI(lifespan=...)

    async def signup(request):
        job_id = await client(request).add({"to": "ada"}, "mail")  # or send_welcome.add_async
        ...

With FastAPI, ``client`` is a dependency: ``jobs: AsyncClient = Depends(client)``.
The lifespan opens the app's asyncio client at startup and closes it at shutdown, after
stopping the in-process worker (which gives its unfinished jobs back). An application with
a lifespan of its own enters ``disquette.lifespan(app)`` inside it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

from starlette.requests import HTTPConnection

from ..app import App
from ..client_async import AsyncClient
from ..worker import Worker

#: The lifespan state key (``request.state.disquette``) of the asyncio client.
STATE_KEY: Final = "disquette"


class Disquette:
    """The lifespan of a disquette :class:`~disquette.App` inside a Starlette application.

    ``worker=True`` runs a :class:`~disquette.worker.Worker` for the app's handlers in the
    server's event loop (``worker_options``: its ``queues``, ``concurrency``...): handy for
    one-process deployments; run ``disquette worker`` beside the server otherwise.
    """

    def __init__(
        self,
        app: App | None = None,
        *,
        worker: bool = False,
        worker_options: dict[str, Any] | None = None,
    ) -> None:
        #: The disquette app (default: ``App()``: ``$DISQUETTE_URL``, else ./disquette.db).
        self.app = app or App()
        self.run_worker = worker
        self.worker_options = worker_options or {}
        #: The in-process worker while the application runs, else None.
        self.worker: Worker | None = None

    @asynccontextmanager
    async def lifespan(self, _application: object = None) -> AsyncIterator[dict[str, Any]]:
        """Open the client (and start the worker); yield the state handlers read."""
        client = self.app.async_client
        if self.run_worker:
            self.worker = self.app.worker(**self.worker_options)
            await self.worker.start_async()
        try:
            yield {STATE_KEY: client}
        finally:
            if self.worker is not None:
                await self.worker.stop_async()
                self.worker = None
            await self.app.aclose()


def client(request: HTTPConnection) -> AsyncClient:
    """The asyncio client of the running application (a FastAPI dependency too)."""
    found: AsyncClient = getattr(request.state, STATE_KEY)
    return found
