"""The error hierarchy is the documentation of what can go wrong: every public error sits
under one tier, and the CLI's exit statuses follow the tiers."""

from __future__ import annotations

import inspect

import pytest

from disquette import errors
from disquette.cli import EXIT_FAILED, EXIT_TIMEOUT, EXIT_UNAVAILABLE, EXIT_USAGE, exit_code_for

TIERS = (
    errors.InvalidInput,
    errors.Refused,
    errors.JobError,
    errors.StoreError,
    errors.Timeout,
    errors.WorkerError,
    errors.CannotListen,
)
PUBLIC = [
    cls
    for _name, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, errors.DisquetteError) and cls not in (errors.DisquetteError, *TIERS)
]


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda cls: cls.__name__)
def test_every_error_sits_under_exactly_one_tier(cls: type[errors.DisquetteError]) -> None:
    tiers = [tier for tier in TIERS if issubclass(cls, tier)]
    assert len(tiers) == 1, (cls, tiers)


def test_invalid_input_is_a_value_error_and_a_usage_error() -> None:
    bad = errors.InvalidOption("ttl", -1, "must be positive")
    assert isinstance(bad, ValueError)
    assert exit_code_for(bad) == EXIT_USAGE
    assert exit_code_for(errors.AppImportError("APP 'x' is not module:attribute")) == EXIT_USAGE
    assert exit_code_for(errors.UnsafeBind("0.0.0.0 without a password")) == EXIT_USAGE


def test_exit_statuses_follow_the_tiers() -> None:
    assert exit_code_for(errors.StoreUnavailable("down")) == EXIT_UNAVAILABLE
    assert exit_code_for(errors.StoreRefused("no such database")) == EXIT_UNAVAILABLE
    assert exit_code_for(errors.StoreError("PostgreSQL", "deadlock")) == EXIT_FAILED
    assert exit_code_for(errors.Timeout("get", 1)) == EXIT_TIMEOUT
    assert exit_code_for(errors.QueueFull("q", 1)) == EXIT_FAILED
    assert exit_code_for(errors.JobNotFound("D-x")) == EXIT_FAILED


def test_store_errors_keep_their_messages_and_fields() -> None:
    down = errors.StoreUnavailable("Redis redis://127.0.0.1:1: Connection refused")
    assert str(down) == "Redis redis://127.0.0.1:1: Connection refused"
    assert isinstance(down, ConnectionError)
    assert down.retryable
    assert not errors.StoreRefused("x").retryable
    other = errors.StoreError("PostgreSQL", "deadlock detected")
    assert (other.store, str(other)) == ("PostgreSQL", "PostgreSQL: deadlock detected")
    reply = errors.ServerError("ERR unknown command 'FOO'")
    assert (reply.store, reply.reply) == ("Disque", "ERR unknown command 'FOO'")
    assert exit_code_for(reply) == EXIT_FAILED
