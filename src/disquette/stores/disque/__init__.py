"""The Disque store: ``disque://host:7711`` speaks the Disque protocol to a server, ours
(``disquette server``) or another (``disquette[server]``).

``store_async.py`` is the store (its sync twin ``store.py`` is generated from it); the wire
vocabulary it shares with the server is :mod:`disquette.disque`.
"""
