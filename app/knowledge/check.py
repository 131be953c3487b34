"""Checks every FHIRPath expression of a set of knowledge artifacts with the static analysis, each in its place.

Each expression is typed (`app.fhirpath.check_expression`) over the focus and with the %-variables
the engine gives it where it runs:

- Library case features, in order, over the patient's record (a Bundle), with the engine's variables
  and the features declared before, each typed as its `Library.parameter` declares (type, max); a
  feature whose inferred type or cardinality contradicts its declaration is an error;
- PlanDefinition conditions (one Boolean: the applicability condition) and dynamicValues,
  ActivityDefinition dynamicValues, Measure criteria: over the record, with the features of the
  artifact's Library (of every Library in the set when it names none);
- Questionnaire SDC `variable`s, enableWhenExpression (one Boolean) and calculatedExpression over
  the QuestionnaireResponse with %questionnaire and the variables in scope; initialExpression over the
  record with the engine's variables and %questionnaire.

Every finding carries the artifact (`Type/id`), the element (its FHIRPath location in the
artifact) and the expression. Errors refuse the artifact; warnings say what could not be decided.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.fhirpath import FHIRPATH, Diagnostic, Static, check_expression, static_of
from app.fhirpath.model import r4
from app.fhirpath.static import EMPTY, UNKNOWN, categories

CASE_FEATURE = "https://lbp-pathway.org/fhir/StructureDefinition/case-feature"
SDC = "http://hl7.org/fhir/uv/sdc/StructureDefinition/"
VARIABLE = "http://hl7.org/fhir/StructureDefinition/variable"
ENABLE_WHEN = SDC + "sdc-questionnaire-enableWhenExpression"
CALCULATED = SDC + "sdc-questionnaire-calculatedExpression"
INITIAL = SDC + "sdc-questionnaire-initialExpression"
RECORD = "Bundle"  # the focus of case features and rules: the patient's record as one Bundle

# what the engine puts in scope for features, rules and population (app.reasoning.features.PatientContext)
ENGINE_VARIABLES: dict[str, Static] = {
    "patient": static_of("Patient"),
    "subject": static_of("Patient"),
    "draftOrders": static_of("Resource", True),
    "selections": static_of("Resource", True),
    "encounter": static_of("Encounter"),
    "practitioner": static_of("Practitioner"),
}


@dataclass
class _Place:
    """Where an expression runs: its focus, %-variables and whether it must be one Boolean."""

    focus: str | None
    variables: dict[str, Static] = field(default_factory=dict)
    criterion: str | None = None
    open: bool = False  # the Library declaring the features is not at hand: unknown %-names are warnings


def check_artifacts(resources: Iterable[Mapping[str, Any]]) -> list[Diagnostic]:
    """Every finding of the static analysis over the FHIRPath of these artifacts (errors and warnings)."""
    artifacts = [r for r in resources if isinstance(r, Mapping)]
    libraries = {
        str(r.get("url")): r for r in artifacts if r.get("resourceType") == "Library" and r.get("url")
    }
    found: list[Diagnostic] = []
    features_of: dict[str, dict[str, Static]] = {}
    for url, library in libraries.items():
        findings, declared = _check_library(library)
        found.extend(findings)
        features_of[url] = declared
    for resource in artifacts:
        if resource.get("resourceType") == "Library" and resource.get("url") in libraries:
            continue
        found.extend(check_artifact(resource, features_of))
    return found


def check_artifact(
    resource: Mapping[str, Any], features_of: Mapping[str, Mapping[str, Static]] | None = None
) -> list[Diagnostic]:
    """The findings for one artifact; `features_of` gives the declared features of each Library by url."""
    rtype = resource.get("resourceType")
    if rtype == "Library":
        return _check_library(resource)[0]
    features, complete = _features_for(resource, features_of or {})
    record = _Place(RECORD, {**ENGINE_VARIABLES, **features}, open=not complete)
    label = f"{rtype}/{resource.get('id', '')}"
    found: list[Diagnostic] = []
    if rtype == "PlanDefinition":
        for path, action in _actions(resource.get("action"), "PlanDefinition.action"):
            for j, condition in enumerate(action.get("condition", []) or []):
                what = "the applicability condition" if condition.get("kind", "applicability") == "applicability" else (
                    f"the {condition.get('kind')} condition"
                )
                place = _Place(RECORD, record.variables, what, record.open)
                found += _check(label, f"{path}.condition[{j}].expression", condition.get("expression"), place)
            found += _dynamic_values(label, path, action, record)
    elif rtype == "ActivityDefinition":
        found += _dynamic_values(label, "ActivityDefinition", resource, record)
    elif rtype == "Measure":
        found += _measure(label, resource, record)
    elif rtype == "Questionnaire":
        found += _questionnaire(label, resource)
    return found


def _check(label: str, element: str, expression: Any, place: _Place) -> list[Diagnostic]:
    if not isinstance(expression, Mapping) or expression.get("language") != FHIRPATH:
        return []
    text = expression.get("expression")
    if not isinstance(text, str):
        return []
    analysis = check_expression(
        text, focus=place.focus, variables=place.variables, criterion=place.criterion, open_variables=place.open
    )
    return [d.located(label, f"{element}.expression") for d in analysis.diagnostics]


def _typed(label: str, element: str, expression: Mapping[str, Any], place: _Place) -> tuple[Static, list[Diagnostic]]:
    text = expression.get("expression")
    if not isinstance(text, str):
        return UNKNOWN, []
    analysis = check_expression(text, focus=place.focus, variables=place.variables, criterion=place.criterion)
    return analysis.type, [d.located(label, f"{element}.expression") for d in analysis.diagnostics]


def _actions(actions: Any, path: str) -> Iterable[tuple[str, Mapping[str, Any]]]:
    for i, action in enumerate(actions or []):
        if isinstance(action, Mapping):
            yield f"{path}[{i}]", action
            yield from _actions(action.get("action"), f"{path}[{i}].action")


def _dynamic_values(label: str, path: str, element: Mapping[str, Any], place: _Place) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    for j, value in enumerate(element.get("dynamicValue", []) or []):
        found += _check(label, f"{path}.dynamicValue[{j}].expression", value.get("expression"), place)
    return found


def _features_for(
    resource: Mapping[str, Any], features_of: Mapping[str, Mapping[str, Static]]
) -> tuple[dict[str, Static], bool]:
    """The case features an artifact's expressions read, and whether every Library it names is at hand."""
    named = [str(u).split("|")[0] for u in resource.get("library", []) or []]
    chosen = [features_of[u] for u in named if u in features_of] or list(features_of.values())
    out: dict[str, Static] = {}
    for features in chosen:
        out.update(features)
    return out, bool(features_of) and all(u in features_of for u in named)


# -- Library: the case features --------------------------------------------------------------------------


def declared_static(parameter: Mapping[str, Any]) -> Static:
    """The Static a Library.parameter declares (type, and max "1" or more)."""
    return static_of(parameter.get("type"), parameter.get("max", "*") != "1")


def _check_library(library: Mapping[str, Any]) -> tuple[list[Diagnostic], dict[str, Static]]:
    label = f"Library/{library.get('id', '')}"
    parameters = {
        p.get("name"): p for p in library.get("parameter", []) or [] if isinstance(p, Mapping) and p.get("use") == "out"
    }
    declared: dict[str, Static] = {}
    found: list[Diagnostic] = []
    for i, extension in enumerate(library.get("extension", []) or []):
        if not isinstance(extension, Mapping) or extension.get("url") != CASE_FEATURE:
            continue
        expression = extension.get("valueExpression") or {}
        name = expression.get("name")
        element = f"Library.extension[{i}].valueExpression"
        if not isinstance(name, str) or expression.get("language") != FHIRPATH:
            continue  # the knowledge base refuses these already, with its own message
        place = _Place(RECORD, {**ENGINE_VARIABLES, **declared})
        inferred, findings = _typed(label, element, expression, place)
        found += findings
        parameter = parameters.get(name)
        text = str(expression.get("expression", ""))
        if parameter is None:
            found.append(Diagnostic("error", f"case feature {name} has no Library.parameter declaring its type",
                                    "policy", text, label, f"{element}.expression"))
            declared[name] = inferred
            continue
        declaration = declared_static(parameter)
        found += _against_declaration(name, inferred, declaration, parameter, label, f"{element}.expression", text)
        declared[name] = declaration
    return found, declared


def _against_declaration(
    name: str, inferred: Static, declaration: Static, parameter: Mapping[str, Any], label: str, element: str,
    text: str,
) -> list[Diagnostic]:
    model = r4()
    out: list[Diagnostic] = []

    def add(severity: str, message: str) -> None:
        out.append(Diagnostic(severity, message, "policy", text, label, element))

    if declaration.many is False and inferred.many is True:
        add("error", f"case feature {name} is declared max 1 but may yield several items ({inferred.describe()})")
    if declaration.types is None:
        add("warning", f"case feature {name} declares the unknown type {parameter.get('type')!r}")
        return out
    if inferred.types is None:
        add("warning", f"cannot check the declared type {parameter.get('type')} of case feature {name}: "
            "the expression's type is unknown")
        return out
    if not inferred.types:
        return out  # `{}`: empty fits every declaration
    wanted = categories(model, declaration) or frozenset()
    declared_names = declaration.types
    for actual in inferred.types:
        if declared_names & set(model.ancestors(actual)):
            continue  # the declared type or a subtype of it
        actual_category = categories(model, Static(frozenset({actual}), False)) or frozenset()
        if model.system_type(actual) and actual_category <= wanted:
            continue  # a primitive of the declared kind (an Integer where a decimal is declared)
        if any(actual in model.ancestors(d) for d in declared_names):
            add("warning", f"cannot confirm that case feature {name} yields only {parameter.get('type')}: "
                f"it yields {inferred.describe()}")
            continue
        add("error", f"case feature {name} is declared {parameter.get('type')} but yields {inferred.describe()}")
        break
    return out


# -- Measure ----------------------------------------------------------------------------------------------

_OBSERVATION = "measure-observation"


def _measure(label: str, measure: Mapping[str, Any], record: _Place) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    for g, group in enumerate(measure.get("group", []) or []):
        for p, population in enumerate(group.get("population", []) or []):
            codes = {c.get("code") for c in (population.get("code") or {}).get("coding", []) or []}
            criterion = None if _OBSERVATION in codes else "the population criterion"
            place = _Place(RECORD, record.variables, criterion, record.open)
            found += _check(label, f"Measure.group[{g}].population[{p}].criteria", population.get("criteria"), place)
        for s, stratifier in enumerate(group.get("stratifier", []) or []):
            found += _check(label, f"Measure.group[{g}].stratifier[{s}].criteria", stratifier.get("criteria"), record)
    for s, data in enumerate(measure.get("supplementalData", []) or []):
        found += _check(label, f"Measure.supplementalData[{s}].criteria", data.get("criteria"), record)
    return found


# -- Questionnaire -----------------------------------------------------------------------------------------


def _questionnaire(label: str, questionnaire: Mapping[str, Any]) -> list[Diagnostic]:
    response = {
        "questionnaire": static_of("Questionnaire"),
        "resource": static_of("QuestionnaireResponse"),
        "context": static_of("QuestionnaireResponse"),
    }
    population = {**ENGINE_VARIABLES, "questionnaire": static_of("Questionnaire")}
    found: list[Diagnostic] = []
    record_scope: dict[str, Static] = {}  # the variables as population sees them

    def visit(element: Mapping[str, Any], path: str, scope: dict[str, Static], item: bool) -> None:
        scope = dict(scope)
        if item:
            scope["context"] = static_of("QuestionnaireResponse.item")
        for j, extension in enumerate(element.get("extension", []) or []):
            url = extension.get("url") if isinstance(extension, Mapping) else None
            expression = extension.get("valueExpression") if url else None
            if not isinstance(expression, Mapping) or expression.get("language") != FHIRPATH:
                continue
            where = f"{path}.extension[{j}].valueExpression"
            if url == VARIABLE and expression.get("name"):
                # a variable runs over the response when scoring and over the record when populating: it is
                # typed in both, and its findings are those of the place it is written for (fewer errors)
                variable = str(expression["name"])
                in_response = _typed(label, where, expression, _Place("QuestionnaireResponse", scope))
                in_record = _typed(label, where, expression, _Place(RECORD, {**population, **record_scope}))
                errors = [len([d for d in f if d.severity == "error"]) for _, f in (in_response, in_record)]
                found.extend(in_response[1] if errors[0] <= errors[1] else in_record[1])
                scope[variable] = in_response[0] if not errors[0] else EMPTY
                record_scope[variable] = in_record[0] if not errors[1] else EMPTY
            elif url == ENABLE_WHEN:
                place = _Place("QuestionnaireResponse", scope, "the enableWhenExpression")
                found.extend(_check(label, where, expression, place))
            elif url == CALCULATED:
                found.extend(_check(label, where, expression, _Place("QuestionnaireResponse", scope)))
            elif url == INITIAL:
                # populated over the record; the Questionnaire's variables are in scope there too
                found.extend(_check(label, where, expression, _Place(RECORD, {**population, **record_scope})))
        for k, child in enumerate(element.get("item", []) or []):
            if isinstance(child, Mapping):
                visit(child, f"{path}.item[{k}]", scope, True)

    visit(questionnaire, "Questionnaire", response, False)
    return found


def refuse_faulty(resource: Mapping[str, Any], libraries: Iterable[Mapping[str, Any]] = ()) -> None:
    """Raise FHIRError('invalid') with one issue per analysis error of an artifact about to be stored.

    `libraries` are the stored Libraries, whose declared case features the artifact's rules read.
    """
    from app.errors import FHIRError, Issue  # noqa: PLC0415 (app.errors is light, but keep this module pure)

    features_of = {}
    for library in libraries:
        if library.get("url") and library.get("url") != resource.get("url"):
            features_of[str(library["url"])] = _check_library(library)[1]
    errors = [d for d in check_artifact(resource, features_of) if d.severity == "error"]
    if errors:
        issues = [
            Issue("error", "invalid", f"{d.artifact}: {d.message} at {d.element}: {d.expression}", [d.element],
                  diagnostics=d.expression)
            for d in errors
        ]
        raise FHIRError("invalid", issues[0].text, issues[0].expression[0], issues=issues)
