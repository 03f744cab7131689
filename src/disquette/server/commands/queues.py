"""Queue commands: QLEN, QPEEK, QSTAT, QSCAN and PAUSE."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ...errors import InvalidQueueName
from ...stores.types import PAUSE_MODES
from .. import protocol
from ..planner import MAX_PAGE
from ..protocol import EMPTY_ARRAY, NULL_ARRAY, SYNTAX_ERROR, ZERO, refusal
from .args import CommandError, parse_int, parse_queue, parse_scan_options

if TYPE_CHECKING:
    from ..session import Session


async def cmd_qlen(session: Session, args: list[bytes]) -> bytes:
    """QLEN queue."""
    queue = parse_queue(args[1])
    return protocol.integer(await session.server.store.qlen(queue)) if queue else ZERO


async def cmd_qpeek(session: Session, args: list[bytes]) -> bytes:
    """QPEEK queue count: oldest first, or newest first for a negative count."""
    count = parse_int(args[2])
    if count is None:
        raise CommandError(b"-ERR value is not an integer or out of range\r\n")
    queue = parse_queue(args[1])
    if queue is None or count == 0:
        return EMPTY_ARRAY
    store = session.server.store
    if count > 0:
        jobs = await store.peek(queue, min(count, MAX_PAGE))
    else:
        length = await store.qlen(queue)
        jobs = (await store.peek(queue, min(length, 100 * MAX_PAGE)))[count:][::-1]
    return protocol.array(
        protocol.array([protocol.bulk(j.queue), protocol.bulk(j.id), protocol.bulk(j.raw_body)])
        for j in jobs
    )


async def cmd_qstat(session: Session, args: list[bytes]) -> bytes:
    """QSTAT queue: ``*-1`` unless the store knows the queue."""
    server = session.server
    queue = parse_queue(args[1])
    known = {info.name: info for info in await server.store.queues()} if queue else {}
    info = known.get(queue or "")
    if queue is None or (
        info is None and not server.blocked_on[queue] and not server.recently_used(queue)
    ):
        return NULL_ARRAY
    length = info.queued if info is not None else 0
    pause = info.pause if info is not None else "none"
    now = time.time()
    # A queue this node never used (another node of the pool did): known since our start.
    created, used = server.queue_times.get(queue, (server.started, server.started))
    return protocol.array(
        [
            b"$4\r\nname\r\n",
            protocol.bulk(queue),
            b"$3\r\nlen\r\n",
            protocol.integer(length),
            b"$3\r\nage\r\n",
            protocol.integer(int(now - created)),
            b"$4\r\nidle\r\n",
            protocol.integer(int(now - used)),
            b"$7\r\nblocked\r\n",
            protocol.integer(server.blocked_on[queue]),
            b"$11\r\nimport-from\r\n",
            EMPTY_ARRAY,
            b"$11\r\nimport-rate\r\n",
            ZERO,
            b"$7\r\njobs-in\r\n",
            protocol.integer(server.jobs_in[queue]),
            b"$8\r\njobs-out\r\n",
            protocol.integer(server.jobs_out[queue]),
            b"$5\r\npause\r\n",
            protocol.bulk(pause),
        ]
    )


async def cmd_qscan(session: Session, args: list[bytes]) -> bytes:
    """QSCAN [cursor] [COUNT n] [BUSYLOOP] [MINLEN n] [MAXLEN n] [IMPORTRATE n]: one page."""
    _, options = parse_scan_options(args, (b"minlen", b"maxlen", b"importrate"))
    bounds = {}
    for name in (b"minlen", b"maxlen", b"importrate"):
        if name in options:
            value = parse_int(options[name][-1])
            if value is None:
                raise CommandError(b"-ERR value is not an integer or out of range\r\n")
            bounds[name] = value
    minimum, maximum = bounds.get(b"minlen", 0), bounds.get(b"maxlen", 0)
    names = [
        protocol.bulk(info.name)
        for info in await session.server.store.queues()
        if info.queued >= minimum and (not maximum or info.queued <= maximum)
    ]
    return protocol.array([b"$1\r\n0\r\n", protocol.array(names)])


async def cmd_pause(session: Session, args: list[bytes]) -> bytes:
    """PAUSE queue in|out|all|none|state|bcast ...: replies the resulting mode."""
    bits, change = 0, False
    for raw in args[2:]:
        option = raw.lower()
        if option == b"in":
            bits, change = bits | 1, True
        elif option == b"out":
            bits, change = bits | 2, True
        elif option == b"all":
            bits, change = 3, True
        elif option == b"none":
            bits, change = 0, True
        elif option not in (b"state", b"bcast"):
            raise CommandError(SYNTAX_ERROR)
    queue = parse_queue(args[1])
    if queue is None:
        raise CommandError(refusal(InvalidQueueName(args[1], "not a name this store keeps")))
    store = session.server.store
    if change:
        await store.set_pause(queue, PAUSE_MODES[bits])
        return protocol.status(PAUSE_MODES[bits])
    return protocol.status(await store.pause_mode(queue))
