"""RESP2 for the Disque-protocol server: requests in (hiredis' Reader), replies out.

Requests come as RESP arrays of bulk strings (what every client library sends) or as inline
commands (``PING\\r\\n`` typed over telnet), as Redis 3 and therefore Disque accept them.
Replies are built as bytes at once: a handler returns the encoded reply.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import hiredis

#: Disque's (Redis 3's) limits: a request array holds at most this many arguments...
MAX_ARGUMENTS: Final = 1024 * 1024
#: ...an inline command line is at most this long.
MAX_INLINE_BYTES: Final = 64 * 1024
#: Default limit on one argument (Disque's is 512 MiB; a job body rarely needs more than this).
DEFAULT_MAX_ARGUMENT_BYTES: Final = 64 * 1024 * 1024

OK: Final = b"+OK\r\n"
PONG: Final = b"+PONG\r\n"
NULL_BULK: Final = b"$-1\r\n"
NULL_ARRAY: Final = b"*-1\r\n"
EMPTY_ARRAY: Final = b"*0\r\n"
ZERO: Final = b":0\r\n"
SYNTAX_ERROR: Final = b"-ERR syntax error\r\n"


class ProtocolError(Exception):
    """A request that cannot be framed: the client gets ``-ERR Protocol error: ...`` and the
    connection is closed, as Disque does."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)

    @property
    def reply(self) -> bytes:
        """The error reply sent before closing."""
        return error(f"ERR Protocol error: {self.reason}")


def status(text: str | bytes) -> bytes:
    """A status reply (``+text``); the text must not contain CR or LF."""
    data = text.encode() if isinstance(text, str) else text
    return b"+" + data + b"\r\n"


def error(text: str) -> bytes:
    """An error reply; ``text`` starts with its prefix (``ERR``, ``BADID``, ``NOJOB`` ...)."""
    return b"-" + text.replace("\r", " ").replace("\n", " ").encode() + b"\r\n"


def integer(value: int) -> bytes:
    """An integer reply."""
    return b":%d\r\n" % value


def bulk(data: bytes | str | None) -> bytes:
    """A bulk string reply, or the null bulk for ``None``."""
    if data is None:
        return NULL_BULK
    if isinstance(data, str):
        data = data.encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def array(items: Iterable[bytes] | None) -> bytes:
    """An array of already encoded replies, or the null array for ``None``."""
    if items is None:
        return NULL_ARRAY
    parts = list(items)
    return b"*%d\r\n" % len(parts) + b"".join(parts)


def split_inline(line: bytes) -> list[bytes]:
    """Split an inline command as Redis' ``sdssplitargs`` does: blanks separate arguments,
    double quotes (with ``\\n``, ``\\xHH`` ... escapes) and single quotes group them."""
    args: list[bytes] = []
    i, size = 0, len(line)
    while True:
        while i < size and line[i] in b" \t\n\r\x0b\x0c":
            i += 1
        if i >= size:
            return args
        current = bytearray()
        quote = 0
        while True:
            if i >= size:
                if quote:
                    raise ProtocolError("unbalanced quotes in request")
                break
            char = line[i]
            if quote == 0x22:  # "
                if char == 0x5C and i + 3 < size and line[i + 1] == 0x78:  # \xHH
                    try:
                        current.append(int(line[i + 2 : i + 4], 16))
                        i += 4
                        continue
                    except ValueError:
                        pass
                if char == 0x5C and i + 1 < size:
                    escaped = line[i + 1]
                    current.append(
                        {0x6E: 10, 0x72: 13, 0x74: 9, 0x62: 8, 0x61: 7}.get(escaped, escaped)
                    )
                    i += 2
                    continue
                if char == 0x22:
                    if i + 1 < size and line[i + 1] not in b" \t\n\r\x0b\x0c":
                        raise ProtocolError("unbalanced quotes in request")
                    i += 1
                    break
                current.append(char)
            elif quote == 0x27:  # '
                if char == 0x5C and i + 1 < size and line[i + 1] == 0x27:
                    current.append(0x27)
                    i += 2
                    continue
                if char == 0x27:
                    if i + 1 < size and line[i + 1] not in b" \t\n\r\x0b\x0c":
                        raise ProtocolError("unbalanced quotes in request")
                    i += 1
                    break
                current.append(char)
            elif char in b" \t\n\r\x0b\x0c":
                break
            elif char in (0x22, 0x27) and not current:
                quote = char
            else:
                current.append(char)
            i += 1
        args.append(bytes(current))


class RequestParser:
    """Turns the bytes of one connection into commands (lists of byte strings).

    Arrays go through hiredis' Reader. Inline commands are split here; they are only
    recognised where no array is half-read, which is how Redis decides too (on the first
    byte of each request).
    """

    def __init__(self, max_argument_bytes: int = DEFAULT_MAX_ARGUMENT_BYTES) -> None:
        self._reader = hiredis.Reader()
        self._inline = bytearray()
        self._in_array = False
        #: Bytes fed to the reader since it last returned a whole request: bounds what a
        #: client can make us buffer for one request.
        self._pending = 0
        self._max_request = max_argument_bytes + 64 * 1024
        #: The first framing error met; nothing is parsed after it.
        self.error: ProtocolError | None = None

    def feed(self, data: bytes) -> list[list[bytes]]:
        """Parse ``data``; return the complete commands it finished, in order.

        A malformed or oversized request sets :attr:`error` (a :class:`ProtocolError`):
        the commands before it still run, as with Disque, then the connection is closed.
        """
        commands: list[list[bytes]] = []
        if self.error is None:
            try:
                if data and not self._inline and (self._in_array or data[0] == 0x2A):
                    # What every client library sends: arrays only, straight to hiredis.
                    self._reader.feed(data)
                    self._pending += len(data)
                    self._in_array = True
                    self._drain(commands)
                else:
                    self._feed(data, commands)
            except ProtocolError as exc:
                self.error = exc
        return commands

    def _feed(self, data: bytes, commands: list[list[bytes]]) -> list[list[bytes]]:
        view = memoryview(data)
        while view:
            if not self._in_array and not self._inline and view[0] != 0x2A:  # not "*"
                end = bytes(view[: MAX_INLINE_BYTES + 1]).find(b"\n")
                if end < 0:
                    if len(view) > MAX_INLINE_BYTES:
                        raise ProtocolError("too big inline request")
                    self._inline += view
                    return commands
                line, view = bytes(view[:end]), view[end + 1 :]
                args = split_inline(line)
                if args:
                    commands.append(args)
                continue
            if self._inline:
                end = bytes(view[: MAX_INLINE_BYTES + 1]).find(b"\n")
                if end < 0:
                    self._inline += view
                    if len(self._inline) > MAX_INLINE_BYTES:
                        raise ProtocolError("too big inline request")
                    return commands
                line = bytes(self._inline) + bytes(view[:end])
                self._inline.clear()
                view = view[end + 1 :]
                if len(line) > MAX_INLINE_BYTES:
                    raise ProtocolError("too big inline request")
                args = split_inline(line)
                if args:
                    commands.append(args)
                continue
            # An array: hand everything to hiredis, which also parses whatever follows; a
            # later inline command in the same packet is refused (no client mixes them).
            self._reader.feed(data if len(view) == len(data) else bytes(view))
            self._pending += len(view)
            view = view[len(view) :]
            self._in_array = True
            self._drain(commands)
        return commands

    def _drain(self, commands: list[list[bytes]]) -> None:
        reader = self._reader
        while True:
            try:
                request = reader.gets()
            except hiredis.ProtocolError as exc:
                raise ProtocolError(_reason(str(exc))) from None
            if request is False:
                if self._pending > self._max_request:
                    raise ProtocolError("invalid bulk length")
                return
            # No argument is longer than the bytes fed since the reader last ended a request
            # with nothing left.
            long_possible = self._pending > self._max_request
            if not reader.has_data():
                # Nothing half-read: the next bytes may start an inline command.
                self._in_array = False
                self._pending = 0
            if request is None:  # "*-1": no command, as in Redis
                continue
            if type(request) is not list:
                raise ProtocolError(f"expected '*', got '{_kind(request)}'")
            if len(request) > MAX_ARGUMENTS:
                raise ProtocolError("invalid multibulk length")
            for argument in request:
                if type(argument) is not bytes:
                    raise ProtocolError(f"expected '$', got '{_kind(argument)}'")
                if long_possible and len(argument) > self._max_request:
                    raise ProtocolError("invalid bulk length")
            if request:
                commands.append(request)


def _kind(value: object) -> str:
    if isinstance(value, bytes):
        return "$"
    if isinstance(value, int):
        return ":"
    if isinstance(value, list):
        return "*"
    return "+"


def _reason(message: str) -> str:
    if "multi-bulk" in message.lower():
        return "invalid multibulk length"
    if "bulk" in message.lower():
        return "invalid bulk length"
    return message.removeprefix("Protocol error, ").replace('"', "'")
