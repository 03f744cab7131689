"""The Flask extension in a real Flask application: the client per application context,
closed on teardown, and ``flask disquette ...``."""

from __future__ import annotations

from pathlib import Path

import flask
import pytest

from disquette import connect
from disquette.contrib.flask import Disquette
from disquette.errors import ClientClosed


@pytest.fixture
def application(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> flask.Flask:
    monkeypatch.delenv("DISQUETTE_URL", raising=False)  # the command sets it: undone after
    app = flask.Flask("shop")
    app.config["DISQUETTE_URL"] = f"sqlite:///{tmp_path / 'jobs.db'}"
    app.config["DISQUETTE_APP"] = "examples.app:app"
    extension = Disquette()
    extension.init_app(app)
    seen: list[object] = []

    @app.post("/signup")
    def signup() -> dict[str, str]:
        job_id = extension.client.add({"to": flask.request.form["email"]}, "mail")
        seen.append(extension.client)
        return {"job": job_id, "same": str(extension.client is seen[-1])}

    app.config["seen"] = seen
    return app


def test_a_view_enqueues_and_the_client_closes_on_teardown(application: flask.Flask) -> None:
    http = application.test_client()
    reply = http.post("/signup", data={"email": "ada@example.com"}).get_json()
    assert reply["same"] == "True"  # one client per application context
    (used,) = application.config["seen"]
    with pytest.raises(ClientClosed):
        used.qlen("mail")
    with connect(application.config["DISQUETTE_URL"]) as reader:
        assert reader.show(reply["job"]).body == {"to": "ada@example.com"}
    assert application.extensions["disquette"] is not None


def test_flask_disquette_runs_the_cli_with_the_apps_store(application: flask.Flask) -> None:
    runner = application.test_cli_runner()
    added = runner.invoke(args=["disquette", "add", "mail", "hello"])
    assert added.exit_code == 0, added.output
    job_id = added.output.strip()
    shown = runner.invoke(args=["disquette", "qlen", "mail"])
    assert shown.output.strip() == "1"
    with connect(application.config["DISQUETTE_URL"]) as reader:
        assert reader.show(job_id).body == "hello"


def test_flask_disquette_gives_app_commands_the_configured_app(
    application: flask.Flask,
) -> None:
    runner = application.test_cli_runner()
    listed = runner.invoke(args=["disquette", "periodic"])
    assert listed.exit_code == 2  # the configured app was loaded, and it has no schedules
    assert "'examples.app:app' has no periodic jobs" in listed.output
    application.config["DISQUETTE_APP"] = None
    refused = runner.invoke(args=["disquette", "worker"])
    assert refused.exit_code == 2
    assert "set DISQUETTE_APP" in refused.output
