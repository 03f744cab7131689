"""The in-memory store: a real store (same semantics, same conformance suite), kept in a
process's memory. ``memory://`` opens a private one, ``memory://name`` a named one shared by
every client of the process.

``store.py`` is the store (adds, claims, acks and the other transitions), ``state.py`` its
jobs, indexes and heaps, ``admin.py`` its inspecting and managing operations.
"""

from .store import MemoryStore, open_memory_store, open_url

__all__ = ["MemoryStore", "open_memory_store", "open_url"]
