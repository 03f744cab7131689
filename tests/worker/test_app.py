"""The App object: the decorator, producers' ``add``/``add_async``, and eager mode."""

from __future__ import annotations

import asyncio
import threading

import pytest

from disquette import Job, JobState
from disquette.app import App, EagerError, JobFunction
from disquette.errors import InvalidOption, JobFailed
from disquette.worker import Worker


def test_decorator_registers_and_add_enqueues_with_the_jobs_options(sqlite_url: str) -> None:
    app = App(sqlite_url)

    @app.job(queue="mail", retry_after=60, max_attempts=5, priority=7)
    def send_email(job: Job) -> str:
        return f"sent to {job.body['to']}"

    @app.job
    def plain(job: Job) -> None:
        return None

    @app.job("renamed", queue="other")
    async def something(job: Job) -> int:
        return 1

    assert isinstance(send_email, JobFunction)
    assert sorted(app.registry) == ["plain", "renamed", "send_email"]
    assert app.queues == ["mail", "default", "other"]
    assert send_email.__name__ == "send_email"
    job_id = send_email.add({"to": "ada"})
    job = app.client.show(job_id)
    assert (job.queue, job.type, job.retry_after, job.max_attempts, job.priority) == (
        "mail",
        "send_email",
        60,
        5,
        7,
    )
    override = send_email.add({"to": "bob"}, queue="urgent", priority=1, delay=30)
    job = app.client.show(override)
    assert (job.queue, job.priority, job.state) == ("urgent", 1, JobState.SCHEDULED)
    # Calling the decorated function calls the function.
    assert send_email(job) == "sent to bob"
    app.close()


def test_a_worker_runs_the_apps_jobs(sqlite_url: str) -> None:
    app = App(sqlite_url)

    @app.job(queue="math")
    def square(job: Job) -> int:
        return int(job.body) ** 2

    @app.job(queue="text")
    async def upper(job: Job) -> str:
        return str(job.body).upper()

    ids = square.add_many([2, 3])
    text_id = upper.add("hi")
    worker = app.worker(concurrency=2)
    assert worker.queues == ["math", "text"]
    worker.start()
    try:
        assert [app.client.wait(job_id, timeout=20) for job_id in ids] == [4, 9]
        assert app.client.wait(text_id, timeout=20) == "HI"
    finally:
        worker.stop()
    app.close()


def test_a_job_without_a_type_goes_to_the_handler_of_its_queue(sqlite_url: str) -> None:
    app = App(sqlite_url)

    @app.job(queue="mail")
    def send_mail(job: Job) -> str:
        return f"mailed {job.body!r}"

    @app.job(queue="shared")
    def first(job: Job) -> str:
        return "first"

    @app.job(queue="shared")
    def second(job: Job) -> str:
        return "second"

    # As a Disque client of another language adds them: a plain body, no type.
    plain = app.client.add(b"hello", "mail")
    ambiguous = app.client.add(b"which one?", "shared")
    typed = second.add(b"typed")
    worker = app.worker()
    for _ in range(3):
        assert worker.work_one()
    assert app.client.wait(plain, timeout=0) == "mailed b'hello'"
    assert app.client.wait(typed, timeout=0) == "second"
    # Two handlers declared "shared": nothing says which, so no handler (retried, then
    # failed, as an unknown type), unless a catch-all handler is registered.
    job = app.client.show(ambiguous)
    assert job.state is JobState.SCHEDULED
    assert "no handler" in (job.last_error or "")
    app.close()


async def test_add_async_and_a_worker_on_the_app(sqlite_url: str) -> None:
    app = App(sqlite_url)

    @app.job(queue="q")
    async def echo(job: Job) -> object:
        return job.body

    worker = Worker(app.async_client, app)
    await worker.start_async()
    try:
        job_id = await echo.add_async({"k": [1, 2]})
        ids = await echo.add_many_async(["a", "b"])
        assert await app.async_client.wait(job_id, timeout=20) == {"k": [1, 2]}
        assert [await app.async_client.wait(i, timeout=20) for i in ids] == ["a", "b"]
    finally:
        await worker.stop_async()
        await app.aclose()


def test_eager_mode_runs_the_handler_in_add() -> None:
    app = App(eager=True)
    calls: list[object] = []

    @app.job(queue="mail", max_attempts=10)
    def send(job: Job) -> str:
        calls.append(job.body)
        assert threading.current_thread() is threading.main_thread()
        return "sent"

    @app.job
    def fails(job: Job) -> None:
        raise ValueError("no such user")

    @app.job
    def outer(job: Job) -> str:
        inner_id = send.add("from a handler")  # nested adds run eagerly too
        return inner_id

    @app.job
    async def coroutine(job: Job) -> int:
        await asyncio.sleep(0)
        return 5

    job_id = send.add({"to": "ada"}, delay=3600)  # delays are ignored in eager mode
    assert calls == [{"to": "ada"}]
    assert app.client.wait(job_id, timeout=1) == "sent"
    with pytest.raises(ValueError, match="no such user"):
        fails.add("x")
    failed = app.client.failed()
    assert len(failed) == 1
    assert "no such user" in str(failed[0].last_error)
    with pytest.raises(JobFailed):
        app.client.wait(failed[0].id, timeout=1)
    inner = app.client.wait(outer.add(None), timeout=1)
    assert app.client.show(inner).state is JobState.DONE
    assert app.client.wait(coroutine.add(None), timeout=1) == 5
    assert send.add_many(["a", "b"])
    assert calls[-2:] == ["a", "b"]
    app.close()


async def test_eager_mode_from_async_code() -> None:
    app = App(eager=True)

    @app.job
    async def coroutine(job: Job) -> int:
        return int(job.body) + 1

    @app.job
    def sync(job: Job) -> int:
        return int(job.body) - 1

    assert await app.async_client.wait(await coroutine.add_async(1), timeout=1) == 2
    assert await app.async_client.wait(await sync.add_async(1), timeout=1) == 0
    with pytest.raises(EagerError):
        coroutine.add(1)  # a sync add cannot run a coroutine inside a running loop
    await app.aclose()


def test_eager_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISQUETTE_EAGER", "1")
    app = App()
    assert app.eager
    assert app.url.startswith("memory://")
    monkeypatch.setenv("DISQUETTE_EAGER", "0")
    assert not App("memory://").eager


def test_registration_errors() -> None:
    app = App("memory://")

    @app.job
    def twice(job: Job) -> None:
        return None

    with pytest.raises(InvalidOption):
        app.job(twice.function)
    with pytest.raises(InvalidOption):
        app.job("x", retry_after=-1)(lambda job: None)
    with pytest.raises(InvalidOption):
        app.job("y", exec_timeout=0)(lambda job: None)
    # A private memory URL is made shareable between the app's two clients.
    assert app.url.startswith("memory://disquette-app-")


async def test_decorated_jobs_in_a_plain_mapping_keep_their_flavor(sqlite_url: str) -> None:
    app = App(sqlite_url)

    @app.job
    async def coroutine(job: Job) -> str:
        return "async"

    @app.job
    def function(job: Job) -> str:
        return "sync"

    worker = Worker(app.async_client, {"coroutine": coroutine, "function": function})
    await worker.start_async()
    try:
        first = await coroutine.add_async(None)
        second = await function.add_async(None)
        assert await app.async_client.wait(first, timeout=20) == "async"
        assert await app.async_client.wait(second, timeout=20) == "sync"
    finally:
        await worker.stop_async()
        await app.aclose()


def test_a_job_functions_add_takes_a_unique_key_and_headers() -> None:
    app = App("memory://")

    @app.job(queue="reports")
    def report(job: Job) -> None:
        return None

    first = report.add({"customer": 42}, unique_key="report:42", headers={"trace": "t1"})
    assert report.add({"customer": 42}, unique_key="report:42") == first
    assert app.client.show(first).headers == {"trace": "t1"}
    assert app.client.qlen("reports") == 1
    app.close()


async def test_a_job_functions_add_async_takes_a_unique_key_and_headers() -> None:
    app = App("memory://")

    @app.job(queue="reports")
    def report(job: Job) -> None:
        return None

    first = await report.add_async(None, unique_key="k", headers={"trace": "t2"})
    assert await report.add_async(None, unique_key="k") == first
    assert (await app.async_client.show(first)).headers == {"trace": "t2"}
    await app.aclose()
