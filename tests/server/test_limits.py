"""Requests that declare too much are refused from their header, before anything is made.

hiredis makes an array's list as soon as it reads ``*<n>`` (2^31 slots for
``*2147483648``: seconds to free, the event loop frozen meanwhile) and buffers a bulk
string until all of it came. The parser refuses such headers before hiredis sees them, as
Redis does; the client gets ``-ERR Protocol error: ...``, then the connection is closed
once it could read it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import hiredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from disquette.server.protocol import MAX_ARGUMENTS, RequestParser

from .conftest import ServerProcess, Wire, encode

#: Headers that declare too much, and what Redis answers to each (arrays nested in a
#: request are refused for what they are, whatever their length, as Redis does).
BAD_HEADERS = [
    (b"*2147483648\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
    (b"*4294967295\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
    (b"*%d\r\n" % (MAX_ARGUMENTS + 1), b"-ERR Protocol error: invalid multibulk length\r\n"),
    (b"*1\r\n*2147483648\r\n", b"-ERR Protocol error: expected '$', got '*'\r\n"),
    (b"*2\r\n$4\r\nPING\r\n~2147483648\r\n", b"-ERR Protocol error: expected '$', got '~'\r\n"),
    (b"*1\r\n>2147483648\r\n", b"-ERR Protocol error: expected '$', got '>'\r\n"),
    (
        b"*3\r\n$6\r\nADDJOB\r\n$1\r\nq\r\n$999999999999\r\n",
        b"-ERR Protocol error: invalid bulk length\r\n",
    ),
]


def _refused(port: int, chunks: list[bytes]) -> bytes:
    """Send ``chunks`` one write each; everything the server sends before it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        for chunk in chunks:
            sock.sendall(chunk)
            time.sleep(0.01)  # separate reads
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


@pytest.mark.parametrize("url", ["memory://", "sqlite"])
def test_huge_array_headers_are_refused_before_they_freeze_the_server(
    start_server: Callable[..., ServerProcess], url: str
) -> None:
    server = start_server(None if url == "sqlite" else url)
    for header, reply in BAD_HEADERS:
        assert _refused(server.port, [encode("PING") + header]) == b"+PONG\r\n" + reply
        # Its last header split in its digits over two reads: refused all the same.
        split = len(header) - 5
        assert _refused(server.port, [header[:split], header[split:]]) == reply
    # Each of those cost the server seconds before (12 s for three); a generous bound.
    started = time.monotonic()
    assert Wire(server.port).call("PING") == b"+PONG\r\n"
    assert time.monotonic() - started < 2.0


def test_a_body_that_says_dollar_and_digits_is_still_a_body(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server(None, "--max-argument-bytes", "1024")
    wire = Wire(server.port)
    body = b"*2147483648\r\n$999999999999\r\n~99999999\r\n" * 20  # 780 bytes
    job = wire.call("ADDJOB", "q", body, "0")[1:-2]
    assert wire.call("SHOW", job).endswith(b"$%d\r\n%s\r\n" % (len(body), body))
    wire.send(encode("ADDJOB", "q", b"x" * 1025, "0"))
    assert wire.read() == b"-ERR Protocol error: invalid bulk length\r\n"
    assert wire.closed()


def test_a_refused_bulk_is_refused_at_its_header_and_not_kept(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server("memory://")
    before = server.rss
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(b"*3\r\n$6\r\nADDJOB\r\n$1\r\nq\r\n$999999999999\r\n")
    # The client goes on sending its body: 48 MiB the server must not keep.
    sender = threading.Thread(target=_send_quietly, args=(sock, b"x" * (1 << 20), 48))
    sender.start()
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    sender.join()
    sock.close()
    assert received == b"-ERR Protocol error: invalid bulk length\r\n"
    assert server.rss - before < 16 * 1024 * 1024  # was 64 MiB more, kept
    assert Wire(server.port).call("PING") == b"+PONG\r\n"


def test_a_long_inline_request_gets_its_error_before_the_close(
    start_server: Callable[..., ServerProcess],
) -> None:
    server = start_server("memory://")
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sender = threading.Thread(target=_send_quietly, args=(sock, b"A" * (1 << 20), 1))
    sender.start()
    received = b""
    while chunk := sock.recv(65536):  # was reset, error unread
        received += chunk
    sender.join()
    sock.close()
    assert received == b"-ERR Protocol error: too big inline request\r\n"


def _send_quietly(sock: socket.socket, chunk: bytes, times: int) -> None:
    """Send ``chunk`` ``times`` times, stopping once the server closes."""
    try:
        for _ in range(times):
            sock.sendall(chunk)
    except OSError:
        pass


class _Spy:
    """hiredis' Reader, recording what it is fed (to check what reaches it)."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.fed = bytearray()

    def feed(self, data: bytes, offset: int = 0, length: int = -1) -> None:
        part = data[offset:] if length < 0 else data[offset : offset + length]
        self.fed += part
        self.reader.feed(part)

    def gets(self) -> object:
        return self.reader.gets()

    def has_data(self) -> bool:
        return self.reader.has_data()


_ARGS = st.lists(st.binary(max_size=30), min_size=1, max_size=4)
#: Request bodies made of text that looks like headers (and a long run of bytes).
_BODY = st.lists(
    st.sampled_from([b"*1234567", b"$99999999", b"~12345", b"\r\n*7777777\r\n", b"y" * 6000]),
    max_size=3,
).map(b"".join)
#: A header the parser must refuse, why, and whether it is allowed after all (a long bulk
#: within the limit): with ``max_argument_bytes`` at 20,000.
_BAD = st.sampled_from(
    [
        (b"*%d\r\n" % (MAX_ARGUMENTS + 1), "invalid multibulk length", False),
        (b"*1\r\n*1048577\r\n", "expected '$', got '*'", False),
        (b"*2\r\n$1\r\na\r\n*99999\r\n", "expected '$', got '*'", False),
        (b"*1\r\n~123456\r\n", "expected '$', got '~'", False),
        (b"*1\r\n$20001\r\n", "invalid bulk length", False),
        (b"*2\r\n$1\r\na\r\n$1000000\r\n", "invalid bulk length", False),
        (b"*12345678901234567890\r\n", "invalid multibulk length", False),
        (b"*1\r\n$12000\r\n" + b"y" * 12002, "", True),
    ]
)


@settings(max_examples=500, deadline=None)
@given(
    before=st.lists(_ARGS, max_size=3),
    body=_BODY,
    bad=_BAD,
    data=st.data(),
)
def test_no_header_that_declares_too_much_reaches_hiredis(
    before: list[list[bytes]],
    body: bytes,
    bad: tuple[bytes, str, bool],
    data: st.DataObject,
) -> None:
    header, reason, allowed = bad
    # Valid requests first, one with a body that looks like headers, then the bad header.
    commands = [*before, [b"ADDJOB", b"q", body, b"0"]]
    encoded = [encode(*args) for args in commands]
    prefix = b"".join(encoded)
    stream = prefix + header + b"z" * 100
    # Reads end anywhere, and often just around the ends of requests and headers, where
    # a read ending splits what the parser follows.
    ends = [sum(map(len, encoded[: i + 1])) for i in range(len(encoded))]
    ends += [len(prefix) + i for i, char in enumerate(header) if char == 0x0A]
    near = st.sampled_from(ends).flatmap(lambda end: st.integers(end - 12, end + 2))
    anywhere = st.integers(0, len(stream))
    cuts = data.draw(st.lists(st.one_of(near, near, near, anywhere), max_size=10))
    parser = RequestParser(max_argument_bytes=20000)
    spy = _Spy()
    parser._reader = spy  # type: ignore[assignment]
    got: list[list[bytes]] = []
    start = 0
    for cut in [*sorted(c for c in cuts if 0 <= c <= len(stream)), len(stream)]:
        got += parser.feed(stream[start:cut])
        start = cut
        # Each request is parsed as soon as its last byte came, never later.
        assert len(got) >= sum(1 for end in ends[: len(commands)] if end <= cut)
    if allowed:
        assert got == [*commands, [b"y" * 12000]]
        assert parser.error is not None  # the z's that follow
        return
    assert got == commands
    assert parser.error is not None
    assert parser.error.reason == reason
    # hiredis never got the whole header line: it could not act on it.
    assert not spy.fed.startswith(prefix + header)
