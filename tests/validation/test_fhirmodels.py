"""The fhir.resources façade (app/fhirmodels.py)."""
from __future__ import annotations

import pytest

from app import fhirmodels


def test_model_class_of_known_and_unknown_types():
    assert fhirmodels.model_class("Patient").__name__ == "Patient"
    assert fhirmodels.model_class("Coding").__name__ == "Coding"
    assert fhirmodels.model_class("MedicinalProduct") is None  # R4 only: no R4B model
    assert fhirmodels.model_class("NoSuchThing") is None
    assert fhirmodels.model_class("") is None
    assert fhirmodels.model_class("patient") is None


def test_model_errors_give_json_locations(patient):
    assert fhirmodels.model_errors(patient) == []
    patient["name"][0]["family"] = 3
    (error,) = fhirmodels.model_errors(patient)
    assert error.location == ("name", 0, "family")
    assert error.kind == "string_type"


def test_model_errors_of_an_unknown_type_are_left_to_others():
    assert fhirmodels.model_errors({"resourceType": "NoSuchThing"}) == []


def test_parse_returns_a_model_or_raises_value_error(patient):
    model = fhirmodels.parse(patient)
    assert model.id == "lbp-patient-1"
    with pytest.raises(ValueError):
        fhirmodels.parse({"resourceType": "Patient", "gender": 1})
    with pytest.raises(ValueError):
        fhirmodels.parse({"resourceType": "MedicinalProduct"})
