"""Request bodies keep every decimal's exact text, whichever way they are parsed."""
from __future__ import annotations

import json

import orjson
import pytest

from app.store import jsonio


def _texts(value):
    """Every number of a parsed body as the text it will be written back with."""
    return orjson.loads(jsonio.dumps(value))


@pytest.mark.parametrize("raw", [
    b'{"a": 1.50, "b": [2.50, 3.5, 2.50], "c": {"d": 1e5, "e": 7}}',
    b'{"id": "057aa36e-b892-9964-75b9-ffb46b097e34", "v": 405.70}',
    b'{"text": "x: 1.50]", "v": 1.50}',  # a string that looks like a number value: the same float twice
    b'{"v": [405.70, 405.7]}',  # one value written two ways
    b'{"v": -0.00, "w": 0.00}',
    b'[1.10, {"x": 2.20}]',
])
def test_decimals_keep_their_text(raw):
    parsed = jsonio.loads(raw)
    assert jsonio.dumps(parsed) == orjson.dumps(json.loads(raw, parse_float=jsonio._number), default=jsonio._default)
    assert parsed == json.loads(raw)  # the same values as plain floats


def test_exact_decimals_are_written_back_verbatim():
    raw = b'{"resourceType": "Claim", "total": {"value": 405.70}, "item": [{"net": {"value": 2269.60}}]}'
    out = jsonio.dumps(jsonio.loads(raw))
    assert b'"value":405.70' in out and b'"value":2269.60' in out


def test_ids_that_look_like_exponents_take_the_fast_path():
    raw = b'{"id": "0696ac49-3128-87d3-7344-04510aa4f324", "ref": "urn:uuid:-31e4-5e765", "n": 2.5}'
    parsed = jsonio.loads(raw)
    assert type(parsed["n"]) is float
    assert jsonio._exact_texts(raw)[0] == {}
