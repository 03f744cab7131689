"""One client connection: its requests parsed, run in order, and their replies written."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Final, cast

from ..job import Job
from . import protocol
from .batching import Gather, Pending
from .commands import LOOKUP, TABLE, Command, CommandError, Started, check_arity
from .eager import start
from .protocol import ProtocolError, RequestParser, refusal
from .server import Server

log = logging.getLogger("disquette.server")

DEFAULT_MAX_CLIENTS: Final = 10_000
#: Past this many bytes of replies waiting for a slow reader, the connection is closed.
DEFAULT_MAX_OUTPUT_BYTES: Final = 64 * 1024 * 1024
#: Replies buffered before the server stops reading (and running) a connection's requests.
_WRITE_HIGH_WATER: Final = 1024 * 1024
#: Parsed requests waiting to run before the server stops reading from the socket.
_MAX_PENDING: Final = 1024
#: After a protocol error the server half-closes and reads what the client still sends
#: for this long at most: closing with unread bytes would reset the connection, and the
#: client would lose the error reply.
_LINGER_SECONDS: Final = 2.0
#: Plain ADDJOBs of one read added in one store call at most.
_MAX_GROUP: Final = 1024
_QUIT: Final = b"quit"
NOAUTH: Final = b"-NOAUTH Authentication required.\r\n"


class Session(asyncio.Protocol):
    """One client connection: parses requests, runs them in order, writes the replies.

    Requests run inside ``data_received`` as far as they can (each command is started
    eagerly, see :mod:`.eager`): a command that does not wait costs no task and no loop
    iteration, and the replies of one loop iteration leave in one write. A command runs
    once the ones before it finished, except plain ADDJOBs, which queue behind each other
    (their batches commit in order); a command that waits becomes a task, nothing after
    it runs until it is done, and the replies before it are sent at once.
    """

    def __init__(self, server: Server, limits: Limits) -> None:
        self.server = server
        self.limits = limits
        self.authenticated = server.requirepass is None
        self.name: bytes | None = None
        self._parser = RequestParser(limits.max_argument_bytes)
        self._pending: collections.deque[list[bytes] | ProtocolError] = collections.deque()
        #: Replies not written yet, in request order, with those still running.
        self._replies: list[bytes | Pending | asyncio.Task[bytes]] = []
        #: Plain ADDJOBs not yet handed to the server's batch, and where their replies go.
        self._group: list[Job] = []
        self._group_reply: Pending | None = None
        self._transport: asyncio.Transport | None = None
        #: The command running as a task: nothing else runs until it is done.
        self._task: asyncio.Task[bytes] | None = None
        #: Blocked GETJOBs (see :meth:`block`), oldest first: each waits for the one before.
        self._blocked: list[asyncio.Task[None]] = []
        #: The gathered kind of the last request run (see ``Command.gathered``).
        self._last_kind: Gather | None = None
        #: A command parsed and ready, waiting for the replies before it to settle.
        self._deferred: Coroutine[Any, Any, bytes] | None = None
        #: The batch the session waits for before it goes on.
        self._waiting: Pending | None = None
        #: Replies ready, written by :meth:`_write_out` (see ``Server.write_soon``).
        self._out: list[bytes] = []
        self._writable = True
        self._reading = True
        self._pumping = False
        self._closing = False
        self._counted = False
        self._linger: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Count the client, or refuse it past ``max_clients``."""
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        transport = self._transport
        server = self.server
        server.total_connections += 1
        if server.connected >= self.limits.max_clients:
            server.rejected_connections += 1
            transport.write(b"-ERR max number of clients reached\r\n")
            transport.close()
            self._closing = True
            return
        server.connected += 1
        self._counted = True
        transport.set_write_buffer_limits(high=_WRITE_HIGH_WATER)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the client; a GETJOB it was blocked in is cancelled."""
        if self._counted:
            self.server.connected -= 1
            self._counted = False
        self._closing = True
        self._transport = None
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if self._task is not None:
            self._task.cancel()
        for blocked in self._blocked:
            blocked.cancel()
        if self._deferred is not None:
            self._deferred.close()
            self._deferred = None
        self._pending.clear()
        for reply in self._replies:
            if type(reply) is Pending:
                reply.abandoned = True

    def data_received(self, data: bytes) -> None:
        """Parse what came and run what can run."""
        self.server.net_input_bytes += len(data)
        if self._closing:
            return
        pending = self._pending
        pending.extend(self._parser.feed(data))
        if self._parser.error is not None:
            pending.append(self._parser.error)
            self._closing = True
        if len(pending) > _MAX_PENDING and self._reading and self._transport is not None:
            self._transport.pause_reading()
            self._reading = False
        if pending:
            self._pump()

    def pause_writing(self) -> None:
        """The client reads slower than we answer: stop running its requests."""
        self._writable = False

    def resume_writing(self) -> None:
        """It caught up."""
        self._writable = True
        self._pump()

    # -- running requests --------------------------------------------------------------------

    def _pump(self) -> None:
        """Run the requests that may run now, then queue the replies that are ready."""
        if self._pumping or self._transport is None:
            return
        self._pumping = True
        try:
            self._run()
            replies = self._replies
            group = self._group
            if group:  # _end_group(), inline: a call less per read of plain ADDJOBs
                pending = Pending()
                self.server.adds.push((group, pending))
                self._group = []
                replies.append(pending)
            if replies and self._transport is not None:
                first = replies[0]
                if type(first) is Pending and first.reply is None:
                    # Nothing to write yet (a batch still runs): _write_ready's first
                    # step, without its call (the common case while requests are batched).
                    if self._waiting is None:
                        self._waiting = first
                        first.then = self._batch_done
                else:
                    self._write_ready()
        except Exception:  # a bug must cost one connection, never the server
            log.exception("closing a connection after an unexpected error")
            self._write_and_close(b"-ERR internal error\r\n")
        finally:
            self._pumping = False

    # The per-request dispatch loop, the server's hottest path: kept as one loop because a
    # method call per request costs measurable throughput (bench/bench_server.py).
    def _run(self) -> None:  # noqa: C901, PLR0912
        pending, replies = self._pending, self._replies
        while self._task is None and self._writable and self._transport is not None:
            if self._deferred is not None:
                self._end_group()
                if not self._settled():
                    return
                coroutine, self._deferred = self._deferred, None
                self._start(coroutine)
                continue
            if not pending:
                return
            request = pending[0]
            if type(request) is list:
                # Clients send names in one case: most hit LOOKUP without a lower().
                command = LOOKUP.get(request[0]) or TABLE.get(request[0].lower())
                args = request
                if command is not None:
                    kind, closing = command.gathered, False
                else:
                    kind, closing = None, request[0].lower() == _QUIT
            else:
                command, kind, args, closing = None, None, [], True
            if kind is not self._last_kind:
                self._end_group()
                if not self._settled():
                    return  # another kind is in flight; _batch_done pumps again
                self._last_kind = kind
            if closing:
                self._end_group()
                if not self._settled():
                    return
                pending.popleft()
                self._write_ready()
                if isinstance(request, ProtocolError):
                    self._write_and_close(request.reply, linger=True)
                else:
                    self._write_and_close(protocol.OK)
                return
            pending.popleft()
            if not self._reading and len(pending) < _MAX_PENDING // 2:
                self._transport.resume_reading()
                self._reading = True
            self.server.commands_processed += 1
            if (
                command is not None
                and command.min_args <= len(args) <= command.max_args
                and self.authenticated
            ):
                reply = command.start(self, args)  # _dispatch's usual outcome, inline
            else:
                reply = self._dispatch(command, args)
            if type(reply) is Job:
                self._group.append(reply)
                if len(self._group) >= _MAX_GROUP:
                    self._end_group()
                if not pending:  # a plain ADDJOB changes nothing the loop's checks read
                    return
            elif type(reply) is bytes or type(reply) is Pending:
                if self._group:
                    self._end_group()
                replies.append(reply)
            else:
                self._end_group()
                if self._settled():
                    self._start(cast(Coroutine[Any, Any, bytes], reply))
                else:
                    self._deferred = cast(Coroutine[Any, Any, bytes], reply)

    def block(self, wait: Callable[[], Coroutine[Any, Any, bytes]], pending: Pending) -> None:
        """Run ``wait`` (a blocking GETJOB that found no job in its gathered claim) once the
        blocked GETJOBs before it on this connection are done; its reply settles ``pending``.

        As in Disque, a connection's blocking GETJOBs take turns: a pipelined one waits
        for the one before it to get its job (or time out), then tries again, and blocks
        only if it finds none, with its TIMEOUT counted from then.
        """
        before = self._blocked[-1] if self._blocked else None
        task = asyncio.get_running_loop().create_task(_blocked_reply(before, wait, pending))
        self._blocked.append(task)
        task.add_done_callback(self._block_done)

    def _block_done(self, task: asyncio.Task[None]) -> None:
        self._blocked.remove(task)
        if task.cancelled() and not self._closing:  # the server is stopping
            self._write_and_close(b"")

    def _end_group(self) -> None:
        """Hand the plain ADDJOBs gathered so far to the server's next batch (``_pump``
        does this inline after a run: keep them alike)."""
        if self._group:
            reply = Pending()
            self.server.adds.push((self._group, reply))
            self._group = []
            self._replies.append(reply)

    def _start(self, coroutine: Coroutine[Any, Any, bytes]) -> None:
        reply = start(_reply(coroutine))
        self._replies.append(reply)
        if not isinstance(reply, bytes):
            self._task = reply
            reply.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[bytes]) -> None:
        if self._task is task:
            self._task = None
        self._pump()

    def _settled(self) -> bool:
        """Whether every reply before is known; if not, go on once the first one is."""
        for reply in self._replies:
            if type(reply) is Pending and reply.reply is None:
                if self._waiting is None:
                    self._waiting = reply
                    reply.then = self._batch_done
                return False
        return True

    def _batch_done(self) -> None:
        # Called as the batch settles this reply, before it settles the ones after it: the
        # session goes on once the batch is over, to run and write all it settled at once.
        # Resumed with the others after the batch (Server.resumes), or in the next loop
        # iteration outside a batch.
        self._waiting = None
        resumes = self.server.resumes
        resumes.append(self)
        if len(resumes) == 1:
            asyncio.get_running_loop().call_soon(self.server.after_batch)

    def resume(self) -> None:
        """Go on once a batch settled a reply (``Server.resumes``): run the requests
        that may run now and write the replies that are ready."""
        # Run once a batch is over (Server.after_batch), past this iteration's reads: a
        # reply ready now leaves at once, not through Server.write_soon.
        if self._pending or self._deferred is not None:
            self._pump()
        elif (transport := self._transport) is not None:
            replies = self._replies
            if len(replies) == 1 and not self._out:
                # One settled reply and nothing queued (a client waiting for each reply):
                # _write_ready's outcome without its loop and its two calls.
                reply = replies[0]
                if type(reply) is Pending and reply.reply is not None:
                    replies.clear()
                    self._send(transport, reply.reply)
                    return
            self._write_ready(now=True)

    def _dispatch(self, command: Command | None, request: list[bytes]) -> Started:
        """Check the command as Disque does (unknown, arity, then auth) and start it.

        The reply of a command refused at once, else what its start gives (see
        ``commands.Started``: a reply, a plain ADDJOB's job, a gathered request's pending
        reply, or the command to run).
        """
        if command is None:
            shown = request[0].decode(errors="replace")
            return protocol.error(f"ERR unknown command '{shown}'")
        if not command.min_args <= len(request) <= command.max_args:  # check_arity's rule
            return check_arity(command, len(request)) or protocol.SYNTAX_ERROR
        if not self.authenticated and command.name != "auth":
            if self.server.requirepass is None:
                self.authenticated = True
            else:
                return NOAUTH
        return command.start(self, request)

    def _write_ready(self, *, now: bool = False) -> None:
        """Queue the replies that are ready, up to the first one still running, to be
        written once this loop iteration has read what it could (``now``: at once)."""
        replies = self._replies
        out = self._out
        queued = bool(out)
        ready = 0
        for reply in replies:
            if type(reply) is bytes:
                out.append(reply)
            elif type(reply) is Pending:
                if reply.reply is None:
                    if self._waiting is None:
                        self._waiting = reply
                        reply.then = self._batch_done
                    break
                out.append(reply.reply)
            else:
                task = cast(asyncio.Task[bytes], reply)
                if not task.done():
                    break
                if task.cancelled():  # the server is stopping
                    self._write_and_close(b"")
                    return
                out.append(task.result())
            ready += 1
        if ready:
            del replies[:ready]
            if now:
                self._write_out()  # one queued before finds nothing left to write
            elif not queued:
                self.server.write_soon(self._write_out)

    def _write_out(self) -> None:
        out, transport = self._out, self._transport
        if not out or transport is None:
            out.clear()
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self._send(transport, data)

    def _send(self, transport: asyncio.Transport, data: bytes) -> None:
        """Write ``data``; a client that does not read its replies is closed once they
        pass ``max_output_bytes``."""
        transport.write(data)
        self.server.net_output_bytes += len(data)
        if transport.get_write_buffer_size() > self.limits.max_output_bytes:
            log.warning("closing a client that does not read its replies")
            transport.abort()

    def _write_and_close(self, reply: bytes, *, linger: bool = False) -> None:
        """Send ``reply`` and close; with ``linger``, make sure the client can read it."""
        self._closing = True
        self._pending.clear()
        transport = self._transport
        if transport is None:
            return
        self._out.append(reply)
        self._write_out()
        if not linger or transport.is_closing() or not transport.can_write_eof():
            transport.close()
            return
        # A refused request is often still arriving: half-close (the reply, then EOF) and
        # read the rest into nothing until the client closes, for a while at most. The
        # client keeps its slot meanwhile: a client sending one bad frame per connection
        # must not hold more descriptors than max_clients.
        transport.write_eof()
        if not self._reading:
            transport.resume_reading()
            self._reading = True
        self._linger = asyncio.get_running_loop().call_later(_LINGER_SECONDS, transport.close)


async def _blocked_reply(
    before: asyncio.Task[None] | None,
    wait: Callable[[], Coroutine[Any, Any, bytes]],
    pending: Pending,
) -> None:
    if before is not None and not before.done():
        await asyncio.wait([before])
    pending.settle(await _reply(wait()))


async def _reply(command: Coroutine[Any, Any, bytes]) -> bytes:
    """A command's reply: its error reply when it raises (a refusal by the store)."""
    try:
        return await command
    except CommandError as exc:
        return exc.reply
    except Exception as exc:
        return refusal(exc)


class Limits:
    """What one client may make the server hold."""

    def __init__(
        self,
        *,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        max_argument_bytes: int = protocol.DEFAULT_MAX_ARGUMENT_BYTES,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    ) -> None:
        self.max_clients = max_clients
        self.max_argument_bytes = max_argument_bytes
        self.max_output_bytes = max_output_bytes
