"""Arguments as Disque reads them (job ids: :func:`disquette.disque.parse_ids`), and
:class:`CommandError`, a command's refusal."""

from __future__ import annotations

from collections.abc import Collection

from ...errors import InvalidQueueName
from ...job import check_queue_name
from ..protocol import SYNTAX_ERROR


class CommandError(Exception):
    """A command refused: ``reply`` is the error reply to send."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        super().__init__(reply.decode(errors="replace").strip())


def parse_int(value: bytes) -> int | None:
    """Redis' string2ll: an optional minus and digits, no blanks, no plus, 64 bits."""
    if not value or len(value) > 20:
        return None
    digits = value[1:] if value[:1] == b"-" else value
    if not digits.isdigit() or (digits[:1] == b"0" and len(digits) > 1):
        return None
    number = int(value)
    return number if -(2**63) <= number < 2**63 else None


def parse_timeout_ms(value: bytes) -> int:
    """A ``TIMEOUT`` argument in milliseconds; raises :class:`CommandError` if invalid."""
    number = parse_int(value)
    if number is None:
        raise CommandError(b"-ERR timeout is not an integer or out of range\r\n")
    if number < 0:
        raise CommandError(b"-ERR timeout is negative\r\n")
    return number


def parse_queue(raw: bytes) -> str | None:
    """The queue name, or ``None`` for names no store can hold (empty, control chars)."""
    try:
        return check_queue_name(raw.decode())
    except (UnicodeDecodeError, InvalidQueueName):
        return None


def parse_scan_options(
    args: list[bytes], extra: Collection[bytes]
) -> tuple[int, dict[bytes, list[bytes]]]:
    """JSCAN/QSCAN: an optional cursor, then options (valued ones in ``extra``)."""
    cursor: int | None = None
    options: dict[bytes, list[bytes]] = {}
    j = 1
    while j < len(args):
        option = args[j].lower()
        if option == b"busyloop":
            options[option] = []
        elif option == b"count" or option in extra:
            if j + 1 >= len(args):
                raise CommandError(SYNTAX_ERROR)
            options.setdefault(option, []).append(args[j + 1])
            j += 1
        elif cursor is None and args[j].isdigit():
            cursor = int(args[j])
        elif cursor is None:
            raise CommandError(b"-ERR invalid cursor or option name\r\n")
        else:
            raise CommandError(SYNTAX_ERROR)
        j += 1
    for value in options.get(b"count", []):
        if parse_int(value) is None:
            raise CommandError(b"-ERR value is not an integer or out of range\r\n")
    return cursor or 0, options
