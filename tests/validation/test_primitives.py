"""Primitive rules: base64Binary content and string length."""
from __future__ import annotations

from app.validation import validate_resource
from app.validation.invariants import rule_issues
from app.validation.primitives import MAX_STRING, base64_problem

NARRATIVE = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>x</p></div>'}


def test_base64_content():
    assert base64_problem("aGVs bG8=") is None
    assert base64_problem("aGVsbG8") is not None
    assert base64_problem("a$==") is not None
    binary = {"resourceType": "Binary", "contentType": "text/plain", "data": "aGVsbG8="}
    assert not [i for i in validate_resource(binary, check_rules=True) if i.is_error]
    binary["data"] = "not base64!"
    issues = [i for i in validate_resource(binary, check_rules=True) if i.is_error]
    assert [(i.code, i.expression) for i in issues] == [("value", ["Binary.data"])]
    rule_layer = [i for i in rule_issues(binary, "Binary") if i.is_error]
    assert [(i.code, i.expression) for i in rule_layer] == [("value", ["Binary.data"])]
    assert "base64Binary" in rule_layer[0].text


def test_strings_longer_than_one_megabyte():
    patient = {"resourceType": "Patient", "text": NARRATIVE, "name": [{"text": "x" * (MAX_STRING + 1)}]}
    issues = [i for i in validate_resource(patient, check_rules=True) if i.is_error]
    assert [(i.code, i.expression) for i in issues] == [("too-long", ["Patient.name[0].text"])]
