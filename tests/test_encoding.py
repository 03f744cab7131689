"""Bodies and results as bytes: JSON values spelled exactly as ``json.dumps`` spells them
(encode_value calls the C encoder directly, issue 12), and refused alike."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from disquette.errors import BodyNotSerializable
from disquette.job import Encoding, decode_value, encode_value

VALUES: list[Any] = [
    0.0,
    -1.5e-300,
    1765012345.123456,
    7,
    True,
    None,
    [],
    {},
    [1, "é", {"a": [None, False]}, "\u2603\U0001f600"],
    {"x": 'quote " and \\ backslash', "y": 2.5, "z": {"nested": [1, [2, [3]]]}},
    {1: "int key", 2.5: "float key", None: "null key", False: "bool key"},
    (1, 2),
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_a_json_body_is_spelled_as_json_dumps_spells_it(value: Any) -> None:
    data, encoding = encode_value(value, 1 << 20)
    assert encoding is Encoding.JSON
    assert data == json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
    assert decode_value(data, encoding) == json.loads(data)


def _circular() -> list[Any]:
    value: list[Any] = []
    value.append(value)
    return value


@pytest.mark.parametrize(
    "value",
    [math.nan, -math.inf, {"a": object()}, {(1, 2): "tuple key"}, _circular(), {"s": {1, 2}}],
    ids=["nan", "-inf", "object", "tuple key", "circular", "set"],
)
def test_what_json_refuses_is_refused_with_its_message(value: Any) -> None:
    with pytest.raises((TypeError, ValueError)) as refused:
        json.dumps(value, separators=(",", ":"), allow_nan=False)
    with pytest.raises(BodyNotSerializable) as error:
        encode_value(value, 1 << 20)
    assert str(refused.value) in str(error.value)


def test_a_refused_body_leaves_the_next_one_unharmed() -> None:
    # The circular-reference markers are fresh per body: a refusal midway through a list
    # must not make the same list refused as circular later.
    value: list[Any] = [1, object()]
    with pytest.raises(BodyNotSerializable):
        encode_value(value, 1 << 20)
    value[1] = 2
    assert encode_value(value, 1 << 20) == (b"[1,2]", Encoding.JSON)
