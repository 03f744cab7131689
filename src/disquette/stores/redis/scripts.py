"""The Redis store's Lua scripts, read once from ``lua/`` (both flavours share them).

Each script is ``keys.lua`` (the calling convention, how keys and ready-set members are
spelled), ``common.lua`` (the key layout and shared functions) and ``deps.lua`` (job
dependencies, which any script's expiry may resolve) followed by the operation's own file;
``add1.lua`` (the one-job add) has ``keys.lua`` alone before it (``LEAN``): the rest of
the prelude costs more Redis time than the insert it does. ``@NAME@`` in a script is
filled with :mod:`disquette.defaults`' ``NAME`` when it is loaded, so the values a job
hash leaves out have one home; a placeholder that names no default, or one left
unfilled, stops the load.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping
from importlib import resources
from typing import Final

from ... import defaults

SCRIPT_NAMES: Final = (
    "add",
    "add1",  # issue 12: one plain job, without the prelude (see LEAN)
    "scan_desc",  # issue 14: filtered jobs pages
    "counts",  # issue 14: queue_counts
    "claim",
    "ack",
    "nack",
    "fail",
    "working",
    "show",
    "delete",
    "qlen",
    "peek",
    "failed",
    "retry",
    "pause",
    "recover",
    "stats",
    "release",
    "enqueue",
    "dequeue",
    "queues",
    "flush",
    "scan",
    "release_holder",
    "cancel",
)
#: Scripts that run with ``keys.lua`` alone before them, not the whole prelude.
LEAN: Final = frozenset({"add1"})
#: ``@NAME@``: where a script takes a value of :mod:`disquette.defaults`.
PLACEHOLDER: Final = re.compile(r"@(\w+)@")


class ScriptError(Exception):
    """A script that cannot be loaded as written (an unknown or unfilled placeholder)."""


@dataclasses.dataclass(frozen=True)
class Script:
    """One Lua script: the shared prelude plus the operation, and its SHA1 for EVALSHA."""

    name: str
    text: str
    sha: str


def lua_number(value: float) -> str:
    """A number as Lua reads it back exactly: ``100``, ``300`` (not ``300.0``), ``0.25``."""
    if isinstance(value, int) or value.is_integer():
        return str(int(value))
    return format(value, ".17g")


def default_values() -> dict[str, str]:
    """Every number of :mod:`disquette.defaults`, by name, spelled for Lua."""
    return {
        name: lua_number(value)
        for name, value in vars(defaults).items()
        if name.isupper() and isinstance(value, int | float) and not isinstance(value, bool)
    }


def fill(text: str, values: Mapping[str, str], source: str) -> str:
    """``text`` with each ``@NAME@`` replaced by ``values[NAME]``; raise
    :class:`ScriptError` naming ``source`` for a name not in ``values`` or an ``@`` left."""

    def value(match: re.Match[str]) -> str:
        if match[1] not in values:
            raise ScriptError(f"{source}: placeholder @{match[1]}@ names no default")
        return values[match[1]]

    filled = PLACEHOLDER.sub(value, text)
    if "@" in filled:
        line = filled[: filled.index("@")].count("\n") + 1
        raise ScriptError(f"{source}:{line}: unfilled placeholder (an @ is left)")
    return filled


def load_scripts() -> dict[str, Script]:
    """Read the scripts shipped in ``disquette/stores/redis/lua/``, placeholders filled."""
    folder = resources.files(__package__).joinpath("lua")
    values = default_values()
    keys = fill(folder.joinpath("keys.lua").read_text(), values, "keys.lua")
    common = keys + "\n" + fill(folder.joinpath("common.lua").read_text(), values, "common.lua")
    common += "\n" + fill(folder.joinpath("deps.lua").read_text(), values, "deps.lua")
    scripts = {}
    for name in SCRIPT_NAMES:
        own = fill(folder.joinpath(f"{name}.lua").read_text(), values, f"{name}.lua")
        text = (keys if name in LEAN else common) + "\n" + own
        sha = hashlib.sha1(text.encode()).hexdigest()
        scripts[name] = Script(name, text, sha)
    return scripts


#: The scripts by name, loaded when the store is first imported.
SCRIPTS: Final = load_scripts()
