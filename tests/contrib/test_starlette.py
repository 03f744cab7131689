"""The Starlette integration in a real Starlette application (what FastAPI builds on)."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from disquette import App, AsyncClient, Job, connect
from disquette.contrib.starlette import Disquette, client
from disquette.errors import ClientClosed, JobNotFound


def make_app(url: str, *, worker: bool) -> tuple[Starlette, Disquette, App]:
    jobs = App(url)

    @jobs.job(queue="mail")
    async def send_welcome(job: Job) -> str:
        return f"welcome, {job.body['to']}"

    async def signup(request: Request) -> JSONResponse:
        body = await request.json()
        job_id = await send_welcome.add_async({"to": body["email"]})
        return JSONResponse({"job": job_id})

    async def result(request: Request) -> JSONResponse:
        jobs_client = client(request)
        value = await jobs_client.wait(request.path_params["job_id"], timeout=30)
        return JSONResponse({"result": value, "queued": await jobs_client.qlen("mail")})

    disquette = Disquette(jobs, worker=worker, worker_options={"concurrency": 2})
    routes = [Route("/signup", signup, methods=["POST"]), Route("/result/{job_id:path}", result)]
    return Starlette(routes=routes, lifespan=disquette.lifespan), disquette, jobs


def test_the_in_process_worker_runs_what_a_handler_enqueues(tmp_path: Path) -> None:
    application, disquette, _ = make_app(f"sqlite:///{tmp_path / 'jobs.db'}", worker=True)
    with TestClient(application) as http:
        assert disquette.worker is not None
        signed_up = http.post("/signup", json={"email": "ada@example.com"})
        assert signed_up.status_code == 200, signed_up.text
        job_id = signed_up.json()["job"]
        reply = http.get(f"/result/{job_id}")
        assert reply.status_code == 200, reply.text
        assert reply.json() == {
            "result": "welcome, ada@example.com",
            "queued": 0,
        }
    assert disquette.worker is None  # stopped with the application


async def test_the_client_is_closed_at_shutdown(tmp_path: Path) -> None:
    application, disquette, jobs = make_app(f"sqlite:///{tmp_path / 'jobs.db'}", worker=False)
    async with disquette.lifespan(application) as state:
        opened: AsyncClient = state["disquette"]
        await opened.add("x", "mail")
        assert disquette.worker is None  # no worker unless asked
    with pytest.raises(ClientClosed):
        await opened.qlen("mail")
    with jobs.connect() as reader:  # the job stays for a worker elsewhere
        assert reader.qlen("mail") == 1


async def test_a_transactional_add_rolls_back_with_the_async_session() -> None:
    """A handler adds through its SQLAlchemy ``AsyncSession``: the job commits and rolls
    back with the session's own writes (PostgreSQL)."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    from ..servers.postgres import fresh_url, session_database_url

    url = fresh_url()
    engine = create_async_engine(
        session_database_url().replace("postgresql://", "postgresql+psycopg://", 1)
    )
    disquette = Disquette(App(url))

    async def order(request: Request) -> JSONResponse:
        keep = request.query_params["keep"] == "yes"
        async with AsyncSession(engine) as session:
            await session.execute(text("CREATE TABLE IF NOT EXISTS web_order (n int)"))
            await session.execute(text("INSERT INTO web_order VALUES (1)"))
            job_id = await client(request).add({"n": 1}, "orders", connection=session)
            await (session.commit() if keep else session.rollback())
        return JSONResponse({"job": job_id})

    application = Starlette(routes=[Route("/order", order)], lifespan=disquette.lifespan)
    try:
        with TestClient(application) as http:
            kept = http.get("/order?keep=yes").json()["job"]
            dropped = http.get("/order?keep=no").json()["job"]
        with connect(url) as reader:
            assert reader.show(kept).queue == "orders"
            assert reader.qlen("orders") == 1
            with pytest.raises(JobNotFound):
                reader.show(dropped)
    finally:
        await engine.dispose()
