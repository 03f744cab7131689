"""Store URL parameters: one reader of numbers and flags, its errors, and the stores using it."""

from __future__ import annotations

from pathlib import Path

import pytest

from disquette.clock import SystemClock
from disquette.errors import InvalidURL
from disquette.stores import open_store
from disquette.stores._url import check_known, flag, number
from disquette.stores.disque import url as disque
from disquette.stores.redis import url as redis

URL = "x://?"


def test_a_number_is_read_or_defaulted() -> None:
    assert number(URL, {"n": "2.5"}, "n", 1, 0, 10) == 2.5
    assert number(URL, {}, "n", 1, 0, 10) == 1.0
    assert number(URL, {"n": "10"}, "n", 1, 0, 10) == 10.0


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("fast", "n is a number"),
        ("", "n is a number"),
        ("11", "n is between 0.001 and 10"),
        ("0", "n is between 0.001 and 10"),
        ("nan", "n is between 0.001 and 10"),
        ("inf", "n is between 0.001 and 10"),
    ],
)
def test_a_bad_number_names_the_parameter(value: str, reason: str) -> None:
    with pytest.raises(InvalidURL) as caught:
        number(URL, {"n": value}, "n", 1, 0.001, 10)
    assert caught.value.reason == reason


def test_a_flag_is_true_or_false_in_any_case() -> None:
    assert [flag(URL, {"f": v}, "f", False) for v in ("1", "TRUE", "yes", "On")] == [True] * 4
    assert [flag(URL, {"f": v}, "f", True) for v in ("0", "False", "no", "OFF")] == [False] * 4
    assert flag(URL, {}, "f", True) is True
    with pytest.raises(InvalidURL, match="f is true or false"):
        flag(URL, {"f": "maybe"}, "f", True)


def test_unknown_parameters_are_named() -> None:
    check_known(URL, {"a": "1"}, {"a", "b"})
    with pytest.raises(InvalidURL, match=r"unknown parameter\(s\): c, d$"):
        check_known(URL, {"a": "1", "d": "", "c": ""}, {"a", "b"})


def test_sqlite_redis_and_disque_urls_name_the_bad_parameter(tmp_path: Path) -> None:
    sqlite_url = f"sqlite:///{tmp_path}/x.db"
    with pytest.raises(InvalidURL, match="busy_timeout is between 0 and 3600"):
        open_store(f"{sqlite_url}?busy_timeout=7200", SystemClock())
    with pytest.raises(InvalidURL, match="poll_interval is a number"):
        open_store(f"{sqlite_url}?poll_interval=soon", SystemClock())
    with pytest.raises(InvalidURL, match=r"unknown parameter\(s\): pool_max"):
        open_store(f"{sqlite_url}?pool_max=3", SystemClock())
    with pytest.raises(InvalidURL, match=r"replicate_timeout is between 0\.001 and 3600"):
        redis.parse_url("redis://127.0.0.1:1/0?replicate_timeout=0")
    assert redis.parse_url("redis://127.0.0.1:1/0?retry_for=0").retry_for == 0
    with pytest.raises(InvalidURL, match=r"unknown parameter\(s\): colour"):
        disque.parse_url("disque://127.0.0.1:1?colour=red")
