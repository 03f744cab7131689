"""``redis+sentinel://`` URLs: what they name, and the typed errors for bad ones (no
namespaces needed)."""

from __future__ import annotations

import pytest

from disquette.errors import InvalidURL
from disquette.stores import SCHEMES
from disquette.stores.redis.url import parse_url


def test_a_sentinel_url_names_sentinels_a_service_and_a_database() -> None:
    settings = parse_url(
        "redis+sentinel://me:secret@10.0.0.1:26379,[::1]:26380/jobs/3"
        "?prefix=q&retry_for=30&socket_timeout=2&sentinel_password=s3"
    )
    found = settings.sentinels
    assert found is not None
    assert found.hosts == (("10.0.0.1", 26379), ("::1", 26380))
    assert (found.service, found.db) == ("jobs", 3)
    assert found.connection == {"username": "me", "password": "secret", "socket_timeout": 2.0}
    assert found.sentinel == {"socket_timeout": 2.0, "password": "s3"}
    assert settings.cluster is False
    assert (settings.prefix, settings.retry_for) == ("q:", 30.0)
    assert "secret" not in settings.url
    assert "s3" not in settings.url
    assert SCHEMES["redis+sentinel"] is SCHEMES["redis"]


def test_a_plain_redis_url_names_no_sentinels() -> None:
    assert parse_url("redis://127.0.0.1:6379/0").sentinels is None


def test_the_database_defaults_to_zero() -> None:
    found = parse_url("redis+sentinel://h:26379/jobs").sentinels
    assert found is not None
    assert found.db == 0
    assert found.connection == {}


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+sentinel://h/jobs", "host:port"),
        ("redis+sentinel://h:0/jobs", "host:port"),
        ("redis+sentinel://h:1,/jobs", "host:port"),
        ("redis+sentinel://h:1/", "service_name"),
        ("redis+sentinel://h:1/jobs/x", "service_name"),
        ("redis+sentinel://h:1/jobs/1/2", "service_name"),
        ("redis+sentinel://h:1/jobs?health=1", "unknown parameter"),
        ("redis+sentinel://h:1/jobs?cluster=yes", "Cluster"),
        ("redis+sentinel://h:1/jobs?socket_timeout=never", "socket_timeout"),
    ],
)
def test_bad_sentinel_urls_are_refused_with_a_typed_error(url: str, why: str) -> None:
    with pytest.raises(InvalidURL, match=why):
        parse_url(url)
