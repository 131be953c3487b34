"""Terminology index: prefix families, exact systems, $expand, $validate-code and $lookup."""

from __future__ import annotations

import pytest

from app.errors import FHIRError
from app.reasoning.terminology import ICD10, PREFIX_FAMILIES, TerminologyIndex

from .conftest import ATC, SKS, B, all_artifacts

ICDSE = "urn:oid:1.2.752.116.1.1.1.1.3"
SCT = "http://snomed.info/sct"


@pytest.fixture(scope="module")
def index() -> TerminologyIndex:
    return TerminologyIndex(r for r in all_artifacts() if r["resourceType"] in ("CodeSystem", "ValueSet"))


def params(parameters: dict) -> dict:
    return {
        p["name"]: next(v for k, v in p.items() if k.startswith("value") or k == "part")
        for p in parameters["parameter"]
    }


@pytest.mark.parametrize(
    "system, code, member",
    [
        (ICD10, "C50", True),
        (ICD10, "C50.9", True),  # a sub-code
        (ICD10, "C509", True),  # without the dot
        (ICD10, "c50.9", True),  # case-insensitive
        (ICD10, "C5", False),  # the parent category is not a member
        (ICD10, "C51", False),
        (ICD10, "Z85.3", True),
        (SKS, "DC509", True),  # SKS: leading D
        (SKS, "DZ853", True),
        (ICDSE, "C50.9", True),  # ICD-10-SE is the same family
        ("urn:oid:1.2.208.176.2.4.12", "DC509", True),  # MedCom's SKS URI
        ("http://example.org/other", "C50", False),
    ],
)
def test_icd10_family_matches_by_category_prefix(index, system, code, member):
    assert index.contains(f"{B}/ValueSet/test-cancer", system, code) is member


def test_atc_matches_by_prefix(index):
    url = f"{B}/ValueSet/test-steroids"
    assert index.contains(url, ATC, "H02AB06")
    assert index.contains(url, ATC, "h02ab")
    assert not index.contains(url, ATC, "H02A")
    assert not index.contains(url, ATC, "M01AE01")


def test_other_systems_match_exactly(index):
    url = f"{B}/ValueSet/test-lbp"
    assert index.contains(url, SCT, "279039007")
    assert not index.contains(url, SCT, "2790390071")
    assert index.contains(url, ICD10, "M54.50")


def test_codes_added_to_the_expansion_are_members(index):
    # a region widens a ValueSet by adding a code to its expansion (docs/terminology.md)
    assert index.contains(f"{B}/ValueSet/test-lbp", SCT, "161891005")


def test_is_a_filter_on_a_local_codesystem_includes_descendants(index):
    risk = f"{B}/CodeSystem/test-risk"
    assert index.contains(f"{B}/ValueSet/test-risk-high", risk, "high")
    assert not index.contains(f"{B}/ValueSet/test-risk-high", risk, "low")
    assert index.contains(f"{B}/ValueSet/test-risk-all", risk, "low")
    assert not index.contains(f"{B}/ValueSet/test-risk-all", risk, "unknown")


def test_include_of_another_valueset(index):
    url = f"{B}/ValueSet/test-imaging"
    assert index.contains(url, "http://loinc.org", "24968-0")
    assert index.contains(url, "http://loinc.org", "24972-2")
    assert not index.contains(url, "http://loinc.org", "30746-2")


def test_member_of_on_codeable_concepts_and_bare_codes(index):
    url = f"{B}/ValueSet/test-cancer"
    assert index.member_of(
        {"coding": [{"system": "x", "code": "1"}, {"system": ICD10, "code": "C50.1"}]}, url
    )
    assert not index.member_of({"text": "no coding"}, url)
    assert index.member_of("C50.1", url)
    assert index.member_of(42, url) is None


def test_sks_marker_is_dropped_only_before_a_letter():
    """ICD-10 codes start with a letter: SKS 'DD48' is D48, and a D-chapter code sent under the SKS system
    without its marker ('D48.1') is D48.1, not '481'."""
    vs = {
        "resourceType": "ValueSet",
        "url": "http://x/vs",
        "compose": {"include": [{"system": SKS, "filter": [{"property": "concept", "op": "is-a", "value": "DD48"}]}]},
    }
    index = TerminologyIndex([vs])
    for system, code in [(SKS, "DD48"), (SKS, "DD481"), (SKS, "D48.1"), (ICD10, "D48.1"), (ICDSE, "D481")]:
        assert index.contains("http://x/vs", system, code), (system, code)
    assert not index.contains("http://x/vs", SKS, "D")
    assert not index.contains("http://x/vs", SKS, "DD49")


def test_a_bare_code_in_the_sks_form_is_a_member(index):
    url = f"{B}/ValueSet/test-cancer"
    assert index.member_of("DC50.1", url)
    assert index.member_of("dc501", url)
    assert not index.member_of("DC51", url)


def test_prefix_families_can_be_replaced_by_configuration():
    families = {name: dict(systems) for name, systems in PREFIX_FAMILIES.items()}
    families["icd-10"]["http://example.org/my-icd"] = ""
    vs = {
        "resourceType": "ValueSet",
        "url": "http://x/vs",
        "compose": {"include": [{"system": ICD10, "concept": [{"code": "M54"}]}]},
    }
    assert TerminologyIndex([vs], prefix_families=families).contains(
        "http://x/vs", "http://example.org/my-icd", "M54.5"
    )
    assert not TerminologyIndex([vs]).contains("http://x/vs", "http://example.org/my-icd", "M54.5")


def test_a_valueset_with_a_missing_include_is_reported_and_refused_on_use():
    vs = {
        "resourceType": "ValueSet",
        "url": "http://x/vs",
        "compose": {"include": [{"valueSet": ["http://x/missing"]}]},
    }
    index = TerminologyIndex([vs])
    assert "http://x/vs" in index.problems
    with pytest.raises(FHIRError) as caught:
        index.contains("http://x/vs", ICD10, "M54")
    assert caught.value.code == "processing"


def test_expand_pages_and_filters(index):
    url = f"{B}/ValueSet/test-lbp"
    full = index.expand(url)
    assert full["resourceType"] == "ValueSet"
    assert full["expansion"]["total"] == 4
    assert {c["code"] for c in full["expansion"]["contains"]} == {"M54.5", "279039007", "161891005"}
    paged = index.expand(url, count=2, offset=1)
    assert paged["expansion"]["total"] == 4 and paged["expansion"]["offset"] == 1
    assert len(paged["expansion"]["contains"]) == 2
    assert {"name": "count", "valueInteger": 2} in paged["expansion"]["parameter"]
    filtered = index.expand(url, filter="back")
    assert [c["code"] for c in filtered["expansion"]["contains"]] == ["279039007", "161891005"]
    assert {"name": "filter", "valueString": "back"} in filtered["expansion"]["parameter"]


def test_expand_of_a_local_codesystem_carries_displays_and_designations(index):
    contains = index.expand(f"{B}/ValueSet/test-risk-high")["expansion"]["contains"]
    assert contains == [
        {
            "system": f"{B}/CodeSystem/test-risk",
            "code": "high",
            "display": "High risk",
            "designation": [{"language": "sv", "value": "Hög risk"}],
        }
    ]


def test_unknown_valueset_is_not_found_with_expression(index):
    with pytest.raises(FHIRError) as caught:
        index.expand("http://x/unknown")
    assert caught.value.status == 404
    assert caught.value.issues[0].expression == ["url"]


def test_validate_code(index):
    ok = params(index.validate_code(f"{B}/ValueSet/test-lbp", SCT, "279039007"))
    assert ok == {"result": True, "display": "Low back pain"}
    sub = params(index.validate_code(f"{B}/ValueSet/test-cancer", SKS, "DC509"))
    assert sub["result"] is True
    missing = params(index.validate_code(f"{B}/ValueSet/test-lbp", SCT, "1"))
    assert missing["result"] is False and "not in the ValueSet" in missing["message"]
    wrong = params(index.validate_code(f"{B}/ValueSet/test-lbp", SCT, "279039007", display="Headache"))
    assert wrong["result"] is False and "Headache" in wrong["message"]
    on_codesystem = params(index.validate_code(f"{B}/CodeSystem/test-risk", None, "high", display="Hög risk"))
    assert on_codesystem["result"] is True


def test_lookup(index):
    found = index.lookup(f"{B}/CodeSystem/test-rules", "R1")
    parts = found["parameter"]
    assert {"name": "name", "valueString": "TestRules"} in parts
    assert {"name": "display", "valueString": "Red flag found"} in parts
    designation = next(p for p in parts if p["name"] == "designation")
    assert {"name": "language", "valueCode": "sv"} in designation["part"]
    prop = next(p for p in parts if p["name"] == "property")
    assert prop["part"] == [{"name": "code", "valueCode": "source"}, {"name": "value", "valueString": "SE"}]
    child = index.lookup(f"{B}/CodeSystem/test-risk", "high")["parameter"]
    assert {
        "name": "property",
        "part": [{"name": "code", "valueCode": "parent"}, {"name": "value", "valueCode": "risk"}],
    } in child


def test_lookup_of_an_external_code_listed_in_a_valueset(index):
    parts = index.lookup(ICD10, "C50")["parameter"]
    assert {"name": "display", "valueString": "Malignant neoplasm of breast"} in parts


def test_lookup_errors(index):
    with pytest.raises(FHIRError) as unknown_system:
        index.lookup("http://x/none", "1")
    assert unknown_system.value.status == 404 and unknown_system.value.issues[0].expression == ["system"]
    with pytest.raises(FHIRError) as unknown_code:
        index.lookup(f"{B}/CodeSystem/test-rules", "R9")
    assert unknown_code.value.issues[0].expression == ["code"]
