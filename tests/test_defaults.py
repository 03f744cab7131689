"""The job defaults have one home, and the places that use them agree with it."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from disquette import defaults
from disquette.job import DEFAULTS, Job
from disquette.stores.redis.scripts import PLACEHOLDER, SCRIPTS, ScriptError, fill, lua_number


def test_options_and_jobs_default_to_the_same_values() -> None:
    job = Job("id", "q", b"")
    expected = (defaults.PRIORITY, defaults.RETRY_AFTER, defaults.MAX_ATTEMPTS)
    assert (job.priority, job.retry_after, job.max_attempts) == expected
    assert job.result_ttl == defaults.RESULT_TTL
    assert (DEFAULTS.priority, DEFAULTS.retry_after, DEFAULTS.max_attempts) == expected
    assert DEFAULTS.result_ttl == defaults.RESULT_TTL


def _lua_defaults(lua: str) -> dict[str, str]:
    table = re.search(r"local DEFAULTS = \{([^}]*)\}", lua)
    assert table is not None
    return dict(re.findall(r"(\w+) = '([^']*)'", table[1]))


def test_the_redis_scripts_take_their_defaults_from_defaults_py() -> None:
    # keys.lua (the start of every script) names the defaults; the loader fills them in, so
    # no copy can drift.
    raw = resources.files("disquette.stores.redis").joinpath("lua/keys.lua").read_text()
    assert _lua_defaults(raw) == {"p": "@PRIORITY@", "ra": "@RETRY_AFTER@", "rt": "@RESULT_TTL@"}
    for script in SCRIPTS.values():
        values = _lua_defaults(script.text)
        assert int(values["p"]) == defaults.PRIORITY
        assert float(values["ra"]) == defaults.RETRY_AFTER
        assert float(values["rt"]) == defaults.RESULT_TTL
        assert PLACEHOLDER.search(script.text) is None
        assert "@" not in script.text


def test_a_placeholder_naming_no_default_or_left_unfilled_stops_the_load() -> None:
    values = {"PRIORITY": "100"}
    assert fill("local p = '@PRIORITY@'", values, "x.lua") == "local p = '100'"
    with pytest.raises(ScriptError, match=r"x\.lua: placeholder @PRIORITI@ names no default"):
        fill("local p = '@PRIORITI@'", values, "x.lua")
    with pytest.raises(ScriptError, match=r"x\.lua:2: unfilled placeholder"):
        fill("local p = 1\nlocal q = '@PRIORITY'", values, "x.lua")


def test_numbers_are_spelled_as_lua_reads_them_back() -> None:
    assert [lua_number(100), lua_number(300.0), lua_number(0.25)] == ["100", "300", "0.25"]
    assert float(lua_number(0.1)) == 0.1
