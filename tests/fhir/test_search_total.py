"""Search totals: exact whether the first page holds every match (no count query) or the matches run on."""
from __future__ import annotations

import pytest

LOINC = "http://loinc.org"


@pytest.fixture
def five_scores(fhir):
    patient = fhir.create({"resourceType": "Patient", "name": [{"family": "Berg"}]})["id"]
    for v in range(5):
        fhir.create({"resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{patient}"},
                     "code": {"coding": [{"system": LOINC, "code": "72514-3"}]}, "valueInteger": v})
    return patient


def _page(fhir, query):
    bundle = fhir.search(query)
    return bundle["total"], len(bundle.get("entry", []))


@pytest.mark.parametrize("paging, total, entries", [
    ("_count=10", 5, 5),  # one page, not full
    ("_count=5", 5, 5),  # one page, exactly full: counted
    ("_count=2", 5, 2),  # more pages follow: counted
    ("_count=2&_offset=4", 5, 1),  # the last page, not full
    ("_count=2&_offset=7", 5, 0),  # past the end: counted
    ("_count=0", 5, 0),
])
def test_total_is_exact_on_every_page(fhir, five_scores, paging, total, entries):
    assert _page(fhir, f"Observation?patient={five_scores}&{paging}") == (total, entries)


def test_total_of_no_match_is_zero(fhir, five_scores):
    assert _page(fhir, "Observation?patient=nobody&_count=10") == (0, 0)
    assert fhir.search(f"Observation?patient={five_scores}&_summary=count")["total"] == 5
