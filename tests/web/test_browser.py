"""The dashboard in a real browser: Debian's Chromium driven by the ``playwright`` wheel
(``executable_path``; browsers are never downloaded). Pages load without console errors
or CSP violations, live updates arrive over SSE, buttons work. Screenshots of the main
pages go to ``build/screenshots/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Dialog,
    Error,
    Page,
    expect,
    sync_playwright,
)
from starlette.applications import Starlette
from starlette.routing import Mount

from disquette import Client, JobState
from disquette.web import create_app

from .conftest import Served, fail_for_good

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "build" / "screenshots"
# Waits, not timings: generous, for a loaded machine (each wait ends as soon as it is met).
expect.set_options(timeout=30_000)
MAIN_PAGES = {"overview": "/", "jobs": "/jobs", "failed": "/failed", "queue": "/queues/mail"}


def _chromium() -> str:
    """Debian's Chromium, installed with apt when missing and running as root (CI)."""
    path = shutil.which("chromium")
    if path is None and hasattr(os, "geteuid") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "chromium"], check=False, capture_output=True)
        path = shutil.which("chromium")
    if path is None:
        message = "no chromium: run `apt-get install -y chromium` (never `playwright install`)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """A headless Chromium for the module."""
    executable = _chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()


class _Watched:
    """A page whose console errors, page errors and failed requests are collected."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", self._page_error)
        page.on("dialog", self._dialog)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":  # CSP violations are reported here too
            self.errors.append(message.text)

    def _page_error(self, error: Error) -> None:
        self.errors.append(str(error))

    def _dialog(self, dialog: Dialog) -> None:  # a script from a job's body ran
        self.errors.append(f"dialog: {dialog.message}")
        dialog.dismiss()


@pytest.fixture
def page(browser: Browser) -> Iterator[_Watched]:
    """A fresh browser page that records errors."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(60_000)
    watched = _Watched(context.new_page())
    yield watched
    context.close()


EVERY_STORE = pytest.mark.parametrize(
    "url", ["memory", "sqlite", "postgres", "redis"], indirect=True
)


@EVERY_STORE
def test_every_page_loads_without_errors_and_is_captured(
    url: str, jobs: Client, page: _Watched
) -> None:
    fail_for_good(jobs, {"to": "a@example.com"}, queue="mail", job_type="welcome")
    for n in range(5):
        jobs.type("welcome").add({"to": f"user{n}@example.com", "n": n}, "mail")
    jobs.delay(3600).add({"report": "daily"}, "reports")
    job_id = jobs.add({"html": "<script>alert(1)</script>"}, "q<b>")
    pages = {**MAIN_PAGES, "job": f"/jobs/{quote(job_id, safe='')}"}
    pages |= {"scheduled": "/scheduled", "schedules": "/schedules", "workers": "/workers"}
    kind = url.split(":", 1)[0]
    SHOTS.mkdir(parents=True, exist_ok=True)
    with Served(create_app(url)) as base:
        for name, path in pages.items():
            response = page.page.goto(base + path)
            assert response is not None, path
            assert response.ok, path
            expect(page.page.locator("main h1")).to_be_visible()
            page.page.screenshot(path=str(SHOTS / f"{kind}-{name}.png"), full_page=True)
        assert page.page.evaluate("typeof htmx") == "object"  # the vendored scripts ran
        page.page.goto(base + "/jobs?queue=mail")
        expect(page.page.locator("#count")).to_have_text("(6)")  # loaded by htmx
        page.page.goto(base + pages["job"])
        expect(page.page.locator("#body")).to_contain_text("<script>alert(1)</script>")
    assert page.errors == []


@EVERY_STORE
def test_a_failing_job_appears_through_sse_and_retry_gets_it_processed(
    url: str, jobs: Client, page: _Watched
) -> None:
    with Served(create_app(url, poll=3600)) as base:  # no polling: only SSE can update
        page.page.goto(base + "/failed")
        expect(page.page.locator("#failed")).to_contain_text("No failed job")
        job_id = fail_for_good(jobs, {"n": 1}, queue="live", job_type="report")
        expect(page.page.locator("#failed")).to_contain_text("ValueError", timeout=30_000)
        page.page.get_by_role("link", name="see them").click()
        page.page.locator(f'a[href$="{quote(job_id, safe="")}"]').click()
        page.page.get_by_role("button", name="Retry").click()
        expect(page.page.locator("h1 .state")).to_have_text("queued")
    job = jobs.get("live", timeout=0)
    assert job.id == job_id
    jobs.ack(job)
    assert jobs.show(job_id).state is JobState.DONE
    assert page.errors == []


def test_bulk_retry_by_filter_over_1500_failed_jobs(url: str, jobs: Client, page: _Watched) -> None:
    failing = jobs.type("sync").max_attempts(1)
    failing.add_many([{"n": n} for n in range(1500)], "bulk")
    while batch := jobs.get_many("bulk", count=500, timeout=0):
        for job in batch:
            jobs.fail(job, "ConnectionError: refused")
    assert jobs.stats().by_queue()["bulk"].failed == 1500
    with Served(create_app(url)) as base:
        page.page.goto(base + "/jobs?queue=bulk&state=failed")
        page.page.locator("select[name=action]").select_option("retry")
        page.page.get_by_role("button", name="Count and confirm…").click()
        expect(page.page.locator("#dry-run")).to_contain_text("1,500")
        page.page.get_by_role("button", name="Yes, retry").click()
        expect(page.page.locator("#message")).to_have_text("retry: 1500 job(s) changed")
    row = jobs.stats().by_queue()["bulk"]
    assert (row.failed, row.queued) == (0, 1500)
    assert page.errors == []


def test_read_only_shows_no_button(url: str, jobs: Client, page: _Watched) -> None:
    job_id = fail_for_good(jobs, 1)
    with Served(create_app(url, read_only=True)) as base:
        for path in ("/", f"/jobs/{quote(job_id, safe='')}", "/queues/q", "/jobs"):
            page.page.goto(base + path)
            expect(page.page.locator("main button")).to_have_count(1 if path == "/jobs" else 0)
    assert page.errors == []


def test_under_a_prefix_every_link_keeps_it(url: str, jobs: Client, page: _Watched) -> None:
    job_id = fail_for_good(jobs, 1, queue="mail")
    outer = Starlette(routes=[Mount("/admin/jobs", app=create_app(url))])
    with Served(outer) as base:
        page.page.goto(base + "/admin/jobs/")
        page.page.get_by_role("link", name="Failed").click()
        page.page.get_by_role("link", name="see them").click()
        page.page.locator(f'a[href$="{quote(job_id, safe="")}"]').click()
        assert page.page.url.startswith(base + "/admin/jobs/jobs/")
        page.page.get_by_role("button", name="Retry").click()
        assert page.page.url.startswith(base + "/admin/jobs/jobs/")
        expect(page.page.locator("h1 .state")).to_have_text("queued")
    assert page.errors == []
