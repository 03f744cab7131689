"""Django integration (``pip install 'disquette[django]'``).

In ``settings.py``::

    INSTALLED_APPS = [..., "disquette.contrib.django"]
    DISQUETTE = {
        "URL": "postgresql://app@db/app",  # default: $DISQUETTE_URL, else ./disquette.db
        "DATABASE_ALIAS": "default",  # the Django database add_on_commit joins
        "AUTODISCOVER_MODULE_NAME": "jobs",  # each installed app's jobs.py is imported
        "EAGER": False,  # run handlers inside add (tests); default $DISQUETTE_EAGER
    }

Each app's ``jobs.py`` registers handlers on the project's :class:`~disquette.App`::

    from disquette.contrib.django import app

    @app.job(queue="mail")
    def send_welcome(job): ...

``manage.py disquette worker`` runs them (any command of the ``disquette`` CLI works, with the
project's settings); :func:`add_on_commit` enqueues when the current transaction commits.
For Django 6's ``django.tasks``, see :mod:`disquette.contrib.django.tasks`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from ...app import App, JobFunction
from ...errors import InvalidOption
from ...job import Options

#: What ``DISQUETTE`` may hold, with the defaults.
DEFAULTS: Final[dict[str, Any]] = {
    "URL": None,
    "DATABASE_ALIAS": "default",
    "AUTODISCOVER_MODULE_NAME": "jobs",
    "EAGER": None,
}


@dataclass(frozen=True)
class Settings:
    """The ``DISQUETTE`` setting, read and checked."""

    #: The store's URL (None: ``$DISQUETTE_URL``, else ``./disquette.db``).
    url: str | None
    #: The Django database whose transactions :func:`add_on_commit` follows.
    database_alias: str
    #: The module imported from every installed app at startup (None: none).
    autodiscover_module_name: str | None
    #: Eager mode (None: ``$DISQUETTE_EAGER``).
    eager: bool | None


def get_settings() -> Settings:
    """Read ``settings.DISQUETTE``; an unknown key raises ``InvalidOption``."""
    from django.conf import settings

    raw = dict(getattr(settings, "DISQUETTE", {}))
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise InvalidOption("DISQUETTE", unknown, f"known keys: {', '.join(DEFAULTS)}")
    merged = {**DEFAULTS, **raw}
    return Settings(
        url=merged["URL"],
        database_alias=merged["DATABASE_ALIAS"],
        autodiscover_module_name=merged["AUTODISCOVER_MODULE_NAME"],
        eager=merged["EAGER"],
    )


_lock = threading.Lock()
_app: App | None = None


def get_app() -> App:
    """The project's :class:`~disquette.App`, made from the settings on first use (and
    Django set up first, for a worker process that imports this module on its own)."""
    global _app
    if _app is None:
        import django
        from django.apps import apps

        if not apps.ready and not apps.loading:
            django.setup()  # a worker's child process: jobs.py modules register here
        with _lock:
            if _app is None:
                settings = get_settings()
                _app = App(settings.url, eager=settings.eager)
    return _app


def reset_app() -> None:
    """Close the project's app and forget it: the next :func:`get_app` reads the settings
    again (tests that change ``DISQUETTE``). Its handlers are gone with it."""
    global _app
    with _lock:
        if _app is not None:
            _app.close()
        _app = None


def __getattr__(name: str) -> Any:
    """``disquette.contrib.django.app``: the project's app (``disquette worker`` loads it
    by that name)."""
    if name == "app":
        return get_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def add_on_commit(
    job: JobFunction[Any], body: object = None, *, using: str | None = None, **options: Any
) -> str | None:
    """Enqueue ``job`` with ``body`` as part of the current transaction of Django database
    ``using`` (default: ``DATABASE_ALIAS``).

    When the store is that same PostgreSQL database, the job is added through Django's own
    connection (``connection=``): it exists only if the transaction commits, and its id is
    returned at once. Otherwise it is added by a ``transaction.on_commit`` hook (nothing is
    added on rollback; outside a transaction, at once) and ``None`` is returned. ``options``
    are those of :meth:`~disquette.JobFunction.add` (``queue``, ``delay``, ``priority``...).
    """
    from django.db import connections, transaction

    app = job.app
    connection = connections[using or get_settings().database_alias]
    if not app.eager and _same_database(app.url, connection):
        connection.ensure_connection()
        queue = options.pop("queue", None) or job.queue
        headers = options.pop("headers", None)
        client = app.client.with_options(job.options.merge(Options(**options)))
        return client.add(body, queue, headers=headers, connection=connection.connection)
    transaction.on_commit(lambda: job.add(body, **options), using=connection.alias)
    return None


_LOCAL_HOSTS: Final = {"", "localhost", "127.0.0.1", "::1"}


def _same_database(url: str, connection: Any) -> bool:
    """Whether store ``url`` is the PostgreSQL database of Django ``connection``."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or connection.vendor != "postgresql":
        return False
    django = connection.settings_dict
    host, django_host = parts.hostname or "", django.get("HOST") or ""
    same_host = host == django_host or {host, django_host} <= _LOCAL_HOSTS
    same_port = (parts.port or 5432) == int(django.get("PORT") or 5432)
    return same_host and same_port and unquote(parts.path.lstrip("/")) == django.get("NAME")
