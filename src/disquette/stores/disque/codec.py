"""The body a Disque server keeps for a job: its bytes, or a JSON envelope.

What a Disque client reads is the job's body: a job added from Python with a ``bytes``
body and no disquette-only field is its bytes exactly, and a job added by any other Disque
client is read as ``bytes`` (no type: the worker's catch-all handler, or a queue per kind of
work, as documented by ``disquette server``). A job that needs more (a ``str`` or JSON
body, a ``type``, a non-default ``priority``, ``max_attempts`` or ``result_ttl``, headers)
travels in a JSON envelope any language can read::

    {"disquette": 1, "encoding": "text" | "json" | "bytes", "type": "send_mail",
     "priority": 100, "max_attempts": 25, "result_ttl": 3600,
     "headers": {"traceparent": "00-..."}, "body": ...}

``body`` is the JSON value itself (``json``), the string (``text``) or base64 (``bytes``);
optional keys are left out at their defaults (``headers`` when there are none: jobs from
other languages have none; an envelope whose ``headers`` are not an object of strings is
not ours, and is read as bytes). A ``bytes`` body that happens to begin with
``{"disquette":`` is always enveloped, so it is never mistaken for an envelope.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Final

from ...defaults import MAX_ATTEMPTS, PRIORITY, RESULT_TTL
from ...job import Encoding, Job

_ENVELOPE_PREFIX: Final = b'{"disquette":'
_ENCODINGS: Final = {Encoding.BYTES: "bytes", Encoding.TEXT: "text", Encoding.JSON: "json"}
_ENCODING_NAMES: Final = {name: encoding for encoding, name in _ENCODINGS.items()}


def encode_body(job: Job) -> bytes:
    """The body a Disque server keeps for ``job`` (see the module)."""
    plain = (
        job.encoding == Encoding.BYTES
        and job.type is None
        and job.priority == PRIORITY
        and job.max_attempts == MAX_ATTEMPTS
        and job.result_ttl == RESULT_TTL
        and not job.headers
        and not job.raw_body.startswith(_ENVELOPE_PREFIX)
    )
    if plain:
        return job.raw_body
    envelope: dict[str, Any] = {"disquette": 1, "encoding": _ENCODINGS[job.encoding]}
    if job.type is not None:
        envelope["type"] = job.type
    if job.priority != PRIORITY:
        envelope["priority"] = job.priority
    if job.max_attempts != MAX_ATTEMPTS:
        envelope["max_attempts"] = job.max_attempts
    if job.result_ttl != RESULT_TTL:
        envelope["result_ttl"] = job.result_ttl
    if job.headers:
        envelope["headers"] = job.headers
    if job.encoding == Encoding.JSON:
        envelope["body"] = json.loads(job.raw_body)
    elif job.encoding == Encoding.TEXT:
        envelope["body"] = job.raw_body.decode()
    else:
        envelope["body"] = base64.b64encode(job.raw_body).decode()
    return json.dumps(envelope, separators=(",", ":")).encode()


def decode_body(job: Job, data: bytes) -> Job:
    """Fill ``job``'s body and envelope fields from what the server keeps."""
    job.raw_body, job.encoding = data, Encoding.BYTES
    if not data.startswith(_ENVELOPE_PREFIX):
        return job
    try:
        envelope = json.loads(data)
        encoding = _ENCODING_NAMES[envelope["encoding"]]
        body = envelope["body"]
        if encoding == Encoding.JSON:
            raw = json.dumps(body, separators=(",", ":")).encode()
        elif encoding == Encoding.TEXT:
            raw = body.encode()
        else:
            raw = base64.b64decode(body, validate=True)
        headers = envelope.get("headers")
        if headers is not None and not _is_headers(headers):
            raise TypeError("headers are not an object of strings")
        job.type = envelope.get("type")
        job.priority = int(envelope.get("priority", PRIORITY))
        job.max_attempts = int(envelope.get("max_attempts", MAX_ATTEMPTS))
        job.result_ttl = float(envelope.get("result_ttl", RESULT_TTL))
        if headers:
            job.headers = headers
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        return job  # someone else's body that looks like ours: keep it as bytes
    job.raw_body, job.encoding = raw, encoding
    return job


def _is_headers(value: object) -> bool:
    """Whether an envelope's ``headers`` are what a job can carry: strings to strings."""
    return isinstance(value, dict) and all(
        isinstance(key, str) and isinstance(text, str) for key, text in value.items()
    )
