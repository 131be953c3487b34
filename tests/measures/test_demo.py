"""The demo cohort: deterministic, in the sources' proportions, coded per variant."""
from __future__ import annotations

from collections import Counter

import pytest

from app.measures.demo import demo_cohort

SKS = "urn:oid:1.2.208.176.2.4"
KVA = "urn:oid:1.2.752.116.1.3.2.1.4"
SCT = "http://snomed.info/sct"


def _codes(resources, kind):
    return [c for r in resources if r["resourceType"] == kind for c in (r.get("code") or {}).get("coding", [])]


def test_the_same_seed_gives_the_same_patients_and_another_seed_others():
    assert demo_cohort("skane", 30, 1) == demo_cohort("skane", 30, 1)
    assert demo_cohort("skane", 30, 1) != demo_cohort("skane", 30, 2)


@pytest.fixture(scope="module")
def thousand():
    return demo_cohort("skane", 1000, 1)


def test_courses_follow_the_1000_500_50_10_1_funnel(thousand):
    patients = [r for r in thousand if r["resourceType"] == "Patient"]
    assert len(patients) == 1000
    treated = {r["subject"]["reference"] for r in thousand if r["resourceType"] == "Procedure"
               and any(c["code"] in ("GB021", "91251008") for c in r["code"].get("coding", []))}
    mri = {r["subject"]["reference"] for r in thousand if r["resourceType"] == "DiagnosticReport"
           and r["code"]["coding"][0]["code"] == "24968-0"}
    cancer = {r["subject"]["reference"] for r in thousand if r["resourceType"] == "Condition"
              and r["code"]["coding"][0]["code"].startswith("C")}
    referred = {r["subject"]["reference"] for r in thousand if r["resourceType"] == "ServiceRequest"
                and r["code"]["coding"][0]["code"] == "183545006"}
    surgery = [r for r in thousand if r["resourceType"] == "Procedure" and "category" in r]
    assert 430 <= len(treated) <= 570  # about 500 of 1000 go on to a primary-care course
    assert 30 <= len(mri & cancer) <= 70  # about 50 MRÖ for red flags
    assert 4 <= len(referred) <= 20  # about 10 to an orthopaedic specialist
    assert 0 <= len(surgery) <= 5  # 1-2 operations
    sexes = Counter(p["gender"] for p in patients)
    assert 0.55 < sexes["female"] / 1000 < 0.65  # BackUpp: 60 % women


def test_danish_variant_is_coded_with_sks_and_without_kva():
    resources = demo_cohort("midtjylland", 50, 1)
    diagnoses = _codes(resources, "Condition")
    assert diagnoses and all(c["system"] == SKS and c["code"].startswith("DM") or c["code"].startswith("DC")
                             for c in diagnoses)
    assert not any(c["system"] == KVA for c in _codes(resources, "Procedure"))
    assert any(c == {"system": SCT, "code": "91251008"} for c in _codes(resources, "Procedure"))
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    assert {p["address"][0]["country"] for p in patients} == {"DK"}
