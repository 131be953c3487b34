"""Own checks: id syntax, reference syntax and the Bundle invariants bdl-1..bdl-12."""
from __future__ import annotations

import pytest

from app.validation import validate_resource
from app.validation.compiler import resource_types
from app.validation.rules import bundle_issues, id_problem, reference_problem

from .conftest import errors

LOCAL_IDS = frozenset({"clinic"})


@pytest.mark.parametrize("value", ["a", "A-1.b", "x" * 64, "0b7c6a43-2f1e-4c1b-9d7e-5a3f9c2e1d00"])
def test_valid_ids(value):
    assert id_problem(value) is None


@pytest.mark.parametrize("value", ["", "x" * 65, "a b", "a_b", "a/b", "å"])
def test_invalid_ids(value):
    assert id_problem(value) is not None


@pytest.mark.parametrize("value", [
    "Patient/123",
    "Patient/123/_history/2",
    "http://example.org/fhir/Patient/123",
    "https://example.org/fhir/Observation/o1/_history/1",
    "urn:uuid:0b7c6a43-2f1e-4c1b-9d7e-5a3f9c2e1d00",
    "urn:oid:1.2.752.129.2.1.3.1",
    "#clinic",
    "#",
])
def test_valid_references(value):
    assert reference_problem(value, resource_types(), LOCAL_IDS, conditional_ok=False) is None


@pytest.mark.parametrize("value", [
    "Patient",
    "Patient/",
    "Patient/a b",
    "Patinet/123",
    "Patient/123/_history/",
    "patient/123",
    "urn:uuid:1234",
    "urn:oid:abc",
    "urn:isbn:123",
    "#unknown",
    "Practitioner?identifier=x",
    "Nope?identifier=x",
    "http://",
])
def test_invalid_references(value):
    assert reference_problem(value, resource_types(), LOCAL_IDS, conditional_ok=False) is not None


def test_conditional_references_only_where_allowed():
    value = "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999999619"
    assert reference_problem(value, resource_types(), LOCAL_IDS, conditional_ok=True) is None
    assert "transaction" in reference_problem(value, resource_types(), LOCAL_IDS, conditional_ok=False)
    assert reference_problem("Nope?x=1", resource_types(), LOCAL_IDS, conditional_ok=True) is not None


def _entry(resource_type="Patient", **extra):
    entry = {"resource": {"resourceType": resource_type}}
    entry.update(extra)
    return entry


def _rule_keys(bundle):
    return [(i.text.rsplit("(", 1)[-1].rstrip(")"), i.expression[0]) for i in bundle_issues(bundle, "Bundle")]


def test_bdl_1_total_only_in_searchset_or_history():
    assert _rule_keys({"type": "collection", "total": 1, "entry": [_entry()]}) == [("bdl-1", "Bundle.total")]
    assert _rule_keys({"type": "searchset", "total": 1, "entry": [_entry()]}) == []


def test_bdl_2_search_only_in_searchset():
    bundle = {"type": "collection", "entry": [_entry(search={"mode": "match"})]}
    assert _rule_keys(bundle) == [("bdl-2", "Bundle.entry[0].search")]


def test_bdl_3_request_required_in_batch_transaction_history_and_only_there():
    assert _rule_keys({"type": "transaction", "entry": [_entry()]}) == [("bdl-3", "Bundle.entry[0]")]
    assert _rule_keys({"type": "batch", "entry": [_entry(request={"method": "GET", "url": "Patient"})]}) == []
    bundle = {"type": "collection", "entry": [_entry(request={"method": "POST", "url": "Patient"})]}
    assert _rule_keys(bundle) == [("bdl-3", "Bundle.entry[0].request")]


def test_bdl_4_response_required_in_responses_and_only_there():
    assert _rule_keys({"type": "transaction-response", "entry": [{}]})[0] == ("bdl-4", "Bundle.entry[0]")
    bundle = {"type": "transaction-response", "entry": [{"response": {"status": "201 Created"}}]}
    assert _rule_keys(bundle) == []
    bundle = {"type": "collection", "entry": [_entry(response={"status": "200"})]}
    assert _rule_keys(bundle) == [("bdl-4", "Bundle.entry[0].response")]


def test_bdl_5_entry_needs_resource_request_or_response():
    entry = {"fullUrl": "urn:uuid:0b7c6a43-2f1e-4c1b-9d7e-5a3f9c2e1d00"}
    assert _rule_keys({"type": "collection", "entry": [entry]}) == [("bdl-5", "Bundle.entry[0]")]


def test_bdl_7_full_urls_are_unique_except_in_history():
    url = "http://example.org/fhir/Patient/1"
    bundle = {"type": "collection", "entry": [_entry(fullUrl=url), _entry(fullUrl=url)]}
    assert _rule_keys(bundle) == [("bdl-7", "Bundle.entry[1].fullUrl")]
    versions = [{"fullUrl": url, "resource": {"resourceType": "Patient", "meta": {"versionId": v}}}
                for v in "12"]
    assert _rule_keys({"type": "collection", "entry": versions}) == []
    history = [_entry(fullUrl=url, request={"method": "PUT", "url": "Patient/1"},
                      response={"status": "200"})] * 2
    assert _rule_keys({"type": "history", "entry": history}) == []


def test_bdl_8_full_url_is_not_version_specific():
    bundle = {"type": "collection", "entry": [_entry(fullUrl="http://example.org/fhir/Patient/1/_history/2")]}
    assert _rule_keys(bundle) == [("bdl-8", "Bundle.entry[0].fullUrl")]


def test_full_url_must_be_absolute():
    issues = bundle_issues({"type": "collection", "entry": [_entry(fullUrl="Patient/1")]}, "Bundle")
    assert [(i.code, i.expression) for i in issues] == [("value", ["Bundle.entry[0].fullUrl"])]


def test_bdl_9_10_11_documents():
    bundle = {"type": "document", "entry": [_entry()]}
    assert _rule_keys(bundle) == [
        ("bdl-9", "Bundle.identifier"), ("bdl-10", "Bundle.timestamp"),
        ("bdl-11", "Bundle.entry[0].resource")]
    document = {"type": "document", "identifier": {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:1"},
                "timestamp": "2024-03-01T10:00:00Z", "entry": [_entry("Composition"), _entry()]}
    assert _rule_keys(document) == []


def test_bdl_12_messages_start_with_a_message_header():
    assert _rule_keys({"type": "message", "entry": [_entry()]}) == [("bdl-12", "Bundle.entry[0].resource")]
    assert _rule_keys({"type": "message"}) == [("bdl-12", "Bundle.entry")]
    assert _rule_keys({"type": "message", "entry": [_entry("MessageHeader")]}) == []


def test_bundle_rules_apply_to_nested_bundles(transaction):
    inner = {"resourceType": "Bundle", "type": "collection", "total": 3}
    transaction["entry"].append({"fullUrl": "urn:uuid:1e0f9a8b-7c6d-4a3b-8c2d-5e4f9a8b7c6d",
                                 "resource": inner, "request": {"method": "POST", "url": "Bundle"}})
    assert errors(validate_resource(transaction)) == [("invariant", "Bundle.entry[3].resource.total")]
