"""The parameters of store URLs (``?poll_interval=0.5&migrate=false``), read one way by every
store: a number within its range, a true/false flag, no parameter the store does not know.
Each bad value raises :class:`~disquette.errors.InvalidURL` naming the parameter."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from ..errors import InvalidURL

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def number(
    url: str, params: Mapping[str, str], name: str, default: float, low: float, high: float
) -> float:
    """The number ``params[name]`` (``default`` when absent), which must lie in
    ``low..high`` (NaN never does)."""
    value = params.get(name)
    if value is None:
        return float(default)
    try:
        parsed = float(value)
    except ValueError:
        raise InvalidURL(url, f"{name} is a number") from None
    if not low <= parsed <= high:
        raise InvalidURL(url, f"{name} is between {low:g} and {high:g}")
    return parsed


def flag(url: str, params: Mapping[str, str], name: str, default: bool) -> bool:
    """The flag ``params[name]``: 1/true/yes/on or 0/false/no/off, any case (``default``
    when absent)."""
    value = params.get(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise InvalidURL(url, f"{name} is true or false")


def check_known(url: str, params: Collection[str], known: Collection[str]) -> None:
    """Refuse parameters a store does not take (a typo would otherwise be ignored)."""
    unknown = set(params) - set(known)
    if unknown:
        raise InvalidURL(url, f"unknown parameter(s): {', '.join(sorted(unknown))}")
