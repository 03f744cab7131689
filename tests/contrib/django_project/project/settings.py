"""A small Django project using disquette: the store and the database come from the
environment the tests set (``SHOP_DISQUETTE_URL``; ``SHOP_DATABASE_URL``, else SQLite)."""

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

import django

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "test-only"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "disquette.contrib.django", "shop"]

_database = urlsplit(os.environ.get("SHOP_DATABASE_URL", ""))
if _database.scheme.startswith("postgres"):
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(_database.path.lstrip("/")),
            "USER": _database.username or "",
            "HOST": _database.hostname or "",
            "PORT": str(_database.port or ""),
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("SHOP_SQLITE", ":memory:"),
        }
    }

DISQUETTE = {"URL": os.environ["SHOP_DISQUETTE_URL"]}

if django.VERSION >= (6, 0):
    TASKS = {
        "default": {
            "BACKEND": "disquette.contrib.django.tasks.DisquetteBackend",
            "QUEUES": ["default", "reports"],
            "OPTIONS": {"max_attempts": 1},
        }
    }
