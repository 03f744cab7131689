"""The Disque-protocol server's GETJOB obeys the store's flow limits (issue 16): it claims
through the store, as every consumer does."""

from __future__ import annotations

from collections.abc import Callable

from disquette import connect

from .conftest import ServerProcess, Wire


def test_getjob_obeys_a_concurrency_limit_set_on_the_store(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server()
    with connect(server.url) as client:
        client.set_limits("q", concurrency=2)
        client.add_many(["a", "b", "c", "d"], "q")
    wire = Wire(server.port)
    reply = wire.call("GETJOB", "NOHANG", "COUNT", "10", "FROM", "q")
    assert reply.startswith(b"*2\r\n")  # two jobs, not four
    assert wire.call("GETJOB", "NOHANG", "COUNT", "10", "FROM", "q") == b"*-1\r\n"
    with connect(server.url) as client:
        assert client.qlen("q") == 2
