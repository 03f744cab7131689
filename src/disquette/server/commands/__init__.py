"""The Disque command table, each command mapped onto the store (plus our own CANCEL,
which no Disque client sends).

Where our semantics differ from Disque 1.0-rc1 (documented in ``server/__init__.py``), the
reply keeps Disque's shape so that unmodified clients still work. The commands live by
domain, as Disque's job.c, queue.c and ack.c: :mod:`.jobs`, :mod:`.acks`, :mod:`.queues`,
:mod:`.admin` and :mod:`.info`; their arguments are read by :mod:`.args`.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ...job import Job
from .. import protocol
from ..batching import Gather, Pending
from .acks import (
    cmd_cancel,
    cmd_deljob,
    cmd_dequeue,
    cmd_enqueue,
    cmd_fastack,
    cmd_nack,
    start_ackjob,
)
from .admin import (
    cmd_auth,
    cmd_bgrewriteaof,
    cmd_client,
    cmd_cluster,
    cmd_command,
    cmd_config,
    cmd_debug,
    cmd_hello,
    cmd_ping,
    cmd_shutdown,
    cmd_slowlog,
    cmd_time,
    cmd_unsupported,
)
from .args import CommandError
from .info import cmd_info
from .jobs import cmd_jscan, cmd_show, cmd_working, start_addjob, start_getjob
from .queues import cmd_pause, cmd_qlen, cmd_qpeek, cmd_qscan, cmd_qstat

if TYPE_CHECKING:
    from ..session import Session


#: What starting a command gives the session, which says how it runs: ``bytes``, its
#: reply, known at once; a :class:`Job`, a plain ADDJOB's, added with its neighbours in
#: the server's next batch; a :class:`Pending`, a gathered request's reply to come; a
#: coroutine, a command that may wait, run (eagerly) as a task that nothing on the
#: connection overtakes.
Started = bytes | Job | Pending | Coroutine[Any, Any, bytes]


@dataclass(frozen=True, slots=True)
class Command:
    """One entry of the table: Disque's name and arity (negative: at least), how to start
    it, and which of its requests are gathered with other connections'."""

    name: str
    arity: int
    start: Callable[[Session, list[bytes]], Started]
    #: The kind its requests are gathered with (``None``: not gathered).
    gathered: Gather | None = None
    #: The argument counts (the name included) its arity allows, for one comparison.
    min_args: int = dataclasses.field(init=False)
    max_args: int = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        exact = self.arity > 0
        object.__setattr__(self, "min_args", self.arity if exact else -self.arity)
        object.__setattr__(self, "max_args", self.arity if exact else sys.maxsize)


def _table() -> dict[bytes, Command]:
    entries: list[tuple[str, int, Callable[[Session, list[bytes]], Started]]] = [
        ("auth", 2, cmd_auth),
        ("ping", -1, cmd_ping),
        ("info", -1, cmd_info),
        ("shutdown", -1, cmd_shutdown),
        ("monitor", 1, cmd_unsupported),
        ("debug", -2, cmd_debug),
        ("config", -2, cmd_config),
        ("cluster", -2, cmd_cluster),
        ("client", -2, cmd_client),
        ("slowlog", -2, cmd_slowlog),
        ("time", 1, cmd_time),
        ("command", 0, cmd_command),
        ("latency", -2, cmd_slowlog),
        ("hello", 1, cmd_hello),
        ("addjob", -4, start_addjob),
        ("getjob", -2, start_getjob),
        ("ackjob", -1, start_ackjob),
        ("fastack", -1, cmd_fastack),
        ("deljob", -1, cmd_deljob),
        ("show", 2, cmd_show),
        ("loadjob", 2, cmd_unsupported),
        ("bgrewriteaof", 1, cmd_bgrewriteaof),
        ("qlen", 2, cmd_qlen),
        ("qpeek", 3, cmd_qpeek),
        ("qstat", 2, cmd_qstat),
        ("qscan", -1, cmd_qscan),
        ("jscan", -1, cmd_jscan),
        ("enqueue", -1, cmd_enqueue),
        ("nack", -1, cmd_nack),
        ("dequeue", -1, cmd_dequeue),
        ("working", 2, cmd_working),
        ("pause", -3, cmd_pause),
        # Ours, not Disque's (Disque clients never send it): see acks.cmd_cancel.
        ("cancel", -2, cmd_cancel),
    ]
    gathered = {"getjob": Gather.CLAIM, "ackjob": Gather.ACK}
    return {
        name.encode(): Command(name, arity, start, gathered.get(name))
        for name, arity, start in entries
    }


#: The command table: name -> entry. Disque 1.0-rc1's 32 commands, plus our own
#: ``CANCEL id ...`` (cancel jobs: each answers ``cancelled`` when it was scheduled or
#: queued, ``requested`` when its worker is told to stop; ``-NOJOB`` for an unknown id,
#: ``-ERR`` for a finished job), so COMMAND COUNT is 33.
TABLE: Final = _table()
#: The table by the names' lower and upper case forms (a lookup without ``lower()``).
LOOKUP: Final = {**TABLE, **{name.upper(): command for name, command in TABLE.items()}}


def check_arity(command: Command, argc: int) -> bytes | None:
    """Disque's arity rule; the error reply, or ``None`` when the count is right."""
    arity = command.arity
    if (arity > 0 and argc != arity) or (arity < 0 and argc < -arity):
        return protocol.error(f"ERR wrong number of arguments for '{command.name}' command")
    return None


__all__ = ["LOOKUP", "TABLE", "Command", "CommandError", "Started", "check_arity"]
