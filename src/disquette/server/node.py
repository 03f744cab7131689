"""A server's identity in a pool: its node id, its registration in the shared store, and
the replies that describe the pool (HELLO, CLUSTER NODES).

Servers over one store form a pool without talking to each other: each one registers
itself in the store's node registry with an expiry and renews it every ``heartbeat``
seconds. A node killed with -9 stops renewing and drops out of HELLO after ``node_ttl``
(:data:`NODE_TTL`, five missed heartbeats); DEBUG FLUSHALL drops it at once
(:meth:`Node.prune`). Jobs need no federation: every node sees every job, because the
store is shared.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
from typing import Final

from ..errors import DisquetteError
from ..stores.store_async import AsyncStore
from ..stores.types import NodeInfo
from . import protocol

log = logging.getLogger("disquette.server")

HEARTBEAT: Final = 0.5
NODE_TTL: Final = 2.5
#: How long :meth:`Node.prune` tries to connect to a node it suspects is dead.
PROBE_TIMEOUT: Final = 0.5


def new_node_id() -> str:
    """40 lower-case hex characters, as Disque's node ids; the first 8 prefix job ids."""
    return os.urandom(20).hex()


class Node:
    """This server as a member of the pool of servers sharing ``store``."""

    def __init__(
        self,
        store: AsyncStore,
        host: str,
        port: int,
        *,
        node_id: str | None = None,
        heartbeat: float = HEARTBEAT,
        node_ttl: float = NODE_TTL,
    ) -> None:
        self.store = store
        self.id = node_id or new_node_id()
        self.prefix = self.id[:8]
        self.host = host
        self.port = port
        self.heartbeat = heartbeat
        self.node_ttl = node_ttl
        #: The pool as last read from the store (this node first); HELLO answers from it.
        self.peers: list[NodeInfo] = [NodeInfo(self.id, self.address, 0.0)]
        #: Whether the store keeps a node registry (a Disque server's does not: its
        #: servers register themselves); without one, this server is a pool of one.
        self.shared = store.capabilities.node_registry
        self._task: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        """``host:port`` as other nodes and clients reach this one."""
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        """Register now, then keep renewing in the background."""
        if not self.shared:
            log.warning("the store keeps no node registry: this server is a pool of one")
        await self._renew()
        self._task = asyncio.get_running_loop().create_task(self._beat())

    async def stop(self) -> None:
        """Stop renewing and leave the pool at once (a clean shutdown)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.shared:
            with contextlib.suppress(DisquetteError, OSError):
                await self.store.unregister_node(self.id)

    async def _renew(self) -> None:
        if not self.shared:
            return
        await self.store.register_node(self.id, self.address, self.node_ttl)
        self._set_peers(await self.store.nodes())

    def _set_peers(self, nodes: list[NodeInfo]) -> None:
        mine = [node for node in nodes if node.id == self.id]
        others = [node for node in nodes if node.id != self.id]
        self.peers = (mine or [NodeInfo(self.id, self.address, 0.0)]) + others

    async def prune(self) -> list[str]:
        """Unregister the nodes that are dead though their registration has not lapsed
        yet (DEBUG FLUSHALL: a test suite that restarts servers quickly sees no stale
        nodes); the ids dropped.

        A node is dropped only when two things say it is dead: its address refuses a
        connection, or another registered node now has its address (a server restarted
        on the same port); and its registration was not renewed for two heartbeats, which
        a live node does every heartbeat. The address alone is not enough: nodes on other
        machines may register an address (``127.0.0.1:7711``) that means another server
        here. A live node wrongly dropped registers again at its next heartbeat.
        """
        if not self.shared:
            return []
        nodes = await self.store.nodes()
        addresses = collections.Counter(node.address for node in nodes)
        others = [node for node in nodes if node.id != self.id]
        refused = await asyncio.gather(*(_refuses(node.address) for node in others))
        suspects = [
            node
            for node, refuses in zip(others, refused, strict=True)
            if refuses or addresses[node.address] > 1
        ]
        if not suspects:
            return []
        await asyncio.sleep(2 * self.heartbeat)
        renewed = {node.id: node.expires_at for node in await self.store.nodes()}
        dead = [node.id for node in suspects if renewed.get(node.id) == node.expires_at]
        for node_id in dead:
            await self.store.unregister_node(node_id)
            log.info("dropped node %s from the pool: it no longer answers", node_id)
        self._set_peers(await self.store.nodes())
        return dead

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                await self._renew()
            except (DisquetteError, OSError) as exc:  # the store is away: try again later
                log.warning("node heartbeat failed: %s", exc)

    def hello(self) -> bytes:
        """HELLO: version 1, this node's id, then ``[id, ip, port, priority]`` per node
        (port and priority as bulk strings, as Disque sends them)."""
        entries = []
        for node in self.peers:
            host, _, port = node.address.rpartition(":")
            entries.append(
                protocol.array(
                    [
                        protocol.bulk(node.id),
                        protocol.bulk(host),
                        protocol.bulk(port),
                        b"$1\r\n1\r\n",
                    ]
                )
            )
        return protocol.array([protocol.integer(1), protocol.bulk(self.id), *entries])

    def cluster_nodes(self) -> bytes:
        """CLUSTER NODES: one line per node, ``<id> <ip:port> <flags> ...``."""
        lines = []
        for node in self.peers:
            flags = "myself" if node.id == self.id else "noflags"
            lines.append(f"{node.id} {node.address} {flags} - 0 0 connected\n")
        return protocol.bulk("".join(lines))

    def cluster_info(self) -> bytes:
        """CLUSTER INFO, in Disque's layout."""
        known = len(self.peers)
        text = (
            "cluster_state:ok\r\n"
            f"cluster_known_nodes:{known}\r\n"
            f"cluster_reachable_nodes:{known - 1}\r\n"
            f"cluster_size:{known}\r\n"
            "cluster_stats_messages_sent:0\r\n"
            "cluster_stats_messages_received:0\r\n"
        )
        return protocol.bulk(text)


async def _refuses(address: str) -> bool:
    """Whether nothing listens at ``host:port`` (the connection is refused); a timeout or
    any other failure says nothing, and is not a refusal."""
    host, _, port = address.rpartition(":")
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host.strip("[]"), int(port)), PROBE_TIMEOUT
        )
    except ConnectionRefusedError:
        return True
    except (OSError, ValueError):  # TimeoutError is an OSError
        return False
    writer.close()
    return False
