"""Stores whose drivers have an asyncio API (PostgreSQL, Redis, Disque): written once here,
their sync twins generated into ``disquette._sync.stores``. Each module has
``open_url(url, clock) -> AsyncStore``."""
