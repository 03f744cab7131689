"""The PostgreSQL store: ``postgresql://user@host/db?schema=disquette`` (``disquette[postgres]``).

``store_async.py`` is the store (its sync twin ``store.py`` is generated from it); ``sql/``
holds the numbered migrations and the named queries it runs. Importing this package imports
no driver: :func:`disquette.stores.open_store` loads the flavour a URL needs.
"""
