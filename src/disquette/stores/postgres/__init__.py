"""The PostgreSQL store: ``postgresql://user@host/db?schema=disquette`` (``disquette[postgres]``).

Each ``x_async.py`` is hand-written for asyncio and ``x.py`` beside it is its generated sync
twin; the other modules serve both flavours.

- ``store_async.py``: the store (:class:`~.store_async.AsyncPostgresStore`) and ``open_url``;
- ``url.py``: the URL's parameters, read into the store's settings;
- ``database_async.py``: the pool, the first connection (which migrates), the retry loop
  every call runs in, and the caller's own transaction;
- ``errors.py``: psycopg's errors read as transient, refused, or the store's errors;
- ``statements.py``: the SQL of ``sql/`` (numbered migrations and named queries) for a schema;
- ``upkeep_async.py``: what time made due, bounded and by one process at a time, applied
  before reads and claims a maintainer does not cover; VACUUM and prunes (done rows on a
  count of acks);
- ``maintainer_async.py``: the background maintainer, one leader per schema (an advisory
  lock), which applies what time made due so that claims only claim;
- ``inserts_async.py``: adds, with ``max_len``, the caller's transaction, or replication;
- ``dependencies.py``: what an add with ``depends_on`` makes of each job once its parents
  are locked (the release on a parent's end is ``resolve_children``, in SQL);
- ``admin_async.py``: the operator's calls (scan, queues, stats, flush, the node registry);
- ``listener_async.py``: the ``LISTEN`` connection that turns NOTIFYs into wake-ups, and
  registers the waiters the NOTIFYs are sent for.

Importing this package imports no driver: :func:`disquette.stores.open_store` loads the
flavour a URL needs.
"""
