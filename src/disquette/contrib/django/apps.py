"""The Django app: autodiscovers job modules and wires ``django.tasks`` at startup."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class DisquetteConfig(AppConfig):  # type: ignore[misc]  # Django ships no types
    """``INSTALLED_APPS = [..., "disquette.contrib.django"]``."""

    name = "disquette.contrib.django"
    label = "disquette"
    verbose_name = "disquette"

    def ready(self) -> None:
        """Import each installed app's job module, and register the handlers of the
        ``django.tasks`` backends that are ours."""
        from django.utils.module_loading import autodiscover_modules

        from . import get_settings

        name = get_settings().autodiscover_module_name
        if name:
            autodiscover_modules(name)
        if _uses_task_backend():
            from .tasks import register_handlers

            register_handlers()


def _uses_task_backend() -> bool:
    from django.conf import settings

    backends: dict[str, Any] = getattr(settings, "TASKS", {})
    return any(
        str(params.get("BACKEND", "")).startswith("disquette.contrib.django")
        for params in backends.values()
    )
