"""How the Redis store sends its single commands (script calls included) and a blocked
get's commands, in each flavour.

Hand-written, not generated: ``runner_async.py`` uses :class:`AsyncHeldCommands`, its
generated twin ``runner.py`` :class:`HeldCommands`.

The sync flavour holds one connection of the client's pool per thread, between calls:
redis-py's own path checks a connection out of the pool and back for every command (a
lock twice, a poll of the socket, the fork check), about 11 µs of CPU a call on the
development machine, a third of a one-by-one add's client time. The rules that make
holding safe:

- each thread its own connection, so none is shared;
- a connection from before a fork is never used by the child (it takes a new one);
- a call that fails in any way gives the connection back to the pool (disconnected
  unless the server answered with an error reply, which leaves it usable) and holds none:
  the next call checks a fresh one out, as redis-py's path would. The pool's check that
  it skips (a poll that notices a connection the server closed, after a restart or an
  idle timeout) shows up as a failed call instead, which is retried at once with a new
  connection (:meth:`HeldCommands.execute`); a failed call is also what the store's
  retrying path handles;
- a thread that ends gives its connection back to the pool (its thread-local slot is
  dropped, and the slot's finalizer releases the connection);
- a Cluster client (routing each command to its node) is not held: it is called as is.

A blocked get's commands (:meth:`HeldCommands.execute_many`: ``BZPOPMIN`` and the claim
written at once, on the store's blocking client) go the same way, without redis-py's
pipeline object (about 24 µs of CPU less per blocked get, measured at load 12); a failed
call there is not sent again at once: the caller falls back to its retrying path.

The asyncio flavour calls redis-py as is: a connection held per event loop would put the
loop's concurrent calls in one line.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from typing import Any, Final

import redis
import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

#: Commands whose reply is read as is: redis-py has no reply callback for a script call,
#: and its ``parse_response`` (option checks, a case-insensitive callback lookup) cost
#: about 4,000 instructions of a one-by-one add's 138,000 (callgrind, redis-py 5.3).
SCRIPT_CALLS: Final = frozenset({"EVALSHA", "EVAL"})


class AsyncHeldCommands:
    """The asyncio flavour: redis-py's ``execute_command``, as is (see the module doc)."""

    def __init__(self, client: redis.asyncio.Redis | redis.asyncio.RedisCluster) -> None:
        self._client = client

    async def execute(self, *args: Any) -> Any:
        """One command, its reply parsed as redis-py parses it."""
        return await self._client.execute_command(*args)  # type: ignore[no-untyped-call,unused-ignore]

    async def execute_many(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Commands written at once (not a transaction); their replies, an error reply as
        its exception in the list."""
        pipe = self._client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)  # type: ignore[no-untyped-call,unused-ignore]
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self._client.aclose()


class _Slot:
    """A thread's held connection; given back to the pool when the thread's slot goes."""

    __slots__ = ("connection", "pid", "pool")

    def __init__(self, pool: Any, connection: Any) -> None:
        self.pool = pool
        self.connection = connection
        self.pid = os.getpid()

    def give_back(self, usable: bool) -> None:
        """Return the connection to the pool (disconnected unless ``usable``)."""
        connection, self.connection = self.connection, None
        if connection is None or self.pid != os.getpid():
            return  # a child of a fork: the pool starts afresh there
        if not usable:
            connection.disconnect()
        self.pool.release(connection)

    def __del__(self) -> None:
        # The thread ended (its thread-local slot dropped) or the store closed.
        with contextlib.suppress(Exception):  # a finalizer must not raise; nothing to do
            self.give_back(True)


class HeldCommands:
    """The sync flavour: one pool connection held per thread (see the module doc)."""

    def __init__(self, client: redis.Redis | redis.RedisCluster) -> None:
        self._client = client
        #: The client whose connections are held (None: a Cluster's, called as is).
        self._plain = client if isinstance(client, redis.Redis) else None
        self._local = threading.local()

    def execute(self, *args: Any) -> Any:
        """One command, its reply parsed as redis-py parses it, on this thread's held
        connection; a held connection the server had closed is replaced once at once."""
        plain = self._plain
        if plain is None:
            return self._client.execute_command(*args)  # type: ignore[no-untyped-call,unused-ignore]
        slot = self._held()
        if slot is not None:
            try:
                return self._send(plain, slot, args)
            except RedisConnectionError:
                pass  # stale (the server closed it): once more on a new connection
        return self._send(plain, self._checkout(plain), args)

    def execute_many(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Commands written at once (not a transaction) on this thread's held connection;
        their replies, an error reply as its exception in the list. Any other failure
        raises (and gives the connection back, disconnected)."""
        plain = self._plain
        if plain is None:
            pipe = self._client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)  # type: ignore[no-untyped-call,unused-ignore]
            replies: list[Any] = pipe.execute(raise_on_error=False)
            return replies
        slot = self._held() or self._checkout(plain)
        connection = slot.connection
        try:
            connection.send_packed_command(connection.pack_commands(commands))
            replies = []
            for command in commands:
                try:
                    replies.append(plain.parse_response(connection, command[0]))  # type: ignore[no-untyped-call,unused-ignore]
                except ResponseError as error:
                    replies.append(error)
            return replies
        except BaseException:
            slot.give_back(False)
            raise

    def close(self) -> None:
        """Close the client's connections (held ones included)."""
        self._client.close()

    def _held(self) -> _Slot | None:
        """This thread's held connection, if it has one it may use (not one from before a
        fork, not one given back)."""
        slot: _Slot | None = getattr(self._local, "slot", None)
        if slot is None or slot.connection is None or slot.pid != os.getpid():
            return None
        return slot

    def _checkout(self, plain: redis.Redis) -> _Slot:
        """A connection of the pool, held by this thread from now on."""
        pool = plain.connection_pool
        slot = _Slot(pool, pool.get_connection())
        self._local.slot = slot
        return slot

    @staticmethod
    def _send(plain: redis.Redis, slot: _Slot, args: tuple[Any, ...]) -> Any:
        connection = slot.connection
        try:
            connection.send_command(*args)
            if args[0] in SCRIPT_CALLS:
                return connection.read_response()
            return plain.parse_response(connection, args[0])  # type: ignore[no-untyped-call,unused-ignore]
        except ResponseError:
            raise  # the server answered: the connection is in step, keep it
        except BaseException:
            slot.give_back(False)
            raise
