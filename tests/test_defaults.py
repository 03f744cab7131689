"""The job defaults have one home, and the places that repeat them agree with it."""

from __future__ import annotations

import re
from importlib import resources

from disquette import defaults
from disquette.job import DEFAULTS, Job


def test_options_and_jobs_default_to_the_same_values() -> None:
    job = Job("id", "q", b"")
    expected = (defaults.PRIORITY, defaults.RETRY_AFTER, defaults.MAX_ATTEMPTS)
    assert (job.priority, job.retry_after, job.max_attempts) == expected
    assert job.result_ttl == defaults.RESULT_TTL
    assert (DEFAULTS.priority, DEFAULTS.retry_after, DEFAULTS.max_attempts) == expected
    assert DEFAULTS.result_ttl == defaults.RESULT_TTL


def test_the_redis_scripts_leave_out_the_same_defaults() -> None:
    # common.lua cannot import them: it reads a hash field left out as these values.
    lua = resources.files("disquette.stores.redis").joinpath("lua/common.lua").read_text()
    table = re.search(r"local DEFAULTS = \{([^}]*)\}", lua)
    assert table is not None
    values = dict(re.findall(r"(\w+) = '([^']*)'", table[1]))
    assert float(values["p"]) == defaults.PRIORITY
    assert float(values["ra"]) == defaults.RETRY_AFTER
    assert float(values["rt"]) == defaults.RESULT_TTL
