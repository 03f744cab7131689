"""Job dependencies as flows: the :class:`Step` a chain or a group is made of, and
:class:`Group`, what :meth:`~disquette.AsyncClient.add_group` returns. Flavor-free: the
client methods that add them live in ``client_flows_async.py``.

A dependency is a store feature (``add(..., depends_on=...)``: the child waits, state
``waiting``, and a parent's ack releases it atomically); these are shapes built on it,
as Celery's chain, group and chord.
"""

from __future__ import annotations

import dataclasses
from typing import Final, Literal

from .errors import InvalidOption
from .job import Options, check_headers, check_queue_name

#: When a group's callback runs: ``success`` once every member is done (a member that
#: fails for good fails the callback); ``completion`` once every member has ended, however.
GroupTrigger = Literal["success", "completion"]
GROUP_TRIGGERS: Final[tuple[GroupTrigger, ...]] = ("success", "completion")


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    """One job of a chain or a group: its body, its queue, the options it is added with
    (on top of the client's) and its headers. Unique keys are refused: a step that adds
    nothing would leave its dependants waiting for a job that is not theirs."""

    body: object
    queue: str
    options: Options = dataclasses.field(default_factory=Options)
    headers: dict[str, str] | None = None

    def __post_init__(self) -> None:
        check_queue_name(self.queue)
        if not isinstance(self.options, Options):
            raise InvalidOption("options", self.options, "an Options")
        if self.options.unique_key is not None:
            raise InvalidOption("unique_key", self.options.unique_key, "no unique key in a flow")
        if self.headers is not None:
            object.__setattr__(self, "headers", check_headers(self.headers))


def step(
    body: object,
    queue: str,
    *,
    headers: dict[str, str] | None = None,
    type: str | None = None,
    priority: int | None = None,
    delay: float | None = None,
    retry_after: float | None = None,
    ttl: float | None = None,
    max_attempts: int | None = None,
    result_ttl: float | None = None,
) -> Step:
    """A :class:`Step` with the usual per-job options (see :class:`~disquette.job.Options`)."""
    options = Options(
        type=type,
        priority=priority,
        delay=delay,
        retry_after=retry_after,
        ttl=ttl,
        max_attempts=max_attempts,
        result_ttl=result_ttl,
    )
    return Step(body, queue, options, headers)


@dataclasses.dataclass(frozen=True, slots=True)
class Group:
    """What :meth:`~disquette.AsyncClient.add_group` added: the members' ids, in the
    order given, and the callback's id (None without one)."""

    ids: list[str]
    callback: str | None = None
