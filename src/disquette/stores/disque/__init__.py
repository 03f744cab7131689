"""The Disque store: ``disque://host:7711`` speaks the Disque protocol to a server, ours
(``disquette server``) or another (``disquette[server]``).

``store_async.py`` is the store and ``pool_async.py`` its connections and failover (their
sync twins ``store.py`` and ``pool.py`` are generated); ``codec.py`` (the body envelope)
and ``url.py`` (``disque://`` URLs) serve both flavours. The wire vocabulary the store
shares with the server is :mod:`disquette.disque`.
"""
