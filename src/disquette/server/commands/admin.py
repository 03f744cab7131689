"""Connection and server commands: AUTH, PING, HELLO, TIME, COMMAND, CONFIG, DEBUG,
CLUSTER, CLIENT, SHUTDOWN, BGREWRITEAOF, SLOWLOG, and those we do not support."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from ...errors import DisquetteError
from .. import protocol
from ..protocol import EMPTY_ARRAY, OK, ZERO

if TYPE_CHECKING:
    from ..session import Session

log = logging.getLogger("disquette.server")


async def cmd_hello(session: Session, args: list[bytes]) -> bytes:
    """HELLO: the pool's nodes."""
    return session.server.node.hello()


async def cmd_ping(session: Session, args: list[bytes]) -> bytes:
    """PING [message]."""
    if len(args) > 2:
        return b"-ERR wrong number of arguments for 'ping' command\r\n"
    return protocol.bulk(args[1]) if len(args) == 2 else protocol.PONG


async def cmd_auth(session: Session, args: list[bytes]) -> bytes:
    """AUTH password."""
    password = session.server.requirepass
    if not password:
        return b"-ERR Client sent AUTH, but no password is set\r\n"
    if args[1] != password.encode():
        session.authenticated = False
        return b"-ERR invalid password\r\n"
    session.authenticated = True
    return OK


async def cmd_time(session: Session, args: list[bytes]) -> bytes:
    """TIME: seconds and microseconds."""
    now = time.time_ns() // 1000
    return protocol.array(
        [protocol.bulk(str(now // 1_000_000)), protocol.bulk(str(now % 1_000_000))]
    )


async def cmd_command(session: Session, args: list[bytes]) -> bytes:
    """COMMAND [COUNT]."""
    from . import TABLE  # the table lists this command: it is built after this module

    if len(args) > 1:
        if args[1].lower() == b"count":
            return protocol.integer(len(TABLE))
        return b"-ERR Unknown subcommand or wrong number of arguments.\r\n"
    return protocol.array(
        protocol.array(
            [protocol.bulk(c.name), protocol.integer(c.arity), EMPTY_ARRAY, ZERO, ZERO, ZERO]
        )
        for c in TABLE.values()
    )


async def cmd_config(session: Session, args: list[bytes]) -> bytes:
    """CONFIG GET key | CONFIG SET requirepass value."""
    server = session.server
    sub = args[1].lower()
    if sub == b"get" and len(args) == 3:
        values = {
            b"maxmemory": b"1073741824",
            b"requirepass": (server.requirepass or "").encode(),
            b"port": str(server.node.port).encode(),
            b"bind": server.node.host.encode(),
            b"unixsocket": (server.unixsocket[0] or "").encode(),
            b"unixsocketperm": b"%o" % (server.unixsocket[1] or 0),
        }
        pattern = args[2].lower()
        found = [(k, v) for k, v in values.items() if pattern in (b"*", k)]
        return protocol.array(x for k, v in found for x in (protocol.bulk(k), protocol.bulk(v)))
    if sub == b"set" and len(args) == 4:
        if args[2].lower() != b"requirepass":
            return protocol.error(
                f"ERR Unsupported CONFIG parameter: {args[2].decode(errors='replace')}"
            )
        server.requirepass = args[3].decode(errors="replace") or None
        return OK
    if sub == b"resetstat" and len(args) == 2:
        return OK
    return b"-ERR CONFIG subcommand must be one of GET, SET, RESETSTAT, REWRITE\r\n"


async def cmd_debug(session: Session, args: list[bytes]) -> bytes:
    """DEBUG FLUSHALL: delete every job of the store (the whole pool's), and drop the
    pool's dead nodes (``Node.prune``)."""
    if args[1].lower() == b"flushall":
        await session.server.store.flush()
        session.server.jobs_in.clear()
        session.server.jobs_out.clear()
        session.server.queue_times.clear()
        try:
            await session.server.node.prune()
        except (DisquetteError, OSError) as exc:  # the jobs are gone: FLUSHALL did its part
            log.warning("could not check the pool for dead nodes: %s", exc)
        return OK
    if args[1].lower() == b"sleep" and len(args) == 3:
        await asyncio.sleep(float(args[2]))
        return OK
    return b"-ERR Supported DEBUG subcommands: FLUSHALL, SLEEP\r\n"


async def cmd_cluster(session: Session, args: list[bytes]) -> bytes:
    """CLUSTER NODES | INFO | MEET (the pool forms through the store: nothing to meet)."""
    node = session.server.node
    sub = args[1].lower()
    if sub == b"nodes":
        return node.cluster_nodes()
    if sub == b"info":
        return node.cluster_info()
    if sub in (b"meet", b"forget", b"saveconfig"):
        return OK
    return b"-ERR Wrong CLUSTER subcommand or number of arguments\r\n"


async def cmd_client(session: Session, args: list[bytes]) -> bytes:
    """CLIENT: only what Disque had (redis-py's CLIENT SETINFO gets Disque's error)."""
    sub = args[1].lower()
    if sub == b"setname" and len(args) == 3:
        session.name = args[2]
        return OK
    if sub == b"getname":
        return protocol.bulk(session.name)
    return (
        b"-ERR Syntax error, try CLIENT (LIST | KILL ip:port | GETNAME | SETNAME "
        b"connection-name)\r\n"
    )


async def cmd_shutdown(session: Session, args: list[bytes]) -> bytes:
    """SHUTDOWN: leave the pool and stop (the store keeps every job)."""
    session.server.on_shutdown()
    return OK


async def cmd_unsupported(session: Session, args: list[bytes]) -> bytes:
    """Commands of Disque's table that have no meaning over a shared store."""
    return protocol.error(f"ERR {args[0].decode(errors='replace').upper()} is not supported")


async def cmd_bgrewriteaof(session: Session, args: list[bytes]) -> bytes:
    """BGREWRITEAOF: the store is the persistence; nothing to rewrite."""
    return b"+Background append only file rewriting started\r\n"


async def cmd_slowlog(session: Session, args: list[bytes]) -> bytes:
    """SLOWLOG GET|LEN|RESET: nothing is recorded."""
    sub = args[1].lower()
    if sub == b"len":
        return ZERO
    if sub == b"reset":
        return OK
    return EMPTY_ARRAY
