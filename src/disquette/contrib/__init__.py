"""Integrations with web frameworks, each behind its extra.

- :mod:`disquette.contrib.django` (``disquette[django]``): settings, job autodiscovery,
  ``manage.py disquette``, ``add_on_commit`` and a ``django.tasks`` backend (Django 6).
- :mod:`disquette.contrib.starlette` (``disquette[starlette]``, serves FastAPI too): a
  lifespan that opens and closes the client, optionally runs a worker, and a dependency.
- :mod:`disquette.contrib.flask` (``disquette[flask]``): an extension with ``init_app`` and
  ``flask disquette ...`` commands.
"""
