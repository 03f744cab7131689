"""The Redis store: ``redis://host:6379/0``, ``rediss://`` for TLS (``disquette[redis]``).

``store_async.py`` is the store (its sync twin ``store.py`` is generated from it); ``lua/``
holds its scripts (each prefixed with ``common.lua``); ``listener.py`` is the wake-up
listener and the connection probe, written once for both flavours. Importing this package
imports no driver.
"""
