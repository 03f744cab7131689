"""``disquette server``: the Disque protocol (1.0-rc1) over any disquette store.

Existing Disque clients (Go, Ruby, Node, Python) talk to it unmodified: same commands,
reply types, error texts and 40-byte job ids (``D-<node prefix>-<24>-<TTL minutes, odd when
RETRY > 0>``). Several servers over one shared store (PostgreSQL, Redis, one SQLite file)
form a pool: each registers itself with a heartbeat, HELLO and CLUSTER NODES list the live
ones, and since every node sees every job, a job added through one node is got and acked
through any other; a node killed with -9 loses nothing (its unacked jobs are redelivered
after their RETRY, as with Disque).

Where our semantics differ from Disque's, the reply keeps Disque's shape:

- RETRY: Disque counts it from the last (re)queueing; we count it from the delivery (a
  lease, like every disquette store). A worker that takes its time is never cut short.
- TTL: whole seconds, as Disque (``expires_at = floor(now) + TTL``); the id's 4 last hex
  digits are the TTL in minutes, odd when the job can be redelivered.
- REPLICATE n / ASYNC: REPLICATE counts the copies of the job the store really holds, since
  pool nodes share one store and hold no copies of their own. REPLICATE 1 (our default,
  and ASYNC whatever n) returns once the store committed; REPLICATE n > 1 asks the store
  for n - 1 extra copies (SQLite: none, one file; PostgreSQL: synchronous standbys with
  remote_apply; Redis: replicas, through WAIT), and a store that cannot answers
  ``-NOREPL``, as a lone Disque node does, however many nodes HELLO lists. Clients that
  ask for "as many copies as HELLO lists nodes" get a path with ``--pool-nodes-as-replicas``
  (``serve(pool_nodes_as_replicas=True)``): REPLICATE n is then met when the pool has n
  live nodes, by the store's one copy that all of them serve (not n copies); past the live
  nodes, the store's copies are asked for as without it. The ms-timeout is validated but
  the wait is bounded by the store's own timeout.
- ACKJOB: the job becomes done and stays in the store for ``result_ttl`` (so that Python's
  ``wait()`` sees it); SHOW answers ``$-1`` for a done job at once, so goware-style
  ``Wait`` (poll SHOW until null) works, and a second ACKJOB answers ``:0``.
- GETJOB orders jobs as Disque does (passes over the queues left to right, one job per
  listed queue per pass) and a blocked GETJOB gets the one job that woke it. GETJOB NOHANG
  and ACKJOB of every connection are gathered into one store call per loop iteration (one
  SQLite commit for many clients), as plain ADDJOBs are.
- Queue names: any UTF-8 text without control characters, 1 to 200 bytes. ADDJOB and
  PAUSE refuse other names with ``-ERR invalid queue name``; read commands treat them as
  empty queues.
- QSTAT: ``age``, ``idle``, ``jobs-in`` and ``jobs-out`` are this node's view, as in
  Disque (a queue only another node used is "known since this node started");
  ``jobs-in`` counts the ADDJOBs, NACKs and ENQUEUEs this node ran, as Disque counts every
  queueing, but not the requeues when a RETRY runs out (the store makes those, unseen by
  any node) nor a delayed job's queueing apart from its ADDJOB. ``import-*`` are 0 and empty:
  nodes share one store, so no job ever moves between them. A queue this node used stays
  visible to QSTAT and INFO for 300 s, empty or not, like Disque's queue objects.
  QSCAN returns every queue in one page; JSCAN pages through the store in enqueue order.
  HELLO gives every node's real address (a lone Disque node sends an empty ip).
- NACK requeues a delivered at-most-once job too (Disque answers 0).
- ENQUEUE puts a job at the tail of its queue (Disque orders a queue by creation time, so a
  delayed job enqueued early goes back to its creation place). QSCAN, QSTAT and INFO know
  a queue as soon as it holds a job in any state (Disque: once a job is queued in it).

Checked against a real Disque 1.0-rc1 build (not part of the suite: Disque is not packaged
anywhere we can install from): the probe transcript matches, and the ``disque://`` store
passes the conformance suite there but for the differences above and those it lists.

Bodies: a job added through the server is its body's bytes, exactly (``Job.raw_body``;
``Job.body`` is ``bytes`` too), with no type. A job added from Python with a JSON body
is read by any Disque client as that JSON text; its ``type`` is not on the wire, so
jobs meant for other languages should use a queue per kind of work. A Python worker gives
a job without a type to the one handler that declared its queue, else to the catch-all
handler (``"*"``), see ``Registry.resolve``.

Safety: loopback by default; a non-loopback bind needs ``--requirepass`` or an explicit
``--unprotected``; limits on one argument (``max_argument_bytes``, checked exactly), the
arguments of one request (1,048,576, as Disque), inline requests (64 KiB), clients
(``max_clients``) and replies buffered for a slow reader (the server stops reading a
connection's requests until it drains, and closes it past ``max_output_bytes``). A request
whose header declares more than a limit (``*2147483648``, ``$999999999999``, an array
nested in a request) is refused from that header, before anything is made or buffered
for it, as Redis does (see ``protocol.RequestParser``). A malformed frame gets Disque's
``-ERR Protocol error: ...``; the server then half-closes and reads what the client still
sends for up to two seconds, so that the client reads the error instead of a reset.

Where it listens: TCP (``host``, ``port``), and with ``unixsocket`` a Unix socket too,
its mode set from ``unixsocketperm`` (``--unixsocket``, ``--unixsocketperm 770``, as
disque-server's options). An address that cannot be listened on (a port in use, a live
socket file) raises :class:`~disquette.errors.CannotListen` (the CLI prints one line and
exits with status 1).

INFO gives Disque's fields; those that describe what Disque has and we do not say so:
the AOF is off (the store is the persistence; ``aof_last_write_status`` is ``err`` while
the store refuses ADDJOB batches for being unreachable), ``latest_fork_usec`` is 0 (no
fork), memory is this process' resident size (``used_memory`` too: Python's allocators keep
no in-use total, so ``mem_fragmentation_ratio`` is 1.00), the peak is the kernel's
``ru_maxrss``, network bytes and CPU (``os.times()``, children included) are counted for
real, and the instantaneous rates are sampled ten times a second as Redis does.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import logging
import os
import signal
import socket
import stat
from collections.abc import Callable, Coroutine
from typing import Any, Final, cast

from .._async.client import AsyncClient, connect_async
from ..errors import CannotListen
from ..job import Job
from . import protocol
from .commands import (
    NOAUTH,
    TABLE,
    Command,
    CommandError,
    Gather,
    Pending,
    Server,
    Started,
    check_arity,
    refusal,
)
from .eager import start
from .node import Node
from .protocol import ProtocolError, RequestParser

log = logging.getLogger("disquette.server")

DEFAULT_PORT: Final = 7711
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


class UnsafeBind(Exception):
    """A non-loopback bind without a password, and without ``unprotected``."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
            self._end_group()
            if self._transport is not None:
                self._write_ready()
        except Exception:  # a bug must cost one connection, never the server
            log.exception("closing a connection after an unexpected error")
            self._write_and_close(b"-ERR internal error\r\n")
        finally:
            self._pumping = False

    def _run(self) -> None:
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
            if isinstance(request, ProtocolError):
                name, command, kind = None, None, None
            else:
                name = request[0].lower()
                command = TABLE.get(name)
                gathered = None if command is None else command.gathered
                kind = None if gathered is None else gathered(request)
            if kind is not self._last_kind:
                self._end_group()
                if not self._settled():
                    return  # another kind is in flight; _batch_done pumps again
                self._last_kind = kind
            if name is None or name == _QUIT:
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
            reply = self._dispatch(command, cast(list[bytes], request))
            if type(reply) is Job:
                self._group.append(reply)
                if len(self._group) >= _MAX_GROUP:
                    self._end_group()
            elif type(reply) is bytes or type(reply) is Pending:
                self._end_group()
                replies.append(reply)
            else:
                self._end_group()
                if self._settled():
                    self._start(cast(Coroutine[Any, Any, bytes], reply))
                else:
                    self._deferred = cast(Coroutine[Any, Any, bytes], reply)

    def _end_group(self) -> None:
        """Hand the plain ADDJOBs gathered so far to the server's next batch."""
        if self._group:
            reply = Pending()
            self.server.add_jobs(self._group, reply)
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
        self._waiting = None
        if self._pending or self._deferred is not None:
            self._pump()
        elif self._transport is not None:
            self._write_ready()

    def _dispatch(self, command: Command | None, request: list[bytes]) -> Started:
        """Check the command as Disque does (unknown, arity, then auth) and start it.

        The reply of a command refused at once, else what its start gives (see
        ``commands.Started``: a reply, a plain ADDJOB's job, a gathered request's pending
        reply, or the command to run).
        """
        self.server.commands_processed += 1
        if command is None:
            shown = request[0].decode(errors="replace")
            return protocol.error(f"ERR unknown command '{shown}'")
        arity_error = check_arity(command, len(request))
        if arity_error is not None:
            return arity_error
        if not self.authenticated and command.name != "auth":
            if self.server.requirepass is None:
                self.authenticated = True
            else:
                return NOAUTH
        return command.start(self, request)

    def _write_ready(self) -> None:
        """Queue the replies that are ready, up to the first one still running."""
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
            if not queued:
                self.server.write_soon(self._write_out)

    def _write_out(self) -> None:
        out, transport = self._out, self._transport
        if not out or transport is None:
            out.clear()
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        transport.write(data)
        self.server.net_output_bytes += len(data)
        out.clear()
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
        # client's slot is free already.
        transport.write_eof()
        if self._counted:
            self.server.connected -= 1
            self._counted = False
        if not self._reading:
            transport.resume_reading()
            self._reading = True
        self._linger = asyncio.get_running_loop().call_later(_LINGER_SECONDS, transport.close)


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


async def serve(
    url: str | None,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    requirepass: str | None = None,
    unprotected: bool = False,
    limits: Limits | None = None,
    result_ttl: float | None = None,
    ready: asyncio.Future[tuple[str, int]] | None = None,
    client: AsyncClient | None = None,
    unixsocket: str | None = None,
    unixsocketperm: int | None = None,
    pool_nodes_as_replicas: bool = False,
) -> None:
    """Serve the Disque protocol over the store ``url`` names until cancelled or SHUTDOWN.

    ``unixsocket`` adds a Unix socket at that path (its mode set to ``unixsocketperm``)
    beside TCP, as disque-server's ``unixsocket`` does; a stale socket file is replaced,
    a live one is not. ``pool_nodes_as_replicas``: see the module's doc. Raises
    :class:`~disquette.errors.CannotListen` when an address cannot be listened on.
    """
    if not is_loopback(host) and not requirepass and not unprotected:
        raise UnsafeBind(
            f"refusing to listen on {host} without a password: pass --requirepass, or "
            "--unprotected if the network is trusted"
        )
    limits = limits or Limits()
    client = client or connect_async(url)
    loop = asyncio.get_running_loop()
    stopped: asyncio.Future[None] = loop.create_future()
    server: Server | None = None
    listeners: list[asyncio.AbstractServer] = []
    unix_inode: int | None = None
    node: Node | None = None

    def session() -> Session:
        assert server is not None  # the listeners start serving once the server exists
        return Session(server, limits)

    try:
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            listener = await loop.create_server(
                session, host, port, reuse_address=True, backlog=1024, start_serving=False
            )
        except OSError as exc:
            raise _cannot_listen(address, exc) from None
        listeners.append(listener)
        bound = listener.sockets[0].getsockname()
        for sock in listener.sockets:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if unixsocket is not None:
            unix_listener, unix_inode = await _listen_unix(session, unixsocket, unixsocketperm)
            listeners.append(unix_listener)
        node = Node(client.store, host, int(bound[1]))
        server = Server(
            client, node, requirepass=requirepass, pool_nodes_as_replicas=pool_nodes_as_replicas
        )
        if result_ttl is not None:
            server.result_ttl = result_ttl
        server.multiplexing_api = type(loop).__module__.split(".")[0]
        server.unixsocket = (unixsocket, unixsocketperm)

        def shutdown() -> None:
            if not stopped.done():
                stopped.set_result(None)

        server.on_shutdown = shutdown
        for listening in listeners:
            await listening.start_serving()
        await node.start()
        server.rates.start()
        log.info("disquette server %s listening on %s:%s", node.id, host, bound[1])
        if unixsocket is not None:
            log.info("and on the Unix socket %s", unixsocket)
        if ready is not None and not ready.done():
            ready.set_result((host, int(bound[1])))
        await stopped
    finally:
        for listening in listeners:
            listening.close()
        if server is not None:
            server.rates.stop()
        if node is not None:
            await node.stop()
        if unixsocket is not None and unix_inode is not None:
            with contextlib.suppress(OSError):
                if os.stat(unixsocket).st_ino == unix_inode:  # still ours
                    os.unlink(unixsocket)
        await client.close()


def _cannot_listen(address: str, exc: OSError) -> CannotListen:
    """The typed error for a failed bind, with the system's reason in lower case."""
    reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or str(exc)
    return CannotListen(address, reason[:1].lower() + reason[1:])


async def _listen_unix(
    factory: Callable[[], Session], path: str, mode: int | None
) -> tuple[asyncio.AbstractServer, int]:
    """Listen on the Unix socket ``path``; the listener and the socket file's inode.

    asyncio replaces any socket file at ``path``, even one a live server listens on:
    a socket file is replaced only when connecting to it is refused (it is stale).
    """
    try:
        existing = os.stat(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise _cannot_listen(path, exc) from None
    else:
        if stat.S_ISSOCK(existing.st_mode):
            with socket.socket(socket.AF_UNIX) as probe:
                probe.settimeout(1.0)
                try:
                    probe.connect(path)
                except ConnectionRefusedError:
                    pass  # nobody listens: asyncio replaces it
                except OSError as exc:
                    raise _cannot_listen(path, exc) from None
                else:
                    raise CannotListen(path, "address already in use")
    try:
        listener = await asyncio.get_running_loop().create_unix_server(
            factory, path, backlog=1024, start_serving=False
        )
    except OSError as exc:
        raise _cannot_listen(path, exc) from None
    try:
        if mode is not None:
            os.chmod(path, mode)
        return listener, os.stat(path).st_ino
    except OSError as exc:
        listener.close()
        raise _cannot_listen(path, exc) from None


def run(
    url: str | None,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    requirepass: str | None = None,
    unprotected: bool = False,
    limits: Limits | None = None,
    result_ttl: float | None = None,
    unixsocket: str | None = None,
    unixsocketperm: int | None = None,
    pool_nodes_as_replicas: bool = False,
) -> None:
    """Run :func:`serve` on uvloop when installed, until SIGINT or SIGTERM."""

    async def main() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, lambda: task is not None and task.cancel())
        with contextlib.suppress(asyncio.CancelledError):
            await serve(
                url,
                host=host,
                port=port,
                requirepass=requirepass,
                unprotected=unprotected,
                limits=limits,
                result_ttl=result_ttl,
                unixsocket=unixsocket,
                unixsocketperm=unixsocketperm,
                pool_nodes_as_replicas=pool_nodes_as_replicas,
            )

    try:
        import uvloop
    except ModuleNotFoundError:
        asyncio.run(main())
    else:
        uvloop.run(main())


__all__ = ["Limits", "Session", "UnsafeBind", "is_loopback", "run", "serve"]
