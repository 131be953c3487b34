"""The model layer: R4 resources through the R4B pydantic models of fhir.resources, errors as FHIRPath.

The models check what the JSON schema cannot: dates that do not exist (2023-02-30), numbers out of
the 32-bit range, and the model's own rules. They are R4B (4.3.0) models checking R4 (4.0.1)
content, so:

- Types that R4B removed or reshaped are not given to the models at all (`SCHEMA_ONLY_TYPES`); the
  R4 JSON schema and the own checks validate them alone.
- An element the R4 schema has but the R4B model lacks (`Extension.valueMeta`, the
  `modifierExtension` of `Timing.repeat`, ...) is not an error: "extra input" errors are kept only
  where the R4 schema has no such element either.
- The models' patterns run with Unicode classes, where a no-break space is whitespace; FHIR's
  patterns use XML Schema classes, so a pattern error is kept only if it holds with ASCII classes.
- Each resource is validated on its own: contained resources, Bundle entries and Parameters
  resources are taken out of their container and validated apart, with their own FHIRPath prefix,
  so one R4-only type inside a Bundle does not spoil the rest.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from app.errors import Issue
from app.fhirmodels import MODEL_RELEASE, ModelError, model_errors

from .compiler import allows

# R4 resource types that the R4B models cannot validate. R4B has no class for the medication
# definition family and the substance definitions of R4 (replaced by *Definition resources and
# SubstanceDefinition) nor for the evidence syntheses; Evidence and EvidenceVariable exist in R4B
# with a different element set (name, shortTitle, jurisdiction, characteristic, ... changed).
SCHEMA_ONLY_TYPES = frozenset({
    "EffectEvidenceSynthesis",
    "Evidence",
    "EvidenceVariable",
    "MedicinalProduct",
    "MedicinalProductAuthorization",
    "MedicinalProductContraindication",
    "MedicinalProductIndication",
    "MedicinalProductIngredient",
    "MedicinalProductInteraction",
    "MedicinalProductManufactured",
    "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect",
    "RiskEvidenceSynthesis",
    "SubstanceNucleicAcid",
    "SubstancePolymer",
    "SubstanceProtein",
    "SubstanceReferenceInformation",
    "SubstanceSourceMaterial",
    "SubstanceSpecification",
})

_REQUIRED_KINDS = frozenset({"missing", "model_field_validation.missing"})


def model_issues(resource: dict[str, Any], expr: str) -> list[Issue]:
    """The R4B model's errors for a resource and every resource inside it."""
    issues: list[Issue] = []
    for shell, where in split_resources(resource, expr):
        resource_type = shell.get("resourceType")
        if not isinstance(resource_type, str) or resource_type in SCHEMA_ONLY_TYPES:
            continue
        for error in model_errors(shell):
            if error.kind == "extra_forbidden" and allows(resource_type, error.location):
                continue
            if error.kind == "string_pattern_mismatch" and _matches_as_fhir(error):
                continue
            if error.kind in _REQUIRED_KINDS:
                code = "required"
            elif error.kind == "extra_forbidden":
                code = "structure"
            else:
                code = "value"
            issues.append(Issue("error", code, error.message, [fhirpath(where, error.location)],
                                diagnostics=f"{MODEL_RELEASE} model: {error.kind}"))
    return issues


def _matches_as_fhir(error: ModelError) -> bool:
    """FHIR's patterns mean \\s as XML Schema does (ASCII whitespace); the models use Unicode classes."""
    pattern = (error.context or {}).get("pattern")
    if not isinstance(pattern, str) or not isinstance(error.value, str):
        return False
    return re.search(pattern, error.value, re.ASCII) is not None


def fhirpath(prefix: str, location: tuple[str | int, ...]) -> str:
    """`('name', 0, '_given', 1)` under `Patient` -> `Patient.name[0].given[1]`."""
    parts = [prefix]
    for step in location:
        if isinstance(step, int):
            parts.append(f"[{step}]")
        elif step.isidentifier() or (step.startswith("_") and step[1:].isidentifier()):
            name = step[1:] if step.startswith("_") else step
            if name.endswith("__ext"):
                name = name[:-5]
            if name != "resource_type":
                parts.append("." + name)
    return "".join(parts)


def split_resources(resource: dict[str, Any], expr: str) -> Iterator[tuple[dict[str, Any], str]]:
    """The resource without the resources it holds, then each held resource (recursively)."""
    shell = dict(resource)
    held: list[tuple[Any, str]] = []
    contained = shell.pop("contained", None)
    if isinstance(contained, list):
        held.extend((item, f"{expr}.contained[{i}]") for i, item in enumerate(contained))
    resource_type = shell.get("resourceType")
    if resource_type == "Bundle" and isinstance(shell.get("entry"), list):
        entries = []
        for index, entry in enumerate(shell["entry"]):
            if isinstance(entry, dict):
                entry = dict(entry)
                if "resource" in entry:
                    held.append((entry.pop("resource"), f"{expr}.entry[{index}].resource"))
                response = entry.get("response")
                if isinstance(response, dict) and "outcome" in response:
                    entry["response"] = dict(response)
                    held.append((entry["response"].pop("outcome"), f"{expr}.entry[{index}].response.outcome"))
            entries.append(entry)
        shell["entry"] = entries
    elif resource_type == "Parameters" and isinstance(shell.get("parameter"), list):
        shell["parameter"] = _strip_parameters(shell["parameter"], f"{expr}.parameter", held)
    yield shell, expr
    for item, where in held:
        if isinstance(item, dict):
            yield from split_resources(item, where)


def _strip_parameters(parameters: list[Any], expr: str, held: list[tuple[Any, str]]) -> list[Any]:
    stripped = []
    for index, parameter in enumerate(parameters):
        if isinstance(parameter, dict):
            parameter = dict(parameter)
            if "resource" in parameter:
                held.append((parameter.pop("resource"), f"{expr}[{index}].resource"))
            if isinstance(parameter.get("part"), list):
                parameter["part"] = _strip_parameters(parameter["part"], f"{expr}[{index}].part", held)
        stripped.append(parameter)
    return stripped
