"""The Starlette integration in a real Starlette application (what FastAPI builds on)."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from disquette import App, AsyncClient, Job
from disquette.contrib.starlette import Disquette, client
from disquette.errors import ClientClosed


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
    routes = [Route("/signup", signup, methods=["POST"]), Route("/result/{job_id}", result)]
    return Starlette(routes=routes, lifespan=disquette.lifespan), disquette, jobs


def test_the_in_process_worker_runs_what_a_handler_enqueues(tmp_path: Path) -> None:
    application, disquette, _ = make_app(f"sqlite:///{tmp_path / 'jobs.db'}", worker=True)
    with TestClient(application) as http:
        assert disquette.worker is not None
        job_id = http.post("/signup", json={"email": "ada@example.com"}).json()["job"]
        assert http.get(f"/result/{job_id}").json() == {
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
