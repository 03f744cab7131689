"""How bodies, results and progress become bytes or text and back: bytes stay bytes, str
is UTF-8, anything else is compact JSON (:class:`Encoding` says which, and stores keep it
beside the bytes)."""

from __future__ import annotations

import enum
import functools
import json
import json.encoder
from collections.abc import Callable
from typing import Any, Final

from .errors import BodyNotSerializable, BodyTooLarge, ProgressTooLarge

#: Limit on a job's encoded progress (``progress(job, value)``): a number or a small object.
MAX_PROGRESS_BYTES: Final = 4096


class Encoding(enum.IntEnum):
    """How a body or result was turned into bytes."""

    BYTES = 0
    TEXT = 1
    JSON = 2


def _json_text_maker() -> Callable[[object], str]:
    """``json.dumps(value, separators=(",", ":"), allow_nan=False)`` without the
    ``JSONEncoder`` that call builds, checks and walks through each time: the C encoder it
    ends in, called directly (with fresh markers, its circular-reference check), so the
    text and the errors are the same. About 12,700 fewer instructions per JSON body of a
    one-by-one add (callgrind, CPython 3.11); ``json.dumps`` itself where the C encoder is
    missing or spells a sample otherwise."""
    dumps = functools.partial(json.dumps, separators=(",", ":"), allow_nan=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython always has _json
        return dumps
    default = json.JSONEncoder().default  # its TypeError for what JSON cannot carry
    ascii_text = json.encoder.encode_basestring_ascii

    def json_text(value: object) -> str:
        # Arguments as JSONEncoder.iterencode passes them: markers, default, encoder,
        # indent, key and item separators, sort_keys, skipkeys, allow_nan.
        encode = make({}, default, ascii_text, None, ":", ",", False, False, False)
        return "".join(encode(value, 0))

    sample = {"a": [1, 2.5, None, True, "\u00e9"]}
    try:  # an interpreter whose C encoder takes other arguments gets json.dumps
        same = json_text(sample) == dumps(sample)
    except Exception:  # pragma: no cover - see above
        same = False
    return json_text if same else dumps


#: A value as the JSON text of a body or result (see :func:`_json_text_maker`).
_json_text: Final = _json_text_maker()


#: What a body or result may be as bytes (a tuple: ``bytes | bytearray | memoryview`` in
#: the call would build a union each time).
_BINARY: Final = (bytes, bytearray, memoryview)


def encode_value(value: object, limit: int) -> tuple[bytes, Encoding]:
    """Encode a body or result: bytes stay bytes, str is UTF-8, anything else is JSON.

    Raises :class:`BodyTooLarge` over ``limit`` bytes, checked before copying when the size
    is known, so a huge body is refused without doubling memory.
    """
    if isinstance(value, _BINARY):
        size = value.nbytes if isinstance(value, memoryview) else len(value)
        if size > limit:
            raise BodyTooLarge(size, limit)
        return bytes(value), Encoding.BYTES
    if isinstance(value, str):
        if len(value) > limit:  # each character is at least one byte
            raise BodyTooLarge(len(value), limit)
        try:
            data, encoding = value.encode(), Encoding.TEXT
        except UnicodeEncodeError as exc:
            raise BodyNotSerializable(str, str(exc)) from None
    else:
        try:
            data = _json_text(value).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            raise BodyNotSerializable(type(value), str(exc)) from None
        encoding = Encoding.JSON
    if len(data) > limit:
        raise BodyTooLarge(len(data), limit)
    return data, encoding


def encode_progress(value: object) -> str:
    """A progress value as the JSON text stores keep; raises :class:`BodyNotSerializable`
    for what JSON cannot carry and :class:`ProgressTooLarge` over :data:`MAX_PROGRESS_BYTES`."""
    try:
        text = _json_text(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise BodyNotSerializable(type(value), str(exc)) from None
    size = len(text.encode())
    if size > MAX_PROGRESS_BYTES:
        raise ProgressTooLarge(size, MAX_PROGRESS_BYTES)
    return text


def decode_progress(text: str | bytes | None) -> Any:
    """Invert :func:`encode_progress` (``None``: no progress reported)."""
    return None if text is None else json.loads(text)


def decode_value(data: bytes | None, encoding: Encoding) -> Any:
    """Invert :func:`encode_value`."""
    if data is None:
        return None
    if encoding == Encoding.TEXT:
        return data.decode()
    if encoding == Encoding.JSON:
        return json.loads(data)
    return data
