"""RESP2 for the Disque-protocol server: requests in (hiredis' Reader), replies out.

Requests come as RESP arrays of bulk strings (what every client library sends) or as inline
commands (``PING\\r\\n`` typed over telnet), as Redis 3 and therefore Disque accept them.
A request over a limit is refused from its header, as Redis refuses it (see
:class:`RequestParser`). Replies are built as bytes at once: a handler returns the encoded
reply.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

import hiredis

from ..disque import reply_for

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


def refusal(exc: BaseException) -> bytes:
    """The Disque error reply for an error raised by the store or the client."""
    return error(reply_for(exc))


def integer(value: int) -> bytes:
    """An integer reply."""
    if 0 <= value < _SMALL:
        return _INTEGERS[value]
    return b":%d\r\n" % value


#: The integer replies most sent (ACKJOB's counts), made once.
_SMALL: Final = 64
_INTEGERS: Final = [b":%d\r\n" % value for value in range(_SMALL)]


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


# One character loop with Redis' own branches: kept in that shape to stay byte-for-byte
# compatible with sdssplitargs, whose structure it follows.
def split_inline(line: bytes) -> list[bytes]:  # noqa: C901, PLR0912
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


class _Framer:
    """Follows where a stream of requests is without building anything, so that a header
    that declares too much is refused before hiredis acts on it.

    hiredis makes an array's list as soon as it reads ``*<n>`` (a 2^31-slot list for
    ``*2147483648``, seconds to free) and buffers a bulk string until all of it came; both
    must be refused from the header, as Redis does. The framer accepts what requests are
    (an array of bulk strings), so it is stricter than hiredis, never laxer: whatever it
    refuses would have been refused once parsed.
    """

    __slots__ = ("left", "line", "max_bulk", "skip")

    def __init__(self, max_bulk: int) -> None:
        self.max_bulk = max_bulk
        #: Bulk strings the current request has still to send (0: between requests).
        self.left = 0
        #: Bytes of the current bulk string (and its CRLF) still to come.
        self.skip = 0
        #: A header line begun in an earlier read.
        self.line = b""

    def follow(self, data: bytes) -> tuple[int, str] | None:
        """Follow ``data``; the offset in it of the first header to refuse (negative when
        it began in an earlier read) and why, or ``None``."""
        at, size = 0, len(data)
        if self.skip:
            if self.skip >= size:
                self.skip -= size
                return None
            at, self.skip = self.skip, 0
        while at < size:
            begun = at - len(self.line)
            window = self.line + data[at : at + _MAX_HEADER_LINE - len(self.line)]
            end = window.find(b"\r\n")
            if end < 0 and len(window) < _MAX_HEADER_LINE:
                self.line = window  # the header goes on in the next read
                return None
            self.line = b""
            kind = window[0]
            number = _header_number(window[1:end]) if end > 0 else None
            at = begun + end + 2
            if self.left == 0:
                if kind != 0x2A:  # "*"
                    return begun, f"expected '*', got '{chr(kind)}'"
                if number is None or not -1 <= number <= MAX_ARGUMENTS:
                    return begun, "invalid multibulk length"
                self.left = max(number, 0)
                continue
            if kind != 0x24:  # "$": a request is an array of bulk strings, nothing nested
                return begun, f"expected '$', got '{chr(kind)}'"
            if number is None or not 0 <= number <= self.max_bulk:
                return begun, "invalid bulk length"
            self.left -= 1
            at += number + 2
            if at > size:
                self.skip = at - size
        return None


#: The longest header line that can be valid: a type byte, a sign, 19 digits, CRLF.
_MAX_HEADER_LINE: Final = 23
_HEADER_NUMBER: Final = re.compile(rb"-?[1-9][0-9]{0,18}|0")


def _header_number(text: bytes) -> int | None:
    """A header's number as hiredis (and Redis' ``string2ll``) reads it, strictly."""
    return int(text) if _HEADER_NUMBER.fullmatch(text) else None


#: A header with this many digits (an array of 10,000 elements or more at any depth, a
#: bulk string of 10,000 bytes or more) is followed by the framer before hiredis sees it.
_HEADER_DIGITS: Final = 5
#: Bytes of requests fed to hiredis while no request ended before the framer follows them
#: (then only their framing is kept, not the bytes).
_MAX_KEPT: Final = 256 * 1024


#: Every digit as "0", every other byte as it is (see :meth:`RequestParser._long_header`).
_DIGITS_AS_ZERO: Final = bytes.maketrans(b"123456789", b"000000000")


def _long_header_needle(max_bulk: int) -> bytes:
    """What :meth:`RequestParser._long_header` looks for, once the digits are zeros."""
    return b"0" * min(_HEADER_DIGITS, len(str(max_bulk))) + b"\r\n"


class RequestParser:
    """Turns the bytes of one connection into commands (lists of byte strings).

    Arrays go through hiredis' Reader. Inline commands are split here; they are only
    recognised where no array is half-read, which is how Redis decides too (on the first
    byte of each request).

    hiredis acts on a header as soon as it reads it, so a header that declares too much
    (an array over :data:`MAX_ARGUMENTS` elements at any depth, a bulk string over
    ``max_argument_bytes``) must never reach it. One search per read
    looks for the digits such a header needs (:meth:`_long_header`); a read without them
    goes to hiredis as it is: that is the hot path. A read with them is followed by the
    :class:`_Framer` first: a header to refuse is refused before hiredis sees it, the
    requests before it still run. The framer's state is rebuilt only when needed, from the
    bytes fed since the last read that ended between two requests (at most
    :data:`_MAX_KEPT` of them; past that the framer follows them and keeps only where they
    end). Inside a long bulk string the framer knows how many bytes are body, and those are
    fed without a search.
    """

    def __init__(self, max_argument_bytes: int = DEFAULT_MAX_ARGUMENT_BYTES) -> None:
        self._reader = hiredis.Reader()
        self._inline = bytearray()
        self._max_bulk = max_argument_bytes
        self._needle = _long_header_needle(max_argument_bytes)
        #: A header split over two reads has the digits searched for and its CRLF within
        #: this many bytes of the split.
        self._window = _HEADER_DIGITS + 2
        #: Whether the next byte starts a request (no array is half-read).
        self._between = True
        #: The end of the last read, while it ended inside a request.
        self._tail = b""
        #: The framing where :attr:`_kept` starts (``None``: between two requests)...
        self._framer: _Framer | None = None
        #: ...and the reads fed to hiredis since.
        self._kept: list[bytes] = []
        self._kept_bytes = 0
        #: The first framing error met; nothing is parsed after it.
        self.error: ProtocolError | None = None

    def feed(self, data: bytes) -> list[list[bytes]]:
        """Parse ``data``; return the complete commands it finished, in order.

        A malformed or oversized request sets :attr:`error` (a :class:`ProtocolError`):
        the commands before it still run, as with Disque, then the connection is closed.
        What the parser buffered is released then.
        """
        commands: list[list[bytes]] = []
        if self.error is None and data:
            try:
                if not self._between:
                    self._feed_arrays(data, commands)
                elif self._inline or data[0] != 0x2A:  # not "*"
                    self._feed_inline(data, commands)
                elif data.translate(_DIGITS_AS_ZERO).find(self._needle) < 0:
                    # The hot path: what client libraries send, arrays of short strings,
                    # read from the start of a request (nothing kept, nothing followed).
                    # (Not _long_header(data): its expression inline, a call less per read.)
                    self._reader.feed(data)
                    self._between = False
                    self._drain(commands, within_read=True)
                    if not self._between:  # the read ended inside a request
                        self._kept = [data]
                        self._kept_bytes = len(data)
                        self._keep_tail(data)
                else:
                    self._feed_arrays(data, commands)
            except ProtocolError as exc:
                self.error = exc
                self._release()
        return commands

    def _long_header(self, data: bytes) -> bool:
        """Whether a read holds what may end a header the framer must see first: a line
        end after as many digits as a header needs to declare too much (or a long bulk,
        whose body the framer then skips without a search).

        hiredis acts on a header line once its CRLF came, so looking at line ends is
        enough, whatever the header's type (RESP3 sets and pushes make lists too) and
        whatever sits before it (hiredis does not check the CRLF after a bulk). The digits
        are made one byte (``translate``), then the digits and CRLF are one substring
        search: both run in C over the read: a quarter of the instructions of a regular
        expression that looks behind each line end.
        """
        # find, not ``in``: bytes' ``in`` first tries its operand as an int, and the
        # TypeError it makes and drops costs more than the search.
        return data.translate(_DIGITS_AS_ZERO).find(self._needle) >= 0

    def _release(self) -> None:
        """Forget what the refused request made us hold."""
        self._reader = hiredis.Reader()
        self._inline = bytearray()
        self._kept = []
        self._kept_bytes = 0
        self._framer = None
        self._tail = b""

    def _feed_inline(self, data: bytes, commands: list[list[bytes]]) -> None:
        view = memoryview(data)
        while view:
            if self._between and not self._inline and view[0] == 0x2A:
                # An array: it and whatever follows go to hiredis; a later inline command
                # in the same read is refused (no client mixes them).
                self._feed_arrays(data if len(view) == len(data) else bytes(view), commands)
                return
            end = bytes(view[: MAX_INLINE_BYTES + 1]).find(b"\n")
            if end < 0:
                self._inline += view
                if len(self._inline) > MAX_INLINE_BYTES:
                    raise ProtocolError("too big inline request")
                return
            line = bytes(self._inline) + bytes(view[:end]) if self._inline else bytes(view[:end])
            self._inline.clear()
            view = view[end + 1 :]
            if len(line) > MAX_INLINE_BYTES:
                raise ProtocolError("too big inline request")
            args = split_inline(line)
            if args:
                commands.append(args)

    def _feed_arrays(self, data: bytes, commands: list[list[bytes]]) -> None:
        framer = self._framer
        if framer is not None and not self._kept and (framer.skip or framer.line):
            # Inside a long body (fed without a search) or a header the framer has begun.
            self._feed_followed(data, commands)
            return
        if self._long_header(data) or (
            self._tail and self._long_header(self._tail + data[: self._window])
        ):
            self._feed_followed(data, commands)
        else:
            self._feed_plain(data, commands)

    def _feed_plain(self, data: bytes, commands: list[list[bytes]]) -> None:
        """Feed ``data``, which holds no header the framer must see first.

        A client that writes without waiting fills reads that end inside a request; the
        framer would have to follow them all from the last read that did not. So after
        such a read, the next one is fed in two parts, split where its last request seems
        to start (``\\n*``): when the first part ends between two requests, only the rest
        is kept.
        """
        reader = self._reader
        split = data.rfind(b"\n*", 1) + 1 if self._kept else 0
        started_at_split = False
        if split:
            reader.feed(data, 0, split)
            self._between = False
            self._drain(commands)
            started_at_split = self._between
            reader.feed(data, split)
        else:
            reader.feed(data)
        self._between = False
        self._drain(commands)
        if self._between:
            self._tail = b""
            if self._kept or self._framer is not None:
                self._kept = []
                self._kept_bytes = 0
                self._framer = None
            return
        self._keep_tail(data)
        if started_at_split:
            self._kept = [data[split:]]
            self._kept_bytes = len(data) - split
            self._framer = None
            return
        self._kept.append(data)
        self._kept_bytes += len(data)
        if self._kept_bytes > _MAX_KEPT:
            self._follow_kept()

    def _keep_tail(self, data: bytes) -> None:
        """Keep the last bytes read (reads may be shorter than a header)."""
        window = self._window
        self._tail = data[-window:] if len(data) >= window else (self._tail + data)[-window:]

    def _follow_kept(self) -> _Framer:
        """The framer, past every byte fed to hiredis; the kept reads are let go."""
        framer = self._framer or _Framer(self._max_bulk)
        for data in self._kept:
            refused = framer.follow(data)
            if refused is not None:  # hiredis has it, but has not finished it: refuse now
                raise ProtocolError(refused[1])
        self._kept = []
        self._kept_bytes = 0
        self._framer = framer
        return framer

    def _feed_followed(self, data: bytes, commands: list[list[bytes]]) -> None:
        """Feed ``data`` once the framer followed it: up to a header to refuse, if any."""
        framer = self._follow_kept()
        if framer.skip > len(data):  # all body, and more to come: nothing can end
            framer.skip -= len(data)
            self._reader.feed(data)
            return
        refused = framer.follow(data)
        if refused is not None:
            at, reason = refused
            if at > 0:
                self._reader.feed(data[:at])
                self._drain(commands)
            raise ProtocolError(reason)
        self._reader.feed(data)
        self._between = False
        self._drain(commands)
        if self._between:
            self._framer = None
            self._tail = b""
        else:
            self._keep_tail(data)

    def _drain(self, commands: list[list[bytes]], *, within_read: bool = False) -> None:
        """Append the requests hiredis finished to ``commands``; ``within_read``: each of
        them lies in the last read (their arguments hold at most its bytes)."""
        reader = self._reader
        more = True
        while more:
            try:
                request = reader.gets()
            except hiredis.ProtocolError as exc:
                raise ProtocolError(_reason(str(exc))) from None
            if request is False:
                return
            # Nothing half-read: the next bytes may start an inline command. Nothing left:
            # no other request to ask hiredis for (a gets less per read).
            more = reader.has_data()
            self._between = not more
            if request is None:  # "*-1": no command, as in Redis
                continue
            if type(request) is not list:
                raise ProtocolError(f"expected '*', got '{_kind(request)}'")
            if within_read:
                # Only bytes join (hiredis makes no other bytes-like object): the check in
                # C, a copy of at most the read's bytes, costs less than a loop over them.
                try:
                    _JOIN(request)
                except TypeError:
                    _check_arguments(request)
            else:
                _check_arguments(request)
            if request:
                commands.append(request)


_JOIN: Final = b"".join


def _check_arguments(request: list[object]) -> None:
    """Refuse a request with an argument that is not a bulk string, as Redis does."""
    for argument in request:
        if type(argument) is not bytes:
            raise ProtocolError(f"expected '$', got '{_kind(argument)}'")


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
