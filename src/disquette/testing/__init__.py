"""Helpers for testing code that uses disquette.

:mod:`disquette.testing.pytest_plugin` is a pytest plugin, enabled on install (entry point
``pytest11``): fixtures for a private in-memory store, a temporary SQLite store and eager mode.
"""
