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
  listed queue per pass) and a blocked GETJOB gets the one job that woke it. GETJOBs
  (blocking or NOHANG) and ACKJOBs of every connection are gathered into one store call
  per loop iteration (one SQLite commit for many clients), as plain ADDJOBs are; a
  blocking GETJOB that finds no job there then blocks, after the blocked GETJOBs before
  it on its connection. So a GETJOB pipelined behind one that blocks is tried in the same
  batch (Disque tries it once the blocked one returns): a NOHANG one answers from then,
  one that finds jobs holds them until its reply goes out, and a blocking one that finds
  none tries again, then blocks, once the one before it returned.
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
import contextlib
import functools
import gc
import ipaddress
import logging
import os
import signal
import socket
import stat
from collections.abc import Callable
from typing import Final

from ..client_async import AsyncClient, connect_async
from ..disque import DEFAULT_PORT
from ..errors import CannotListen, UnsafeBind
from .node import Node
from .server import Server
from .session import Limits, Session

#: Allocations between two young-generation collections in the server's process (see
#: :func:`run`; Python's default is 700).
GC_THRESHOLD: Final = 50_000
#: Young collections between two collections of the middle generation (Python's default
#: is 10; see :func:`run`).
GC_THRESHOLD_MIDDLE: Final = 100

log = logging.getLogger("disquette.server")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    metrics_port: int | None = None,
) -> None:
    """Serve the Disque protocol over the store ``url`` names until cancelled or SHUTDOWN.

    ``unixsocket`` adds a Unix socket at that path (its mode set to ``unixsocketperm``)
    beside TCP, as disque-server's ``unixsocket`` does; a stale socket file is replaced,
    a live one is not. ``pool_nodes_as_replicas``: see the module's doc.
    ``metrics_port`` serves Prometheus metrics on ``127.0.0.1:metrics_port/metrics``
    (extra ``prometheus``): the server's connections and commands, and this process's
    counts (see :class:`disquette.metrics.ServerCollector`). Raises
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
    stop_metrics: Callable[[], None] = _nothing

    def session() -> Session:
        assert server is not None  # the listeners start serving once the server exists
        return Session(server, limits)

    try:
        listener, bound_port = await _listen_tcp(session, host, port)
        listeners.append(listener)
        if unixsocket is not None:
            unix_listener, unix_inode = await _listen_unix(session, unixsocket, unixsocketperm)
            listeners.append(unix_listener)
        node = Node(client.store, host, bound_port)
        server = Server(
            client, node, requirepass=requirepass, pool_nodes_as_replicas=pool_nodes_as_replicas
        )
        if result_ttl is not None:
            server.result_ttl = result_ttl
        server.multiplexing_api = type(loop).__module__.split(".")[0]
        server.unixsocket = (unixsocket, unixsocketperm)
        server.on_shutdown = functools.partial(_resolve, stopped)
        stop_metrics = _export_metrics(server, metrics_port)
        for listening in listeners:
            await listening.start_serving()
        await node.start()
        server.rates.start()
        log.info("disquette server %s listening on %s:%s", node.id, host, bound_port)
        if unixsocket is not None:
            log.info("and on the Unix socket %s", unixsocket)
        if ready is not None and not ready.done():
            ready.set_result((host, bound_port))
        await stopped
    finally:
        for listening in listeners:
            listening.close()
        stop_metrics()
        if server is not None:
            server.rates.stop()
        if node is not None:
            await node.stop()
        if unixsocket is not None and unix_inode is not None:
            _remove_socket_file(unixsocket, unix_inode)
        await client.close()


def _nothing() -> None:
    pass


def _export_metrics(server: Server, port: int | None) -> Callable[[], None]:
    """Serve the server's metrics on ``127.0.0.1:port`` (None: nowhere); return what
    stops serving them."""
    if port is None:
        return _nothing
    from .. import metrics

    try:
        exporter = metrics.start(port, extra=[metrics.ServerCollector(server)])
    except OSError as exc:
        raise _cannot_listen(f"127.0.0.1:{port}", exc) from None
    log.info("metrics on http://127.0.0.1:%d/metrics", exporter.port)
    return exporter.close


async def _listen_tcp(
    factory: Callable[[], Session], host: str, port: int
) -> tuple[asyncio.AbstractServer, int]:
    """Listen on ``host:port`` (not serving yet); the listener and the port it got."""
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    loop = asyncio.get_running_loop()
    try:
        listener = await loop.create_server(
            factory, host, port, reuse_address=True, backlog=1024, start_serving=False
        )
    except OSError as exc:
        raise _cannot_listen(address, exc) from None
    for sock in listener.sockets:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return listener, int(listener.sockets[0].getsockname()[1])


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _remove_socket_file(path: str, inode: int) -> None:
    """Remove the Unix socket file we made, unless another server has replaced it since."""
    with contextlib.suppress(OSError):
        if os.stat(path).st_ino == inode:
            os.unlink(path)


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
    metrics_port: int | None = None,
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
                metrics_port=metrics_port,
            )

    # A server's garbage is requests, replies and jobs, almost never cycles, yet each
    # allocates: at the default threshold (700) the collector runs thousands of times a
    # second under load. Fewer young collections measured +40% GETJOB+ACKJOB cycles
    # (bench/bench_server.py); what startup made is frozen out of every collection.
    # Jobs a store keeps in memory survive the young collection into the middle
    # generation, which the default (every 10 young ones) scanned again and again while a
    # queue filled: 16% of ADDJOB's CPU at pipeline 50 with 100k jobs queued (timed with
    # gc.callbacks). Every 100 young ones, cycles that outlive a young collection wait
    # longer, nothing else changes.
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, GC_THRESHOLD_MIDDLE, thresholds[2])
    try:
        try:
            import uvloop
        except ModuleNotFoundError:
            asyncio.run(main())
        else:
            uvloop.run(main())
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


__all__ = ["Limits", "Session", "UnsafeBind", "is_loopback", "run", "serve"]
