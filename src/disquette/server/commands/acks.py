"""Commands that settle or requeue jobs: ACKJOB, FASTACK/DELJOB, NACK, ENQUEUE, DEQUEUE,
and our own CANCEL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...disque import parse_ids
from ...errors import DisquetteError, InvalidJobId
from ...job import JobState
from .. import protocol
from ..batching import Pending
from ..protocol import ZERO, refusal

if TYPE_CHECKING:
    from ..session import Session


def start_ackjob(session: Session, args: list[bytes]) -> bytes | Pending:
    """ACKJOB id ...: the jobs become done (SHOW then says ``$-1``), gathered with the other
    connections' ACKJOBs: its reply, or the :class:`Pending` that gets it."""
    server = session.server
    try:
        ids = parse_ids(args[1:])
    except InvalidJobId as exc:
        return refusal(exc)
    if not ids:
        return ZERO
    pending = Pending()
    server.acks.push((ids, pending))
    return pending


async def cmd_fastack(session: Session, args: list[bytes]) -> bytes:
    """FASTACK id ...: delete the jobs."""
    ids = parse_ids(args[1:])
    return protocol.integer(await session.server.store.delete(ids)) if ids else ZERO


cmd_deljob = cmd_fastack


async def cmd_nack(session: Session, args: list[bytes]) -> bytes:
    """NACK id ...: put active jobs back, ``nacks`` + 1."""
    ids = parse_ids(args[1:])
    if not ids:
        return ZERO
    server = session.server
    return protocol.integer(await server.requeue(ids, server.store.nack))


async def cmd_enqueue(session: Session, args: list[bytes]) -> bytes:
    """ENQUEUE id ...: active (or delayed) jobs become ready now."""
    ids = parse_ids(args[1:])
    if not ids:
        return ZERO
    server = session.server
    return protocol.integer(await server.requeue(ids, server.store.enqueue))


async def cmd_dequeue(session: Session, args: list[bytes]) -> bytes:
    """DEQUEUE id ...: ready jobs leave their queue until their retry time."""
    ids = parse_ids(args[1:])
    return protocol.integer(await session.server.store.dequeue(ids)) if ids else ZERO


async def cmd_cancel(session: Session, args: list[bytes]) -> bytes:
    """CANCEL id ... (ours, not Disque's: Disque clients never send it): cancel each job in
    turn. The reply has one status per id: ``cancelled`` (it was scheduled or queued) or
    ``requested`` (it is running: its worker is told to stop and ends it cancelled). The
    first id that cannot be cancelled answers its error instead (``-NOJOB`` unknown,
    ``-ERR cannot cancel ...`` finished); the ids before it were cancelled."""
    try:
        ids = parse_ids(args[1:])
    except InvalidJobId as exc:
        return refusal(exc)
    store = session.server.store
    statuses = []
    for job_id in ids:
        try:
            state = await store.cancel(job_id)
        except DisquetteError as exc:
            return refusal(exc)
        statuses.append(protocol.bulk("cancelled" if state is JobState.CANCELLED else "requested"))
    return protocol.array(statuses)
