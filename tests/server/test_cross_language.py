"""Jobs cross languages through ``disquette server``.

A job added by another language's Disque client (a plain body) is handled by a Python
worker, and a job added from Python (a type and JSON arguments) is read by any Disque
client. The other language is Node.js: ``clients/disque_client.js`` is a dependency-free
RESP client (ADDJOB, GETJOB, ACKJOB) that knows nothing of disquette.

What the tests pin down:

- A plain body added by a Disque client reaches a Python handler as ``bytes``, exactly,
  with no type, whether the worker talks to the server (``disque://``) or to the server's
  store directly (``sqlite:///``). A job without a type goes to the catch-all handler
  (``"*"``); routing untyped work by queue name is that handler's business
  (``job.queue``), one queue per kind of work.
- A typed job added through ``disque://`` is, on the wire, the JSON envelope
  ``{"disquette": 1, "encoding": "json", "type": ..., "body": <args>}`` (keys at their
  defaults left out); the same job added to the store directly is its JSON arguments alone,
  with no type on the wire. A Disque client acks either with ACKJOB.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from disquette import App, Job, JobState, Worker, connect

from .conftest import ServerProcess, Wire

CLIENT = Path(__file__).resolve().parent / "clients" / "disque_client.js"

#: Bodies a Node client adds: UTF-8 text beyond ASCII, a JSON text, line breaks.
MAIL_BODIES = [
    "héllo wörld ✓ 日本語 🚀",
    '{"to": "ada@example.com", "tags": ["a", "b"], "n": 1.5}',
    "two\nlines\r\nand a tab\t.",
]
IMAGE_BODIES = ["thumbnail:cat.png"]
#: The JSON arguments of the typed job Python adds.
ARGS = {"to": "ada@example.com", "lang": "fr", "n": [1, 2.5, None], "name": "Zoë ✓"}


def node() -> str:
    """The ``node`` binary; missing, a loud skip, or a failure under ``CI=true``."""
    found = shutil.which("node")
    if found is None:
        message = "cross-language tests cannot run: `node` (Node.js) is not on PATH"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


def run_node(port: int, *args: str, ok: bool = True) -> Any:
    """Run the Node client; return its JSON output (``ok=False``: the completed process)."""
    result = subprocess.run(
        [node(), str(CLIENT), str(port), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )
    if not ok:
        return result
    assert result.returncode == 0, f"node client failed: {result.stderr}"
    return json.loads(result.stdout)


def _worker_url(server: ServerProcess, via: str) -> str:
    return f"disque://{server.address}" if via == "disque" else server.url


def test_node_client_parses_replies(start_server: Callable[..., ServerProcess]) -> None:
    """The Node client reads status, integer, bulk, null, nested-array and error replies."""
    server = start_server()
    assert run_node(server.port, "call", "PING") == "PONG"
    assert run_node(server.port, "call", "QLEN", "nothing") == 0
    assert run_node(server.port, "call", "SHOW", "D-00000000-000000000000000000000000-0000") is None
    hello = run_node(server.port, "call", "HELLO")
    assert hello[0] == 1
    assert [server.address.split(":")[0], str(server.port)] == hello[2][1:3]
    assert run_node(server.port, "getjob", "nothing", "1", "--nohang") == {"jobs": [], "acked": 0}
    refused = run_node(server.port, "call", "ACKJOB", "not-a-job-id", ok=False)
    assert refused.returncode == 1
    assert refused.stderr.startswith("-BADID"), refused.stderr


@pytest.mark.parametrize("via", ["disque", "store"])
def test_plain_bodies_from_node_are_handled_by_a_python_worker(
    start_server: Callable[..., ServerProcess], via: str
) -> None:
    server = start_server()
    mail_ids = run_node(server.port, "addjob", "mail", *MAIL_BODIES)
    image_ids = run_node(server.port, "addjob", "images", *IMAGE_BODIES)
    assert len(mail_ids) == len(MAIL_BODIES)
    assert len(image_ids) == len(IMAGE_BODIES)

    seen: list[tuple[str, str, str | None, bytes]] = []

    def send_mail(job: Job) -> str:
        seen.append(("mail", job.queue, job.type, job.body))
        return "sent"

    def make_thumbnail(job: Job) -> str:
        seen.append(("images", job.queue, job.type, job.body))
        return "made"

    by_queue = {"mail": send_mail, "images": make_thumbnail}

    def untyped(job: Job) -> str:
        # A job from another language has no type: the catch-all routes it by queue.
        return by_queue[job.queue](job)

    worker = Worker(_worker_url(server, via), {"*": untyped}, queues=["mail", "images"])
    while worker.work_one():
        pass

    # Leftmost queue first, then enqueue order; each body exactly what Node sent, as bytes.
    assert seen == [
        *(("mail", "mail", None, body.encode()) for body in MAIL_BODIES),
        *(("images", "images", None, body.encode()) for body in IMAGE_BODIES),
    ]
    assert json.loads(seen[1][3]) == json.loads(MAIL_BODIES[1])

    wire = Wire(server.port)
    assert wire.call("QLEN", "mail") == b":0\r\n"
    assert wire.call("QLEN", "images") == b":0\r\n"
    for job_id in [*mail_ids, *image_ids]:
        assert wire.call("SHOW", job_id) == b"$-1\r\n"  # acked: done, as Disque shows it
    with connect(server.url) as store:  # and in the store under the server
        states = {store.show(job_id).state for job_id in [*mail_ids, *image_ids]}
    assert states == {JobState.DONE}
    assert run_node(server.port, "getjob", "mail", "10", "--nohang") == {"jobs": [], "acked": 0}


@pytest.mark.parametrize("via", ["disque", "store"])
def test_a_typed_job_from_python_is_read_and_acked_by_node(
    start_server: Callable[..., ServerProcess], via: str
) -> None:
    server = start_server()
    app = App(_worker_url(server, via))

    @app.job(queue="mail")
    def send_welcome(job: Job) -> None:
        raise AssertionError("Node handles this job, not Python")

    try:
        job_id = send_welcome.add(ARGS)
    finally:
        app.close()

    got = run_node(server.port, "getjob", "mail", "10")
    assert got["acked"] == 1
    [(queue, node_id, body)] = got["jobs"]
    assert (queue, node_id) == ("mail", job_id)
    assert isinstance(body, str)  # JSON text, whichever way it was added
    if via == "disque":
        # Through the server, the type travels in the envelope (see disquette's disque://
        # store, "Body format"); settings at their defaults are left out.
        assert json.loads(body) == {
            "disquette": 1,
            "encoding": "json",
            "type": "send_welcome",
            "body": ARGS,
        }
    else:
        # Added to the store directly, the body is the arguments alone: no type on the wire.
        assert json.loads(body) == ARGS

    wire = Wire(server.port)
    assert wire.call("SHOW", job_id) == b"$-1\r\n"
    assert wire.call("QLEN", "mail") == b":0\r\n"
    with connect(server.url) as store:
        assert store.show(job_id).state == JobState.DONE
