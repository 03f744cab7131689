"""CANCEL, our own command (no Disque client sends it), over a real socket."""

from __future__ import annotations

from collections.abc import Callable

from disquette import JobState, connect

from .conftest import ServerProcess, Wire


def test_cancel_answers_per_id_and_refuses_unknown_and_finished_jobs(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server()
    wire = Wire(server.port)
    queued = wire.call("ADDJOB", "q", "a", "0").decode().strip()[1:]
    running = wire.call("ADDJOB", "r", "b", "0").decode().strip()[1:]
    assert running.encode() in wire.call("GETJOB", "NOHANG", "FROM", "r")
    reply = wire.call("CANCEL", queued, running)
    assert reply == b"*2\r\n$9\r\ncancelled\r\n$9\r\nrequested\r\n"
    assert wire.call("SHOW", queued) == b"$-1\r\n"  # final, as an acked job
    with connect(server.url) as client:
        assert client.show(queued).state is JobState.CANCELLED
        assert client.show(running).cancel_requested
    assert wire.call("WORKING", running).startswith(b"-ERR job ")  # its holder must stop
    assert wire.call("CANCEL", queued).startswith(b"-ERR cannot cancel job ")
    assert wire.call("CANCEL", "D-00000000-AAAAAAAAAAAAAAAAAAAAAAAA-0001").startswith(b"-NOJOB")
    assert wire.call("CANCEL", "nonsense").startswith(b"-BADID")
    assert wire.call("CANCEL").startswith(b"-ERR wrong number of arguments")
