"""Request bodies keep every decimal's exact text."""
from __future__ import annotations

import json
import re

import orjson
import pytest

from app.store import jsonio


def _exact(text: str) -> float:
    value = float(text)
    return value if repr(value) == text else jsonio.FHIRDecimal(text)


@pytest.mark.parametrize("raw", [
    b'{"a": 1.50, "b": [2.50, 3.5, 2.50], "c": {"d": 1e5, "e": 7}}',
    b'{"id": "057aa36e-b892-9964-75b9-ffb46b097e34", "v": 405.70}',
    b'{"text": "x: 1.50]", "v": 1.50, "w": 1.5}',
    b'{"v": [405.70, 405.7]}',
    b'{"v": -0.00, "w": 0.00, "x": 1E+2}',
    b'[1.10, {"x": 2.20}]',
])
def test_decimals_keep_their_text(raw):
    parsed = jsonio.loads(raw)
    assert jsonio.dumps(parsed) == orjson.dumps(json.loads(raw, parse_float=_exact), default=jsonio._default)
    assert parsed == json.loads(raw)  # the same values as plain floats


def test_exact_decimals_are_written_back_verbatim():
    raw = b'{"resourceType": "Claim", "total": {"value": 405.70}, "item": [{"net": {"value": 2269.60}}]}'
    parsed = jsonio.loads(raw)
    assert type(parsed["total"]["value"]) is jsonio.FHIRDecimal
    out = jsonio.dumps(parsed)
    assert b'"value":405.70' in out and b'"value":2269.60' in out


def test_numbers_a_float_writes_back_unchanged_stay_floats():
    parsed = jsonio.loads(b'{"n": 2.5, "m": [0.1, 12.75], "i": 3}')
    assert [type(v) for v in (parsed["n"], *parsed["m"], parsed["i"])] == [float, float, float, int]


@pytest.mark.parametrize("raw", [b'{"a": NaN}', b'{"a": 1e400}', b'{"a": "\xff"}', b'{"a": 1,}', b'{"a": 1} x',
                                 b"[" * 5000 + b"]" * 5000])
def test_malformed_json_is_a_decode_error(raw):
    with pytest.raises(orjson.JSONDecodeError):
        jsonio.loads(raw)


def test_integers_beyond_64_bits_are_written_back_with_their_digits():
    raw = b'{"a": 123456789012345678901234567890, "b": [-98765432109876543210987], "c": 1.50}'
    expected = b'{"a":123456789012345678901234567890,"b":[-98765432109876543210987],"c":1.50}'
    assert jsonio.dumps(jsonio.loads(raw)) == expected


def test_a_stored_decimal_beyond_64_bits_keeps_its_digits(fhir):
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "count"},
           "valueQuantity": {"value": 123456789012345678901234567890}}
    created = fhir.post("Observation", obs)
    assert created.status_code == 201, created.get_json()
    read = fhir.get(f"Observation/{created.get_json()['id']}")
    assert re.search(rb'"value": ?123456789012345678901234567890}', read.data)  # PostgreSQL writes a space
