"""Resource validation: the official R4 JSON schema, R4B models and own checks -> OperationOutcome issues.

`validate_resource(resource)` returns `Issue`s (app.errors) whose `expression` is the FHIRPath of the
offending element (`Patient.birthDate`, `Observation.code.coding[0].system`,
`Bundle.entry[3].resource`). Layers, each reported where it applies:

1. Structure, from the official FHIR R4 (4.0.1) JSON schema (`check_schema`), compiled once per
   definition at first use into a walker (`compiler.py`, `walker.py`) that also applies the FHIR JSON
   rules the schema cannot state (objects for complex types, no empty arrays or objects, nulls only
   as array placeholders, one type per choice element) and the required elements and choice groups
   of the R4 StructureDefinitions (`core_rules.json`).
2. Own checks, always: codes of the required bindings of the R4 core (`core_rules.json`, built by
   `build_bindings.py` from the official package), resource ids, reference syntax (conditional
   references only in transaction/batch Bundles) and the Bundle invariants bdl-1..bdl-12
   (`rules.py`).
3. The R4B pydantic models of fhir.resources (`check_model`, `models.py`): dates that do not exist,
   integer ranges and the models' own rules. R4 types that R4B lacks or reshaped are left to the
   schema (`SCHEMA_ONLY_TYPES`).
4. The rule layer (`check_rules`, `invariants.py`): the constraints of the R4 core StructureDefinitions
   on the FHIRPath engine, the narrative rules, bindings of Codings and CodeableConcepts, extensions,
   Bundle references, conformance-resource and primitive rules (`docs/validation.md`). It runs at
   level `full`, in `$validate` and in `lbp validate`; `validate_resource` leaves it out unless asked.
   Its cost is about 0.27 ms CPU per Synthea resource.

Cost per resource, measured on the Synthea transaction bundles (every entry's resource, one core,
`bench/validation.py` prints the figures): schema + own checks 0.06-0.09 ms; the R4B
models alone 0.4-0.9 ms; all layers 0.45-1.1 ms. Beside them, the jsonschema package's
`Draft6Validator` on the same schema takes 1.8-3.7 ms (the compiled walk is 20-45 times faster),
and fastjsonschema needs 10-20 s to compile a single resource type. Hence the levels of
`validate_at_level`: writes use `write` (schema + own checks, a small part of the 0.5 ms per
resource that 1,000 resources/s over HTTP on two cores allows), `$validate` uses `full`, and a bulk
load may use `off`.

Conformance (`python -m app.validation.conformance`): 5,291 of the 5,306 resources of the official
R4 examples package pass with all layers. The 15 others break rules of R4 itself: ten
SearchParameters without `base` (1..*) and one whose id has 67 characters (ids have at most 64);
the `fhir` ImplementationGuide (two files) without `name` and `status` and referring to that id;
Questionnaire qs1 with items without `linkId`; Bundle-dataelements with five fullUrls twice (bdl-7).

`mode` follows $validate (https://hl7.org/fhir/R4/resource-operation-validate.html): `create` needs
no id, `update` needs one, `delete` is accepted and checks nothing here (the caller checks the
resource exists), `profile` validates against `profile`. `profile` accepts the base
StructureDefinition of the resource's own type (`http://hl7.org/fhir/StructureDefinition/Patient`,
optionally `|4.0.1`): the project defines no profiles of its own, so any other canonical gives an
error issue with code `not-supported` at `Parameters.parameter('profile')`.
"""
from __future__ import annotations

from typing import Any

from app.errors import Issue

from .compiler import compiled
from .extensions import register_extension_definitions, replace_stored_extension_definitions
from .invariants import rule_issues
from .models import SCHEMA_ONLY_TYPES, model_issues
from .walker import Walker

__all__ = [
    "MODES",
    "SCHEMA_ONLY_TYPES",
    "VALIDATION_LEVELS",
    "register_extension_definitions",
    "replace_stored_extension_definitions",
    "validate_at_level",
    "validate_resource",
    "warm_up",
]

MODES = frozenset({"create", "update", "delete", "profile"})
BASE_PROFILE_PREFIX = "http://hl7.org/fhir/StructureDefinition/"
PROFILE_EXPRESSION = "Parameters.parameter('profile')"
MODE_EXPRESSION = "Parameters.parameter('mode')"

# level -> the validate_resource flags; None: no validation at all
VALIDATION_LEVELS: dict[str, dict[str, bool] | None] = {
    "off": None,
    "write": {"check_model": False, "check_schema": True, "check_rules": False},  # the rule layer: full only
    "full": {"check_model": True, "check_schema": True, "check_rules": True},
}


def validate_resource(
    resource: dict[str, Any],
    *,
    profile: str | None = None,
    mode: str | None = None,
    check_model: bool = True,
    check_schema: bool = True,
    check_rules: bool = False,
    bundle_type: str | None = None,
) -> list[Issue]:
    """The issues of one resource; no error issue means it is valid.

    `bundle_type`: the type of the Bundle the resource is an entry of, when it is validated apart
    from that Bundle (`transaction` and `batch` allow conditional references such as
    `Practitioner?identifier=...`).
    """
    if mode is not None and mode not in MODES:
        return [Issue("error", "not-supported", f"Unknown validation mode '{mode}': one of "
                      f"{', '.join(sorted(MODES))}", [MODE_EXPRESSION])]
    if mode == "delete":
        return []
    if not isinstance(resource, dict):
        return [Issue("error", "structure", "A resource must be a JSON object", ["Resource"])]
    resource_type = resource.get("resourceType")
    schema = compiled()
    known = isinstance(resource_type, str) and resource_type in schema.resource_types
    expr = str(resource_type) if known else "Resource"
    issues: list[Issue] = []
    if profile is not None:
        issues.extend(_profile_issues(profile, resource_type))
    elif mode == "profile":
        issues.append(Issue("error", "required", "Mode 'profile' needs a profile", [PROFILE_EXPRESSION]))
    walker = Walker(schema, check_schema=check_schema, conditional_ok=bundle_type in ("transaction", "batch"))
    try:
        walker.resource(resource, expr)
    except RecursionError:
        return [Issue("error", "too-costly", "The resource is nested too deeply to validate", [expr])]
    issues.extend(walker.issues)
    if mode == "update" and known and "id" not in resource:
        issues.append(Issue("error", "required", "An update needs the resource id", [f"{expr}.id"]))
    if check_model and known:
        issues.extend(_new_places(model_issues(resource, expr), issues))
    if check_rules and known:
        try:
            found = rule_issues(resource, expr)
            # a primitive the schema or the models already rejected is not reported twice
            primitive = [i for i in found if i.code in ("value", "too-long")]
            issues.extend([i for i in found if i.code not in ("value", "too-long")])
            issues.extend(_new_places(primitive, issues))
        except RecursionError:
            issues.append(Issue("error", "too-costly", "The resource is nested too deeply to validate", [expr]))
    return _distinct(issues)


def validate_at_level(resource: dict[str, Any], level: str, **options: Any) -> list[Issue]:
    """`validate_resource` with the flags of a level of VALIDATION_LEVELS; `off` returns [] at once."""
    flags = VALIDATION_LEVELS[level]
    if flags is None:
        return []
    return validate_resource(resource, check_model=flags["check_model"], check_schema=flags["check_schema"],
                             check_rules=flags["check_rules"], **options)


def warm_up(resource_types: list[str] | None = None) -> None:
    """Load the schema and compile the given resource types (all of them by default) ahead of requests."""
    schema = compiled()
    for resource_type in resource_types or sorted(schema.resource_types):
        node = schema.resource_node(resource_type)
        if node is not None:
            _compile_reachable(schema, node)


def _compile_reachable(schema, node) -> None:
    pending = [node]
    seen = {node.name}
    while pending:
        current = pending.pop()
        for prop in current.props.values():
            if prop.target and prop.target not in seen:
                seen.add(prop.target)
                pending.append(schema.target(prop))


def _profile_issues(profile: str, resource_type: Any) -> list[Issue]:
    canonical = profile.split("|", 1)[0]
    version = profile.split("|", 1)[1] if "|" in profile else None
    if canonical == f"{BASE_PROFILE_PREFIX}{resource_type}" and version in (None, "4.0.1"):
        return []
    return [Issue("error", "not-supported", f"Profile '{profile}' is not supported: this server validates "
                  "against the base R4 definitions only", [PROFILE_EXPRESSION])]


def _new_places(model_found: list[Issue], found: list[Issue]) -> list[Issue]:
    """Model issues at elements no earlier layer has already reported."""
    reported = {e for issue in found if issue.is_error for e in issue.expression}
    return [issue for issue in model_found if not any(e in reported for e in issue.expression)]


def _distinct(issues: list[Issue]) -> list[Issue]:
    seen: set[tuple[str, str, tuple[str, ...]]] = set()
    out = []
    for issue in issues:
        key = (issue.code, issue.text, tuple(issue.expression))
        if key not in seen:
            seen.add(key)
            out.append(issue)
    return out
