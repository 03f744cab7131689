"""pydisque, used as a user would, against our server.

pydisque needs redis-py < 8 (redis-py 8 opens every connection with ``HELLO 3``, which
Disque refuses), while disquette's own Redis store uses redis-py 8; so pydisque and
redis-py 7.4.1 live in their own directory (``$DISQUETTE_PYDISQUE_PATH``, default
``.venv/pydisque-redis7``, made by ``pip install --target .venv/pydisque-redis7
pydisque==0.1.5 redis==7.4.1``) and the client runs in a subprocess with it on its path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import ROOT, ServerProcess

PYDISQUE = Path(os.environ.get("DISQUETTE_PYDISQUE_PATH", ROOT / ".venv" / "pydisque-redis7"))

SCRIPT = r"""
import sys
from pydisque.client import Client

client = Client(sys.argv[1].split(","))
client.connect()
job_id = client.add_job("emails", b"hello \x00 world", timeout=100).decode()
assert len(job_id) == 40, job_id
assert client.qlen("emails") == 1
assert client.qpeek("emails", 1)[0][1] == job_id.encode()
shown = client.show(job_id, return_dict=True)
assert shown[b"state"] == b"queued", shown
jobs = client.get_job(["urgent", "emails"], timeout=100, count=5, withcounters=True)
assert [(q, j, body) for q, j, body, _, _ in jobs] == [
    (b"emails", job_id.encode(), b"hello \x00 world")], jobs
assert client.working(job_id) == 300
client.nack_job(job_id)
queue, again, body, nacks, deliveries = client.get_job(["emails"], withcounters=True)[0]
assert (again, nacks) == (job_id.encode(), 1)
client.ack_job(job_id)
assert client.show(job_id) is None
assert client.get_job(["emails"], timeout=50) == []
assert client.pause("emails", kw_in=True) == b"in"
try:
    client.add_job("emails", "x")
except Exception as exc:
    assert "PAUSED" in str(exc), exc
else:
    raise AssertionError("a paused queue accepted a job")
assert client.pause("emails", kw_none=True) == b"none"
other = client.add_job("emails", "y", retry=0, ttl=60, asynchronous=True).decode()
assert other.endswith("-0000"), other  # TTL 60 s = 1 minute, made even: at-most-once
assert client.del_job(other) == 1
cursor, ids = client.jscan(queue="emails")
assert ids == [], ids
hello = client.hello()
assert hello[0] == 1 and len(hello) >= 3, hello
info = client.info()
assert "tcp_port" in info or b"tcp_port" in str(info).encode(), info
print("ok")
"""


def test_pydisque_works_unmodified(start_server: Callable[..., ServerProcess]) -> None:
    if not (PYDISQUE / "pydisque").is_dir():
        message = f"pydisque is not installed at {PYDISQUE} (see this module's doc)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    server = start_server()
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, server.address],
        env={**os.environ, "PYTHONPATH": str(PYDISQUE)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
