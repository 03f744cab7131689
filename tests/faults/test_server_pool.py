"""A pool of three ``disquette server`` nodes on three hosts over one PostgreSQL on a
fourth; a Disque client in another language (Node.js, ``clients/pool_client.js``) on a
fifth keeps adding, getting and acking while the host of the node it talks to is cut off:
it moves to another node HELLO listed."""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .hosts import Host, Network, stop, unavailable, wait_for
from .services import PG_PORT, PostgresHost, look

pytestmark = pytest.mark.slow

CLIENT = Path(__file__).resolve().parent / "clients" / "pool_client.js"
DISQUE_PORT = 7711
JOBS = 400


def _events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def _answers(host: Host, address: str) -> bool:
    probe = f"import socket; socket.create_connection(('{address}', {DISQUE_PORT}), 1).close()"
    return host.run([sys.executable, "-c", probe], check=False).returncode == 0


def _hello_nodes(host: Host, address: str) -> int:
    """How many nodes the server at ``address`` lists in HELLO (ids are 40 hex digits)."""
    probe = (
        f"import socket, time; s = socket.create_connection(({address!r}, {DISQUE_PORT}), 2); "
        "s.sendall(b'*1\\r\\n$5\\r\\nHELLO\\r\\n'); time.sleep(0.2); "
        "print(s.recv(65536).count(b'$40\\r\\n') - 1)"
    )
    done = host.run([sys.executable, "-c", probe], check=False)
    return int(done.stdout.strip() or 0) if done.returncode == 0 else 0


@pytest.mark.timeout(300)
def test_a_node_js_client_moves_to_another_node_when_its_node_is_cut_off(
    network: Network, tmp_path: Path, record: Callable[..., None]
) -> None:
    node_js = shutil.which("node")
    if node_js is None:
        unavailable("`node` (Node.js) is not on PATH")
    database = network.host("pg")
    nodes = [network.host(f"n{i}") for i in (1, 2, 3)]
    client = network.host("client")
    cluster = PostgresHost(database)
    try:
        cluster.initdb({})
        cluster.start()
        schema = f"s{uuid.uuid4().hex[:6]}"
        url = f"postgresql://postgres@{database.address}:{PG_PORT}/postgres?schema={schema}"
        look(database, url)  # the schema, made once
        for host in nodes:
            host.popen(
                [sys.executable, "-m", "disquette", "server", "--bind", host.address,
                 "--port", str(DISQUE_PORT), "--unprotected", "--url", url],
                log=tmp_path / f"server-{host.name}.log",
            )  # fmt: skip
        for host in nodes:
            wait_for(lambda h=host: _answers(client, h.address), 60, f"server on {host.name}")
        # The client learns the other nodes from HELLO: wait until the pool formed.
        wait_for(lambda: _hello_nodes(client, nodes[0].address) == 3, 60, "the pool to form")
        events_file = tmp_path / "client.jsonl"
        seeds = ",".join(f"{host.address}:{DISQUE_PORT}" for host in nodes)
        process = client.popen([node_js, str(CLIENT), str(JOBS), "pool", seeds], log=events_file)
        # The client starts on the first seed; cut that node's host mid-run.
        wait_for(
            lambda: sum("acked" in e for e in _events(events_file)) >= JOBS // 4, 120,
            "the client's first acks",
        )  # fmt: skip
        nodes[0].cut()
        cut_at = max(e["t"] for e in _events(events_file) if "t" in e)
        process.wait(180)
        nodes[0].heal()
        events = _events(events_file)
        assert {"done": True} in events, events[-5:]
        assert process.returncode == 0
        added = [e["added"] for e in events if "added" in e]
        acked = {e["acked"] for e in events if "acked" in e}
        got = Counter(e["got"] for e in events if "got" in e)
        switches = [e for e in events if "node" in e and "error" not in e]
        assert len(switches) >= 2, "the client never moved to another node"
        assert all(s["node"] != f"{nodes[0].address}:{DISQUE_PORT}" for s in switches[1:])
        recovered = next(s["t"] for s in switches[1:] if s["t"] >= cut_at) - cut_at
        ids = tmp_path / "ids"
        ids.write_text("".join(f"{job_id} 0\n" for job_id in added))
        states = look(database, url, ids)["jobs"]
        done = sum(1 for job in states.values() if job["state"] == "done")
        lost = len(added) - done
        assert set(added) <= acked
        assert lost == 0, [j for j, s in states.items() if s["state"] != "done"][:5]
        record("server pool, client's node cut off (PostgreSQL, Node.js client)", JOBS,
               len(added), done, lost, sum(n - 1 for n in got.values()), recovered)  # fmt: skip
        stop(process)
    finally:
        cluster.destroy()
