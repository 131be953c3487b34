"""$populate over the project's own questionnaires (lbp-intake, orthopaedic-referral) for the reference patients."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from app.reasoning.populate import populate
from app.reasoning.scoring import validate_response
from tests.reasoning.test_pathways import FILES, kb  # noqa: F401  (module fixture)

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "tests" / "data" / "patients"
TODAY = date(2026, 11, 25)
ICD = "http://hl7.org/fhir/sid/icd-10"

def questionnaire(name: str) -> dict:
    return json.loads((ROOT / "questionnaires" / f"Questionnaire-{name}.json").read_text(encoding="utf-8"))


def reference(name: str) -> tuple[str, list[dict]]:
    bundle = json.loads((REFERENCE / f"{name}.json").read_text(encoding="utf-8"))
    resources = [e["resource"] for e in bundle["entry"]]
    return f"Patient/{resources[0]['id']}", resources


def answers(response: dict) -> dict[str, list]:
    out: dict[str, list] = {}

    def walk(items):
        for item in items or []:
            if "answer" in item:
                out[item["linkId"]] = item["answer"]
            walk(item.get("item"))

    walk(response.get("item"))
    return out


def run(kb, name: str, subject: str, record: list) -> dict[str, list]:  # noqa: F811
    issues: list = []
    q = questionnaire(name)
    response = populate(q, record, subject=subject, today=TODAY, terminology=kb.terminology, issues=issues)
    assert [i.text for i in issues] == []
    assert [i.text for i in validate_response(q, response, terminology=kb.terminology) if i.is_error] == []
    return answers(response)


def lbp_onset(record: list) -> str:
    lbp = next(
        r for r in record if r["resourceType"] == "Condition" and r["code"]["coding"][0]["code"].startswith("M54")
    )
    return lbp["onsetDateTime"][:10]


REFERENCE_PATIENTS = sorted(p.stem for p in REFERENCE.glob("*.json"))


@pytest.mark.parametrize("case", REFERENCE_PATIENTS)
def test_intake_onset_and_duration_from_the_lbp_condition(kb, case):  # noqa: F811
    subject, record = reference(case)
    filled = run(kb, "lbp-intake", subject, record)
    onset = lbp_onset(record)
    assert filled["onset-date"] == [{"valueDate": onset}]
    weeks = (TODAY - date.fromisoformat(onset)).days // 7
    assert filled["pain-duration-weeks"] == [{"valueInteger": weeks}]
    assert "previous-episodes" not in filled  # no earlier episode in the record: left for the patient
    assert "sick-leave" not in filled


@pytest.mark.parametrize("case", REFERENCE_PATIENTS)
def test_referral_date_diagnosis_and_duration(kb, case):  # noqa: F811
    subject, record = reference(case)
    filled = run(kb, "orthopaedic-referral", subject, record)
    assert filled["date"] == [{"valueDate": TODAY.isoformat()}]
    assert filled["diagnosis"][0]["valueString"].startswith("M54.")
    assert filled["duration"] == [{"valueString": f"Sedan {lbp_onset(record)}"}]


def test_referral_other_diseases_and_treatment_of_reference_patients(kb):  # noqa: F811
    assert run(kb, "orthopaedic-referral", *reference("acute-sign"))["other-diseases-medication"] == [
        {"valueString": "Sjukdomar: G83.4"}
    ]
    assert run(kb, "orthopaedic-referral", *reference("red-flag"))["other-diseases-medication"] == [
        {"valueString": "Sjukdomar: C50.9"}
    ]
    assert run(kb, "orthopaedic-referral", *reference("no-improvement"))["treatment-given"] == [
        {"valueString": "GB021 (2026-09-26)"}
    ]
    assert "treatment-given" not in run(kb, "orthopaedic-referral", *reference("no-flags"))


def test_referral_and_intake_from_a_fuller_record(kb):  # noqa: F811
    subject, record = reference("no-improvement")
    record = [dict(r) for r in record]
    record[0] = {
        **record[0],
        "identifier": [{"system": "urn:oid:1.2.752.129.2.1.3.1", "value": "197001019876"}],
        "name": [{"use": "official", "family": "Andersson", "given": ["Anna", "Maria"]}],
    }
    pid = subject
    record += [
        {
            "resourceType": "DiagnosticReport", "id": "mri-old", "status": "final", "subject": {"reference": pid},
            "code": {"coding": [{"system": "http://loinc.org", "code": "24968-0"}]},
            "effectiveDateTime": "2025-01-10", "conclusion": "Old report",
        },
        {
            "resourceType": "DiagnosticReport", "id": "mri", "status": "final", "subject": {"reference": pid},
            "code": {"coding": [{"system": "http://loinc.org", "code": "24968-0"}]},
            "effectiveDateTime": "2026-11-01", "conclusion": "Diskbråck L4-L5 med rotpåverkan L5 vänster.",
        },
        {
            "resourceType": "MedicationStatement", "id": "ms", "status": "active", "subject": {"reference": pid},
            "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc", "code": "M01AE01",
                                                      "display": "ibuprofen"}]},
        },
        {
            "resourceType": "Condition", "id": "old-lbp", "subject": {"reference": pid},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "resolved"}]},
            "code": {"coding": [{"system": ICD, "code": "M54.5"}]}, "onsetDateTime": "2019-05-01",
        },
    ]
    filled = run(kb, "orthopaedic-referral", subject, record)
    assert filled["personal-identity-number"] == [{"valueString": "197001019876"}]
    assert filled["name"] == [{"valueString": "Anna Maria Andersson"}]
    assert filled["mri-date"] == [{"valueDate": "2026-11-01"}]
    assert filled["mri-findings"] == [{"valueString": "Diskbråck L4-L5 med rotpåverkan L5 vänster."}]
    assert filled["other-diseases-medication"] == [{"valueString": "Läkemedel: M01AE01 ibuprofen"}]
    intake = run(kb, "lbp-intake", subject, record)
    assert intake["previous-episodes"] == [{"valueBoolean": True}]


def test_no_mri_within_a_year_leaves_the_imaging_items_empty(kb):  # noqa: F811
    subject, record = reference("no-flags")
    record = record + [
        {
            "resourceType": "DiagnosticReport", "id": "mri-old", "status": "final", "subject": {"reference": subject},
            "code": {"coding": [{"system": "http://loinc.org", "code": "24968-0"}]},
            "effectiveDateTime": "2024-01-10", "conclusion": "Old report",
        }
    ]
    filled = run(kb, "orthopaedic-referral", subject, record)
    assert "mri-date" not in filled and "mri-findings" not in filled


# -- extraction of a completed eq5d-index response gives valid R4 Observations -------------------------------


def test_eq5d_index_extraction_gives_valid_observations(kb):  # noqa: F811
    from decimal import Decimal

    from app.reasoning.scoring import extract_observations
    from app.validation import validate_resource

    q = questionnaire("eq5d-index")
    response = {
        "resourceType": "QuestionnaireResponse",
        "id": "eq",
        "questionnaire": q["url"],
        "status": "completed",
        "subject": {"reference": "Patient/p1"},
        "authored": "2026-11-20T10:00:00+01:00",
        "item": [
            {"linkId": "eq5d-version", "answer": [{"valueCoding": {
                "system": "https://lbp-pathway.org/fhir/CodeSystem/lbp-eq5d-version", "code": "eq-5d-5l"}}]},
            {"linkId": "eq5d-value-set", "answer": [{"valueString": "Sweden"}]},
            {"linkId": "eq5d-index", "answer": [{"valueDecimal": 0.734}]},
            {"linkId": "eq-vas", "answer": [{"valueInteger": 70}]},
        ],
    }
    assert [i.text for i in validate_response(q, response, terminology=kb.terminology) if i.is_error] == []
    observations = extract_observations(
        q, response, terminology=kb.terminology, response_reference="QuestionnaireResponse/eq"
    )
    by_code = {o["code"]["coding"][0]["code"]: o for o in observations}
    assert set(by_code) == {"eq5d-index", "eq-vas"}
    index = by_code["eq5d-index"]
    assert "valueDecimal" not in index
    assert Decimal(str(index["valueQuantity"]["value"])) == Decimal("0.734")
    assert by_code["eq-vas"]["valueInteger"] == 70
    for observation in observations:
        body = json.loads(json.dumps(observation, default=float))
        assert [i.text for i in validate_resource(body) if i.is_error] == []
