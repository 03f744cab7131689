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
pipeline object (about 24 µs of CPU less per blocked get, measured at load 12), their
replies read as the server sent them (the caller reads only the script's, which has no
reply callback; skipping redis-py's ``parse_response`` on the wake-up path saves its
option checks and callback lookup per reply); a failed call there is not sent again at
once: the caller falls back to its retrying path.

A held connection's socket is made blocking, its timeout kept by the kernel instead
(``SO_RCVTIMEO``/``SO_SNDTIMEO``, on Linux, not for TLS): CPython polls a socket that has a
timeout before every send and every receive, two system calls of a one-by-one add's five.
A kernel timeout bounds each send and receive as the socket timeout did; one that runs out
raises redis-py's ``TimeoutError`` as before (the connection disconnected). The connection
gets its timeout back when it returns to the pool usable.

A held connection's commands are packed by ``hiredis.pack_command`` called directly when
the connection encodes text as UTF-8 (redis-py's default): redis-py 8's packer runs a
Python encoder per argument first, 77,000 instructions of a one-by-one add's 210,000
(callgrind, redis-py 8.2; 1,400 with redis-py 5.3). hiredis spells ints and floats as
redis-py's encoder does (``repr``).

A fork is noticed by a counter that ``os.register_at_fork`` bumps in the child, not by a
``getpid`` system call per command.

The asyncio flavour calls redis-py as is: a connection held per event loop would put the
loop's concurrent calls in one line.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import struct
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final

import redis
import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

#: Commands whose reply is read as is: redis-py has no reply callback for a script call,
#: and its ``parse_response`` (option checks, a case-insensitive callback lookup) cost
#: about 4,000 instructions of a one-by-one add's 138,000 (callgrind, redis-py 5.3).
SCRIPT_CALLS: Final = frozenset({"EVALSHA", "EVAL"})

#: Whether a held socket's timeout is given to the kernel: on Linux, whose ``struct
#: timeval`` is two longs (elsewhere, CPython's polling timeout stays).
KERNEL_TIMEOUTS: Final = sys.platform.startswith("linux") and hasattr(socket, "SO_RCVTIMEO")

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # hiredis absent, or older than its pack_command: redis-py packs
    _hiredis_pack = None


def _packs_utf8(connection: Any) -> bool:
    """Whether hiredis packs a connection's commands as its own encoder would."""
    encoder = getattr(connection, "encoder", None)
    return (
        _hiredis_pack is not None
        and encoder is not None
        and str(encoder.encoding).lower().replace("_", "-") in ("utf-8", "utf8")
        and encoder.encoding_errors == "strict"
    )


def _pack(slot: _Slot, commands: Sequence[tuple[Any, ...]]) -> list[bytes]:
    """Commands in the Redis protocol (chunks to send), by hiredis alone when it may (see
    the module doc): a first argument with a space (``"CLIENT KILL"``) is left to
    redis-py, which splits it."""
    pack = _hiredis_pack if slot.hiredis else None
    if pack is not None and all(" " not in command[0] for command in commands):
        try:
            return [b"".join([pack(command) for command in commands])]
        except TypeError as error:  # as redis-py reports an argument of another type
            raise DataError(str(error)) from error
    packed: list[bytes] = slot.connection.pack_commands(commands)
    return packed


#: Bumped in the child of every fork: a slot taken in another generation is not ours.
_generation = 0


def _forked() -> None:
    global _generation
    _generation += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    micros = int((seconds - whole) * 1_000_000)
    if seconds > 0 and not whole and not micros:
        micros = 1  # a zero timeval means no timeout at all
    return struct.pack("ll", whole, micros)


def _kernel_timeout(connection: Any) -> None:
    """Make a connection's socket blocking, its timeout kept by the kernel (see the
    module doc); a socket without a timeout is left as it is, and so is a TLS one (its
    reads on a blocking socket would not report a kernel timeout as such)."""
    sock = getattr(connection, "_sock", None)
    timeout = sock.gettimeout() if sock is not None else None
    if not KERNEL_TIMEOUTS or sock is None or timeout is None or timeout <= 0:
        return
    if isinstance(sock, ssl.SSLSocket):
        return
    value = _timeval(timeout)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
    sock.settimeout(None)


def _socket_timeout(connection: Any) -> None:
    """Undo :func:`_kernel_timeout`: CPython's timeout again, as redis-py set it."""
    sock = getattr(connection, "_sock", None)
    if not KERNEL_TIMEOUTS or sock is None or sock.gettimeout() is not None:
        return
    timeout = connection.socket_timeout
    if timeout is None:
        return
    zero = _timeval(0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, zero)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, zero)
    sock.settimeout(timeout)


def _timed_out(error: RedisConnectionError) -> bool:
    """Whether redis-py's ``ConnectionError`` is a kernel timeout that ran out (``EAGAIN``
    from a blocking socket) rather than a lost connection."""
    return isinstance(error.__context__, BlockingIOError)


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

    __slots__ = ("connection", "generation", "hiredis", "pool")

    def __init__(self, pool: Any, connection: Any) -> None:
        self.pool = pool
        self.connection = connection
        self.generation = _generation
        #: Whether its commands are packed by hiredis alone (see :func:`_pack`).
        self.hiredis = _packs_utf8(connection)

    def fail(self, error: BaseException) -> None:
        """Give the connection back disconnected after ``error`` broke a command off (its
        replies may be out of step); a kernel timeout that ran out is raised as redis-py's
        ``TimeoutError``, as CPython's own timeout was (see :func:`_kernel_timeout`)."""
        self.give_back(False)
        if isinstance(error, RedisConnectionError) and _timed_out(error):
            raise RedisTimeoutError("Timeout reading from or writing to socket") from error

    def give_back(self, usable: bool) -> None:
        """Return the connection to the pool (disconnected unless ``usable``)."""
        connection, self.connection = self.connection, None
        if connection is None or self.generation != _generation:
            return  # a child of a fork: the pool starts afresh there
        if usable:
            _socket_timeout(connection)
        else:
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
        their replies as the server sent them (no redis-py reply callback: on a Cluster's
        client, as its pipeline parses them), an error reply as its exception in the list.
        Any other failure raises (and gives the connection back, disconnected)."""
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
            connection.send_packed_command(_pack(slot, commands))
            replies = []
            for _ in commands:
                try:
                    replies.append(connection.read_response())
                except ResponseError as error:
                    replies.append(error)
            return replies
        except BaseException as error:
            slot.fail(error)
            raise

    def close(self) -> None:
        """Close the client's connections (held ones included)."""
        self._client.close()

    def _held(self) -> _Slot | None:
        """This thread's held connection, if it has one it may use (not one from before a
        fork, not one given back)."""
        slot: _Slot | None = getattr(self._local, "slot", None)
        if slot is None or slot.connection is None or slot.generation != _generation:
            return None
        return slot

    def _checkout(self, plain: redis.Redis) -> _Slot:
        """A connection of the pool, held by this thread from now on."""
        pool = plain.connection_pool
        slot = _Slot(pool, pool.get_connection())
        self._local.slot = slot
        try:
            _kernel_timeout(slot.connection)
        except OSError as error:
            slot.give_back(False)
            raise RedisConnectionError(f"Error setting the socket's timeout: {error}") from error
        return slot

    @staticmethod
    def _send(plain: redis.Redis, slot: _Slot, args: tuple[Any, ...]) -> Any:
        connection = slot.connection
        try:
            connection.send_packed_command(_pack(slot, (args,)))
            if args[0] in SCRIPT_CALLS:
                return connection.read_response()
            return plain.parse_response(connection, args[0])  # type: ignore[no-untyped-call,unused-ignore]
        except ResponseError:
            raise  # the server answered: the connection is in step, keep it
        except BaseException as error:
            slot.fail(error)
            raise
