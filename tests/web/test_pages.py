"""The dashboard over HTTP, on real stores: pages, escaping, actions, CSRF, safety."""

from __future__ import annotations

import base64
import inspect
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from disquette import Client, JobState, connect, connect_async
from disquette.errors import InvalidOption, UnsafeBind
from disquette.stores.types import DURATION_BUCKETS, RollupRow, WorkerInfo
from disquette.web import check_bind, create_app, error_class

from .conftest import csrf, fail_for_good, store_url

PAGES = ["/", "/jobs", "/failed", "/schedules", "/workers", "/queues/q", "/scheduled"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_with_the_security_headers(
    web: TestClient, jobs: Client, path: str
) -> None:
    fail_for_good(jobs, {"n": 1})
    jobs.add({"n": 2}, "q")
    response = web.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert "<script>" not in response.text  # every script is a file: no inline one


def test_overview_counts_each_queue_by_state(web: TestClient, jobs: Client) -> None:
    fail_for_good(jobs, 1, queue="mail")
    jobs.add(2, "mail")
    jobs.add(3, "sms")
    jobs.pause("sms")
    html = web.get("/").text
    row = re.search(r'<a href="/queues/mail">mail</a>(.*?)</tr>', html, re.S)
    assert row is not None
    cells = re.findall(r'<td class="num">(?:<a [^>]*>)?(\d+)', row.group(1))
    assert cells[:6] == ["0", "1", "0", "0", "1", "0"]  # scheduled..cancelled
    parent = jobs.add(4, "deps")
    jobs.add_many([5, 6], "deps", depends_on=[parent])
    html = web.get("/").text
    assert '<th class="num">Waiting</th>' in html or ">Waiting<" in html
    row = re.search(r'<a href="/queues/deps">deps</a>(.*?)</tr>', html, re.S)
    assert row is not None
    cells = re.findall(r'<td class="num">(?:<a [^>]*>)?(\d+)', row.group(1))
    assert cells[:7] == ["0", "1", "0", "0", "0", "0", "2"]  # ..., cancelled, waiting
    paused = re.search(r'<a href="/queues/sms">sms</a>(.*?)</tr>', html, re.S)
    assert paused is not None
    assert "badge warn" in paused.group(1)


def test_a_job_body_and_a_queue_name_are_escaped(web: TestClient, jobs: Client) -> None:
    odd = "q<b>&\"' é/x?#"
    job_id = jobs.add({"html": "<script>alert(1)</script>"}, odd)
    for page in (web.get(f"/jobs/{quote(job_id)}").text, web.get("/").text):
        assert "<script>alert" not in page
        assert "<b>" not in page
        assert "/queues/q%3Cb%3E%26%22%27%20%C3%A9%2Fx%3F%23" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in web.get(f"/jobs/{quote(job_id)}").text
    queue_page = web.get("/queues/q%3Cb%3E%26%22%27%20%C3%A9%2Fx%3F%23")
    assert queue_page.status_code == 200
    assert "q&lt;b&gt;&amp;&#34;&#39; é/x?#" in queue_page.text
    assert 'state=queued">1</a></td>' in queue_page.text  # its one queued job, by that name


def test_the_job_page_shows_every_part(web: TestClient, jobs: Client) -> None:
    job_id = fail_for_good(jobs, {"user": {"id": 7}})
    page = web.get(f"/jobs/{quote(job_id)}").text
    assert "&#34;id&#34;: 7" in page  # pretty JSON, escaped
    assert "Last error: ValueError" in page
    assert "Traceback (most recent call last)" in page
    assert "created" in page
    assert "finished" in page
    assert "Retry</button>" in page


def test_a_large_body_is_cut(web: TestClient, jobs: Client) -> None:
    job_id = jobs.add("x" * 100_000, "q")
    page = web.get(f"/jobs/{quote(job_id)}").text
    assert "more characters not shown" in page
    assert "x" * 100_000 not in page


def test_failed_jobs_are_grouped_by_queue_type_and_error_class(
    web: TestClient, jobs: Client
) -> None:
    for n in range(3):
        fail_for_good(jobs, n, queue="mail", job_type="welcome")
    fail_for_good(jobs, 9, queue="sms", job_type="otp")
    html = web.get("/failed").text
    groups = re.findall(
        r"<td>(\w+)</td><td>(\w+)</td><td class=\"error\">(\w+)</td><td class=\"num\">(\d+)", html
    )
    assert groups == [("mail", "welcome", "ValueError", "3"), ("sms", "otp", "ValueError", "1")]


def test_the_overview_draws_throughput_from_the_rollups(web: TestClient, jobs: Client) -> None:
    jobs.add(1, "mail")
    now = jobs.store.clock.now()
    minute = now // 60 * 60
    buckets = [0] * len(DURATION_BUCKETS)
    rows = [
        RollupRow("minute", minute - 60 * back, "mail", "", completed, 0, tuple(buckets))
        for back, completed in ((2, 5), (1, 9), (0, 4))
    ]
    jobs.store.record_rollups(rows)
    html = web.get("/").text
    row = re.search(r'<a href="/queues/mail">mail</a>(.*?)</tr>', html, re.S)
    assert row is not None
    assert "<polyline" in row.group(1)
    assert '<span class="muted">18</span>' in row.group(1)


def test_the_workers_page_lists_registered_workers(web: TestClient, jobs: Client) -> None:
    now = jobs.store.clock.now()
    info = WorkerInfo("w1", "host-a", 4242, ("mail", "sms"), 8, 3, now - 60, now, "9.9.9")
    jobs.store.register_worker(info, 30.0)
    html = web.get("/workers").text
    assert "host-a" in html
    assert "mail, sms" in html
    assert ">4242<" in html


def test_error_class_reads_the_last_line_of_a_traceback() -> None:
    assert error_class("Traceback\n  x\nmod.sub.KeyError: 'k'") == "mod.sub.KeyError"
    assert error_class("timed out after 3 s") == "timed out after 3 s"
    assert error_class(None) == "—"


def test_the_jobs_filter_by_body_and_cursor_paging(web: TestClient, jobs: Client) -> None:
    for n in range(120):
        jobs.add({"user": {"id": n % 3}}, "q")
    seen: list[str] = []
    url = "/jobs?path=user.id&value=1"
    while url:
        html = web.get(url).text
        seen += re.findall(r'name="ids" value="([^"]+)"', html)
        nxt = re.search(r'id="next" href="([^"]+)"', html)
        url = nxt.group(1).replace("&amp;", "&") if nxt else ""
    expected = {job.id for job in jobs.peek("q", 200) if job.body["user"]["id"] == 1}
    assert len(seen) == len(set(seen)) == 40
    assert web.get("/count?path=user.id&value=1").text == "(40)"
    assert set(seen) == expected


def test_retry_from_the_job_page(web: TestClient, jobs: Client) -> None:
    job_id = fail_for_good(jobs, 1)
    response = web.post(
        f"/jobs/{quote(job_id)}/retry", data={"csrf": csrf(web)}, follow_redirects=False
    )
    assert response.status_code == 303
    assert jobs.show(job_id).state is JobState.QUEUED


def test_a_post_without_the_token_or_from_another_site_is_refused(
    web: TestClient, jobs: Client
) -> None:
    job_id = fail_for_good(jobs, 1)
    assert web.post(f"/jobs/{quote(job_id)}/retry", data={"csrf": "forged" * 8}).status_code == 403
    cross = web.post(
        f"/jobs/{quote(job_id)}/retry",
        data={"csrf": csrf(web)},
        headers={"origin": "http://evil.example", "sec-fetch-site": "cross-site"},
    )
    assert cross.status_code == 403
    assert jobs.show(job_id).state is JobState.FAILED


def test_pause_modes_and_resume(web: TestClient, jobs: Client) -> None:
    jobs.add(1, "q")
    token = csrf(web)
    web.post("/queues/q/pause", data={"csrf": token, "mode": "out"})
    assert jobs.pause_mode("q") == "out"
    assert web.post("/queues/q/pause", data={"csrf": token, "mode": "sideways"}).status_code == 400
    web.post("/queues/q/resume", data={"csrf": token})
    assert jobs.pause_mode("q") == "none"


def test_the_overview_toggles_a_pause_and_comes_back(web: TestClient, jobs: Client) -> None:
    jobs.add(1, "mail")
    token = csrf(web)
    assert ">Pause</button>" in web.get("/").text
    paused = web.post("/queues/mail/pause", data={"csrf": token, "next": "/"})
    assert paused.url.path == "/"
    assert jobs.pause_mode("mail") == "all"
    assert ">Resume</button>" in paused.text
    resumed = web.post("/queues/mail/resume", data={"csrf": token, "next": "//evil.example/"})
    assert resumed.url.path == "/queues/mail"  # never redirected off the dashboard
    assert jobs.pause_mode("mail") == "none"


def test_bulk_retry_over_a_filter_counts_then_acts(web: TestClient, jobs: Client) -> None:
    ids = [fail_for_good(jobs, n) for n in range(30)]
    other = fail_for_good(jobs, 99, queue="keep")
    form = {"csrf": csrf(web), "action": "retry", "queue": "q", "state": "failed"}
    dry = web.post("/bulk", data=form)
    assert re.search(r"<strong>30</strong> job\(s\) matching the filter", dry.text)
    assert all(jobs.show(i).state is JobState.FAILED for i in ids)  # nothing done yet
    done = web.post("/bulk", data={**form, "confirm": "1"})
    assert "retry: 30 job(s) changed" in done.text
    assert all(jobs.show(i).state is JobState.QUEUED for i in ids)
    assert jobs.show(other).state is JobState.FAILED


def test_bulk_delete_over_a_selection(web: TestClient, jobs: Client) -> None:
    ids = [jobs.add(n, "q") for n in range(5)]
    form = [("csrf", csrf(web)), ("action", "delete"), ("confirm", "1")]
    form += [("ids", i) for i in ids[:2]]
    body = urlencode(form)
    done = web.post(
        "/bulk", content=body, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert "delete: 2 job(s) changed" in done.text
    assert jobs.qlen("q") == 3


def test_read_only_shows_no_button_and_refuses_a_forged_post(url: str, jobs: Client) -> None:
    job_id = fail_for_good(jobs, 1)
    with TestClient(create_app(url, read_only=True)) as http:
        page = http.get(f"/jobs/{quote(job_id)}").text
        assert "<button" not in page.split("<main>")[1].split('<form method="get"')[0]
        assert "Retry</button>" not in page
        refused = http.post(f"/jobs/{quote(job_id)}/retry", data={"csrf": csrf(http)})
        assert refused.status_code == 403
    assert jobs.show(job_id).state is JobState.FAILED


def test_per_action_permission(url: str, jobs: Client) -> None:
    job_id = jobs.add(1, "q")
    app = create_app(url, can=lambda request, action: action != "delete")
    with TestClient(app) as http:
        page = http.get(f"/jobs/{quote(job_id)}").text
        assert "Cancel</button>" in page
        assert "Delete</button>" not in page
        assert (
            http.post(f"/jobs/{quote(job_id)}/delete", data={"csrf": csrf(http)}).status_code == 403
        )


def test_mounted_under_a_prefix_every_link_keeps_it(url: str, jobs: Client) -> None:
    fail_for_good(jobs, 1)
    outer = Starlette(routes=[Mount("/ops/queue", app=create_app(url))])
    with TestClient(outer) as http:
        for path in PAGES:
            html = http.get("/ops/queue" + path).text
            links = re.findall(r'(?:href|src|action|hx-get|sse-connect)="(/[^"]*)"', html)
            assert links, path
            assert all(link.startswith("/ops/queue/") for link in links), (path, links)
        assert http.get("/ops/queue/static/htmx.min.js").status_code == 200


def test_basic_auth_in_constant_time_leaves_health_open(url: str) -> None:
    with TestClient(create_app(url, credentials=("ops", "s3cret"))) as http:
        assert http.get("/").status_code == 401
        assert http.get("/healthz").status_code == 200
        bad = base64.b64encode(b"ops:wrong").decode()
        assert http.get("/", headers={"authorization": f"Basic {bad}"}).status_code == 401
        good = base64.b64encode(b"ops:s3cret").decode()
        assert http.get("/", headers={"authorization": f"Basic {good}"}).status_code == 200


def test_binding_beyond_loopback_needs_credentials() -> None:
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    check_bind("0.0.0.0", ("u", "p"))
    check_bind("0.0.0.0", None, unprotected=True)
    with pytest.raises(UnsafeBind):
        check_bind("0.0.0.0", None)


def test_health_readiness_and_metrics(web: TestClient, jobs: Client) -> None:
    jobs.add(1, "mail")
    assert web.get("/healthz").text == "ok"
    assert web.get("/readyz").json() == {"ready": True}
    scrape = web.get("/metrics")
    assert scrape.status_code == 200
    assert 'disquette_queue_jobs{queue="mail",state="queued"} 1.0' in scrape.text


def test_readyz_says_when_the_store_cannot_answer(tmp_path: Path) -> None:
    client = connect_async(f"sqlite:///{tmp_path / 'jobs.db'}")
    with TestClient(create_app(client)) as http:
        assert http.get("/readyz").status_code == 200
        http.portal.call(client.close)  # type: ignore[union-attr]
        gone = http.get("/readyz")
        assert gone.status_code == 503
        assert gone.json()["ready"] is False
        assert http.get("/healthz").status_code == 200
        scrape = http.get("/metrics")  # read through the (closed) AsyncClient
        assert scrape.status_code == 200
        assert "disquette_store_up 0.0" in scrape.text


@pytest.mark.parametrize("given", ["url", "async client", "metrics client"])
def test_metrics_work_however_the_app_is_created(url: str, jobs: Client, given: str) -> None:
    jobs.add(1, "mail")
    jobs.delay(60).add(2, "mail")
    if given == "url":
        app = create_app(url)
    elif given == "async client":
        app = create_app(connect_async(url))
    else:
        app = create_app(connect_async(url), metrics_client=jobs)
    with TestClient(app) as http:
        scrape = http.get("/metrics")
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(scrape.text)}
    assert families["disquette_store_up"].samples[0].value == 1
    jobs_by = {
        (s.labels["queue"], s.labels["state"]): s.value
        for s in families["disquette_queue_jobs"].samples
    }
    assert jobs_by[("mail", "queued")] == 1
    assert jobs_by[("mail", "scheduled")] == 1
    assert {state for _, state in jobs_by} == {state.value for state in JobState}


@pytest.mark.parametrize("kind", ["postgres", "redis"])
def test_pages_on_server_stores(kind: str, tmp_path: Path) -> None:
    url = store_url(kind, tmp_path)
    client = connect(url)
    try:
        job_id = fail_for_good(client, {"user": {"id": 1}})
        client.add({"user": {"id": 2}}, "q")
        with TestClient(create_app(url)) as http:
            for path in [*PAGES, f"/jobs/{quote(job_id)}"]:
                assert http.get(path).status_code == 200, path
            html = http.get("/jobs?path=user.id&value=1").text
            assert re.findall(r'name="ids" value="([^"]+)"', html) == [job_id]
            assert "ValueError" in http.get("/failed").text
    finally:
        client.close()


def test_the_command_refuses_a_wide_bind_without_a_password() -> None:
    from click.testing import CliRunner

    from disquette.cli import EXIT_USAGE, main

    refused = CliRunner().invoke(main, ["web", "--host", "0.0.0.0", "--url", "memory://cli"])
    assert refused.exit_code == EXIT_USAGE
    assert "without credentials" in refused.output


def test_a_formatter_redacts_bodies(url: str, jobs: Client) -> None:
    job_id = jobs.add({"card": "4111 1111 1111 1111", "user": 7}, "q")
    app = create_app(url, formatter=lambda job: f"user {job.body['user']}, card redacted")
    with TestClient(app) as http:
        page = http.get(f"/jobs/{quote(job_id)}").text
    assert "4111" not in page
    assert "user 7, card redacted" in page


def test_bad_options_are_typed_errors(url: str) -> None:
    with pytest.raises(InvalidOption):
        create_app(url, poll=0)
    with pytest.raises(InvalidOption):
        create_app(url, credentials=("admin", ""))


def test_overview_and_queue_show_limits_fill_and_capped_counts(url: str, jobs: Client) -> None:
    jobs.add_many(list(range(3)), "mail")
    jobs.set_limits("mail", concurrency=2, rate=(5, 1))
    jobs.set_limits("idle", concurrency=1)  # limited, no job: listed with its limits
    with TestClient(create_app(url, max_len={"mail": 4})) as http:
        overview = http.get("/").text
        queue_page = http.get("/queues/mail").text
        with pytest.raises(InvalidOption):
            create_app(url, max_len={"mail": 0})
    row = re.search(r'<a href="/queues/mail">mail</a>(.*?)</tr>', overview, re.S)
    assert row is not None
    assert "2 at once, 5 per 1 s" in row.group(1)
    assert "75%" in row.group(1)  # 3 queued of max_len 4
    assert '<a href="/queues/idle">idle</a>' in overview
    assert "2 at once, 5 per 1 s" in queue_page
    assert "75% of max_len 4" in queue_page


def test_counts_past_the_cap_show_a_plus(url: str, jobs: Client) -> None:
    from disquette.stores import types

    jobs.add_many(list(range(12)), "mail")
    default = types.COUNT_CAP
    with TestClient(create_app(url)) as http:
        assert 'state=queued">12</a>' in http.get("/").text
    client = connect_async(url)
    real = client.queue_counts

    async def small_cap(queue: str | None = None, cap: int = default) -> Any:
        return await real(queue, cap=10)

    client.queue_counts = small_cap  # type: ignore[method-assign]
    with TestClient(create_app(client)) as http:
        html = http.get("/").text
    assert 'state=queued">10+</a>' in html
    assert "at least 10: counted up to a cap" in html


def test_the_command_reads_max_len_bounds() -> None:
    from click.testing import CliRunner

    from disquette.cli import EXIT_USAGE, main
    from disquette.cli.web import _bounds

    assert _bounds(("mail=100", "a=b=2")) == {"mail": 100, "a=b": 2}
    refused = CliRunner().invoke(main, ["web", "--max-len", "mail", "--url", "memory://cli"])
    assert refused.exit_code == EXIT_USAGE
    assert "QUEUE=N" in refused.output


def test_every_page_makes_at_most_three_store_calls(url: str, jobs: Client) -> None:
    job_id = fail_for_good(jobs, {"user": {"id": 1}}, queue="q")
    jobs.add({"user": {"id": 2}}, "q")
    jobs.set_limits("q", concurrency=3)
    client = connect_async(url)
    calls: list[str] = []
    store = client.store
    for name in dir(type(store)):
        method = getattr(store, name)
        if name.startswith("_") or not inspect.iscoroutinefunction(method) or name == "close":
            continue

        def counted(*args: Any, _name: str = name, _method: Any = method, **kw: Any) -> Any:
            calls.append(_name)
            return _method(*args, **kw)

        setattr(store, name, counted)
    seen: dict[str, list[str]] = {}
    with TestClient(create_app(client)) as http:
        for path in [*PAGES, "/count?queue=q", f"/jobs/{quote(job_id)}", "/?fragment=1"]:
            calls.clear()
            assert http.get(path).status_code == 200, path
            seen[path] = list(calls)
    assert seen["/"] == ["queue_counts", "rollups", "limits"]
    assert seen["/queues/q"] == ["queue_counts", "peek", "limits"]
    assert all(len(made) <= 3 for made in seen.values()), seen
