"""The pytest plugin's fixtures, as a user's test suite sees them (through ``pytester``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import disquette

pytest_plugins = ["pytester"]

USER_CODE = '''
import disquette
from disquette import App, Job

app = App("sqlite:///should-not-be-used.db")


@app.job(queue="mail")
def send_welcome(job: Job) -> str:
    return "sent to " + job.body["to"]


def sign_up(email):
    """The code under test: it enqueues through a client of its own."""
    with disquette.connect() as jobs:
        return jobs.add({"to": email}, "signups")
'''

USER_TESTS = """
import disquette
import signup


def test_memory_client_sees_what_the_code_added(disquette_client):
    job_id = signup.sign_up("ada@example.com")
    job = disquette_client.get("signups", timeout=0)
    assert (job.id, job.body) == (job_id, {"to": "ada@example.com"})


def test_each_test_gets_its_own_store(disquette_client):
    assert disquette_client.qlen("signups") == 0


def test_sqlite_client(disquette_sqlite_client, disquette_sqlite_url, tmp_path):
    assert disquette_sqlite_url.endswith(str(tmp_path / "disquette.db"))
    job_id = signup.sign_up("grace@example.com")
    assert disquette_sqlite_client.show(job_id).queue == "signups"


def test_eager_runs_the_handler_inside_add(disquette_eager):
    app = disquette_eager(signup.app)
    job_id = signup.send_welcome.add({"to": "ada@example.com"})
    assert app.client.show(job_id).result == "sent to ada@example.com"


def test_eager_is_undone_after_its_test():
    assert not signup.app.eager
    assert signup.app.url == "sqlite:///should-not-be-used.db"


def test_a_failing_assertion_still_fails(disquette_client):
    assert disquette_client.qlen("signups") == 1
"""


def test_fixtures_in_a_users_suite(
    pytester: pytest.Pytester, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = str(Path(disquette.__file__).parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([source, os.environ.get("PYTHONPATH", "")]))
    monkeypatch.delenv("DISQUETTE_URL", raising=False)
    monkeypatch.delenv("DISQUETTE_EAGER", raising=False)
    pytester.makepyfile(signup=USER_CODE, test_signup=USER_TESTS)
    # Installed, the plugin loads through its entry point; from a source tree, by name.
    loaded = request.config.pluginmanager.has_plugin("disquette")
    args = [] if loaded else ["-p", "disquette.testing.pytest_plugin"]
    result = pytester.runpytest_subprocess(*args, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(["*test_a_failing_assertion_still_fails*"])
    assert not (pytester.path / "should-not-be-used.db").exists()
