"""Fuzz the request parser: whatever the bytes, it returns commands or a ProtocolError."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from disquette.server.protocol import RequestParser

from .conftest import encode

_ARGS = st.lists(st.binary(max_size=40), min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.lists(_ARGS, min_size=1, max_size=5), st.data())
def test_valid_requests_split_anywhere_parse_back(
    commands: list[list[bytes]], data: st.DataObject
) -> None:
    stream = b"".join(encode(*args) for args in commands)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    parser = RequestParser()
    got: list[list[bytes]] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        got += parser.feed(stream[start:cut])
        start = cut
    assert parser.error is None
    assert got == commands


_NOISE = st.one_of(
    st.binary(max_size=200),
    st.lists(
        st.sampled_from(
            [
                b"*",
                b"$",
                b"\r\n",
                b"-1",
                b"0",
                b"3",
                b"99999999999",
                b"PING",
                b"*1\r\n",
                b"$4\r\n",
                b" ",
                b'"',
                b"\n",
                b":1",
                b"+OK",
                b"\x00",
                b"*-1\r\n",
                b"$-5\r\n",
            ]
        ),
        max_size=40,
    ).map(b"".join),
)


@settings(max_examples=1000, deadline=None)
@given(st.lists(_NOISE, min_size=1, max_size=4))
def test_garbage_never_crashes_the_parser(chunks: list[bytes]) -> None:
    parser = RequestParser(max_argument_bytes=1024)
    for chunk in chunks:
        for command in parser.feed(chunk):
            assert command
            assert all(isinstance(arg, bytes) for arg in command)
