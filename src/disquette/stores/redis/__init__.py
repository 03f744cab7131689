"""The Redis store: ``redis://host:6379/0``, ``rediss://`` for TLS (``disquette[redis]``).

Modules (importing this package imports no driver):

- ``store_async.py``: the store, :class:`AsyncRedisStore`, and ``open_url``; its sync twin
  ``store.py`` is generated from it. Its docstring tells how the store works.
- ``runner_async.py``: how calls reach Redis (retries while it is away, scripts by SHA, job
  ids routed on a Cluster); ``runner.py`` is generated from it. ``held.py``: how its single
  commands are sent (the sync flavour holds a pool connection per thread).
- ``claims_async.py``: the claims, plain and blocked (``BZPOPMIN`` on the queues' markers
  and the claim script written at once, with its watchdog); ``claims.py`` is generated.
- ``url.py``: the URL and its options (``Settings``, ``parse_url``).
- ``scripts.py``: the Lua scripts of ``lua/``, each prefixed with ``keys.lua`` (the calling
  convention) and ``common.lua`` (which documents the key layout), but for ``add1.lua``
  (the one-job add, ``keys.lua`` alone), ``@NAME@`` filled from :mod:`disquette.defaults`.
- ``codec.py``: how jobs are spelled: the packed ``m`` field, the scripts' rows and
  arguments.
- ``deps_async.py``: job dependencies (issue 16): how an add with parents is laid out in
  script calls, and a Cluster's slot rule; the work is ``lua/deps.lua``'s (``deps.py``
  is generated).
- ``listener.py``: the wake-up listener and the connection probe; ``timers.py``: wake-ups
  when a delay or a lease runs out. These, ``held.py`` and the three above are written
  once for both flavours.
"""
