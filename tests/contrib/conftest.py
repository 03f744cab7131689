"""The Django test project's location (shared by the Django tests)."""

from __future__ import annotations

from pathlib import Path

DJANGO_PROJECT = Path(__file__).resolve().parent / "django_project"
