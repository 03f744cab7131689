"""The Django integration in a real project (Django 5.2 here; the ``django.tasks``
backend, Django 6, runs in tests/packaging/test_django_tasks.py): autodiscovery, settings,
``add_on_commit`` on the same PostgreSQL database and on another store, ``manage.py
disquette``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django
import pytest

from disquette import App, connect
from disquette.errors import InvalidOption

from ..servers.postgres import fresh_url, session_database_url
from .conftest import DJANGO_PROJECT

SOURCE = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def project() -> Iterator[str]:
    """The test project, set up in this process on the session's PostgreSQL database, its
    store a schema of that same database. Yields the store URL."""
    store_url = fresh_url()
    os.environ |= {
        "SHOP_DATABASE_URL": session_database_url(),
        "SHOP_DISQUETTE_URL": store_url,
        "DJANGO_SETTINGS_MODULE": "project.settings",
    }
    sys.path.insert(0, str(DJANGO_PROJECT))
    django.setup()
    yield store_url
    from disquette.contrib.django import reset_app

    reset_app()


def test_job_modules_are_autodiscovered(project: str) -> None:
    from disquette.contrib.django import get_app

    app = get_app()
    assert app.url == project
    assert "send_receipt" in app.registry
    assert app.registry["send_receipt"].queue == "shop"


@pytest.mark.usefixtures("project")
def test_an_unknown_setting_is_refused() -> None:
    from django.test import override_settings

    from disquette.contrib.django import get_settings

    with (
        override_settings(DISQUETTE={"URL": "memory://", "QUEUE": "x"}),
        pytest.raises(InvalidOption, match="known keys: URL, DATABASE_ALIAS"),
    ):
        get_settings()


def _orders(cursor: Any) -> None:
    cursor.execute("CREATE TABLE IF NOT EXISTS shop_order (id int PRIMARY KEY)")


def test_add_on_commit_joins_the_transaction_of_the_same_database(project: str) -> None:
    from django.db import connection, transaction
    from shop.jobs import send_receipt  # type: ignore[import-not-found]

    from disquette.contrib.django import add_on_commit

    with connection.cursor() as cursor:
        _orders(cursor)
    with connect(project) as observer:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("INSERT INTO shop_order VALUES (1)")
            kept = add_on_commit(send_receipt, {"order": 1}, headers={"trace": "t1"})
            assert kept is not None  # added through Django's connection, id known at once
            assert observer.qlen("shop") == 0  # not committed yet
        assert observer.show(kept).type == "send_receipt"
        assert observer.show(kept).headers == {"trace": "t1"}

        def failing_view() -> None:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("INSERT INTO shop_order VALUES (2)")
                assert add_on_commit(send_receipt, {"order": 2}, priority=5) is not None
                raise RuntimeError("the view failed")

        with pytest.raises(RuntimeError):
            failing_view()
        assert observer.qlen("shop") == 1  # the order and its job rolled back together
        with connection.cursor() as cursor:
            cursor.execute("SELECT array_agg(id) FROM shop_order")
            assert cursor.fetchone()[0] == [1]


@pytest.mark.usefixtures("project")
def test_add_on_commit_on_another_store_waits_for_the_commit(tmp_path: Path) -> None:
    from django.db import transaction

    from disquette.contrib.django import add_on_commit

    app = App(f"sqlite:///{tmp_path / 'other.db'}")

    @app.job(queue="mail")
    def welcome(job: Any) -> None: ...

    with transaction.atomic():
        assert add_on_commit(welcome, {"to": "ada"}, delay=60) is None
        assert app.client.stats().by_queue() == {}
    (row,) = app.client.stats().by_queue().values()
    assert row.scheduled == 1  # after the commit, with the call's delay

    def failing_view() -> None:
        with transaction.atomic():
            add_on_commit(welcome, {"to": "grace"})
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        failing_view()
    assert app.client.stats().by_queue()["mail"].scheduled + app.client.qlen("mail") == 1
    app.close()


def _manage(*args: str) -> list[str]:
    return [sys.executable, "manage.py", "disquette", *args]


def test_manage_py_runs_the_cli_and_the_projects_worker(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISQUETTE", "SHOP"))}
    env |= {"SHOP_DISQUETTE_URL": url, "PYTHONPATH": str(SOURCE)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    run = {"cwd": DJANGO_PROJECT, "env": env, "capture_output": True, "text": True}
    added = subprocess.run(
        _manage("add", "shop", '{"order": 7}', "--json", "--type", "send_receipt"),
        timeout=60,
        **run,  # type: ignore[call-overload]
    )
    assert added.returncode == 0, added.stderr
    job_id = added.stdout.strip()
    with (tmp_path / "worker.log").open("w") as log:
        worker = subprocess.Popen(
            _manage("worker", "-p", "2"),
            cwd=DJANGO_PROJECT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        with connect(url) as client:
            assert client.wait(job_id, timeout=60) == "receipt for order 7"
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0, (tmp_path / "worker.log").read_text()
    usage = subprocess.run(_manage("--help"), timeout=60, **run)  # type: ignore[call-overload]
    assert usage.returncode == 0
    assert "manage.py disquette" in usage.stdout
