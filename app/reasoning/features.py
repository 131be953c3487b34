"""Case features: the Library's FHIRPath evaluated once per request over the patient's record, in declaration order.

The focus is a Bundle (type collection) of the record; `%patient`, `%today`, `%now`,
`%draftOrders`, `%selections` and every earlier feature (`%name`) are in scope
(docs/artifact-conventions.md, "Case features"). One feature's error does not stop the others: it
is recorded as an Issue naming the Library, the feature and the expression, its value is unknown
(empty) and it is marked as failed; every feature that reads it (directly or not) is evaluated on
that unknown value, exactly as if the record lacked the fact, and is marked as failed too, so the
rules that read any of them can say "could not be evaluated" (docs/fail-safe.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from app.errors import FHIRError, Issue
from app.fhirpath import (
    CompiledExpression,
    Environment,
    Evaluator,
    Scope,
    evaluate,
    make_environment,
    references_index,
    to_json,
)
from app.fhirpath.values import resource_node
from app.reasoning.failures import FeatureFailure, ForcedFailure, reason_of, record_failure
from app.reasoning.knowledge import Artifact, KnowledgeBase
from app.reasoning.terminology import TerminologyIndex


def record_resources(record: Any) -> list[dict[str, Any]]:
    """Flatten a record into resources: a list of resources and/or Bundles, a Bundle, or a CDS
    prefetch mapping (key -> resource, Bundle or None). Later copies of Type/id replace earlier ones."""
    found: list[dict[str, Any]] = []

    def take(item: Any) -> None:
        if item is None:
            return
        if isinstance(item, Mapping):
            if item.get("resourceType") == "Bundle":
                for entry in item.get("entry", []) or []:
                    take(entry.get("resource"))
            elif "resourceType" in item:
                found.append(item)  # type: ignore[arg-type]
            else:  # prefetch: {key: resource | Bundle | None}
                for value in item.values():
                    take(value)
        elif isinstance(item, Iterable) and not isinstance(item, (str, bytes)):
            for value in item:
                take(value)

    take(record)
    seen: dict[tuple[str, str], int] = {}
    out: list[dict[str, Any]] = []
    for resource in found:
        key = (resource["resourceType"], resource.get("id", ""))
        if key[1] and key in seen:
            out[seen[key]] = resource
            continue
        if key[1]:
            seen[key] = len(out)
        out.append(resource)
    return out


def reference_to(subject: Any, default_type: str = "Patient") -> dict[str, Any] | None:
    """A Reference from a resource dict, a 'Type/id' string or a Reference dict."""
    if subject is None:
        return None
    if isinstance(subject, str):
        return {"reference": subject if "/" in subject or ":" in subject else f"{default_type}/{subject}"}
    if isinstance(subject, Mapping):
        if "resourceType" in subject:
            return {"reference": f"{subject['resourceType']}/{subject.get('id', '')}"}
        return dict(subject)
    raise TypeError(f"cannot make a reference of {subject!r}")


@dataclass
class PatientContext:
    """What every evaluation of one request shares: the record as a Bundle, the patient, orders, clock."""

    resources: list[dict[str, Any]]
    bundle: dict[str, Any]
    patient: dict[str, Any] | None
    subject: dict[str, Any] | None  # Reference
    draft_orders: list[dict[str, Any]]
    selections: list[dict[str, Any]]
    env: Environment
    extra: dict[str, Any] = field(default_factory=dict)  # more %-variables (encounter, practitioner)
    focus: list[Any] = field(default_factory=list)  # the bundle as a collection, built once
    # fault injection: case features forced to fail in every evaluation over this context
    fail_features: frozenset[str] = frozenset()
    # case features read as unknown (empty, no failure): the baseline a forced failure is compared with
    unknown_features: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.focus:
            self.focus = [resource_node(self.bundle)]

    def variables(self) -> dict[str, Any]:
        out = {
            "patient": self.patient,
            "subject": self.patient,
            "draftOrders": list(self.draft_orders),
            "selections": list(self.selections),
        }
        out.update(self.extra)
        return out


def patient_context(
    record: Any,
    *,
    subject: Any = None,
    today: date | datetime | None = None,
    draft_orders: Any = (),
    selections: Sequence[Any] = (),
    terminology: TerminologyIndex | None = None,
    encounter: Any = None,
    practitioner: Any = None,
    fail_features: Iterable[str] = (),
    unknown_features: Iterable[str] = (),
) -> PatientContext:
    """Build the shared context. `selections` may hold resources or references to the draft orders.

    `fail_features` (fault injection): case feature names that every evaluation over this context
    forces to fail, as if their expressions raised (see `evaluate_features`). `unknown_features`:
    names whose value is taken as unknown (empty) without a failure, as if the record lacked the
    fact — what a forced failure is compared with.
    """
    resources = record_resources(record)
    subject_ref = reference_to(subject)
    patient: dict[str, Any] | None = None
    if isinstance(subject, Mapping) and subject.get("resourceType") == "Patient":
        patient = dict(subject)
        if not any(
            r.get("resourceType") == "Patient" and r.get("id") == patient.get("id") for r in resources
        ):
            resources.insert(0, patient)
    patients = [r for r in resources if r.get("resourceType") == "Patient"]
    if patient is None and patients:
        wanted = (subject_ref or {}).get("reference", "")
        patient = next((p for p in patients if wanted.endswith(f"Patient/{p.get('id')}")), None)
        if patient is None and not wanted:
            patient = patients[0]
    if subject_ref is None and patient is not None:
        subject_ref = reference_to(patient)
    drafts = record_resources(draft_orders)
    by_ref = {f"{d['resourceType']}/{d.get('id')}": d for d in drafts}
    chosen: list[dict[str, Any]] = []
    for item in selections or ():
        if isinstance(item, str):
            if item in by_ref:
                chosen.append(by_ref[item])
        elif isinstance(item, Mapping):
            ref = item.get("reference")
            chosen.append(by_ref[ref] if ref in by_ref else item)  # type: ignore[arg-type]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    full_urls = {}
    for bundle_like in _bundles(record):
        for entry in bundle_like.get("entry", []) or []:
            if entry.get("fullUrl") and isinstance(entry.get("resource"), Mapping):
                full_urls[id(entry["resource"])] = entry["fullUrl"]
    env = make_environment(
        today,
        terminology=terminology,
        references=references_index([*resources, *drafts], full_urls),
    )
    extra: dict[str, Any] = {}
    if encounter is not None:
        extra["encounter"] = (
            encounter
            if isinstance(encounter, Mapping) and "resourceType" in encounter
            else reference_to(encounter, "Encounter")
        )
    if practitioner is not None:
        extra["practitioner"] = (
            practitioner
            if isinstance(practitioner, Mapping) and "resourceType" in practitioner
            else reference_to(practitioner, "Practitioner")
        )
    return PatientContext(
        resources=resources,
        bundle=bundle,
        patient=patient,
        subject=subject_ref,
        draft_orders=drafts,
        selections=chosen,
        env=env,
        extra=extra,
        fail_features=frozenset(fail_features),
        unknown_features=frozenset(unknown_features),
    )


def _bundles(record: Any) -> list[Mapping[str, Any]]:
    if isinstance(record, Mapping):
        if record.get("resourceType") == "Bundle":
            return [record]
        if "resourceType" not in record:
            return [b for v in record.values() for b in _bundles(v)]
        return []
    if isinstance(record, Iterable) and not isinstance(record, (str, bytes)):
        return [b for v in record for b in _bundles(v)]
    return []


@dataclass
class FeatureValues:
    """The features of one Library for one patient: raw values (for further evaluation), issues, cost."""

    library: Artifact
    context: PatientContext
    raw: dict[str, list[Any]]
    issues: list[Issue]
    timings_ms: dict[str, float]
    failed: set[str]  # features that could not be evaluated (errors and their dependants)
    scope: Scope  # %patient, %today … and every feature, for the rules
    failures: dict[str, FeatureFailure] = field(default_factory=dict)  # every failed feature, why

    def failures_behind(self, names: Iterable[str]) -> list[FeatureFailure]:
        """The features that raised behind `names` (following each failed dependant to its cause)."""
        found: dict[str, FeatureFailure] = {}
        stack = [n for n in names if n in self.failures]
        seen: set[str] = set()
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            failure = self.failures[name]
            if failure.cause is None:
                found[name] = failure
            else:
                stack.extend(n for n in self._failed_inputs(name) if n in self.failures)
        order = {f.name: i for i, f in enumerate(self.library.features)} if self.library else {}
        return sorted(found.values(), key=lambda f: order.get(f.feature, 0))

    def _failed_inputs(self, name: str) -> list[str]:
        feature = next((f for f in self.library.features if f.name == name), None) if self.library else None
        return sorted(feature.depends_on & self.failed) if feature is not None else []

    def values(self) -> dict[str, list[Any]]:
        """name -> FHIR JSON values, in declaration order."""
        return {name: to_json(value) for name, value in self.raw.items()}

    def value(self, name: str) -> list[Any]:
        return to_json(self.raw.get(name, []))

    def evaluate(self, compiled: CompiledExpression, extra: Mapping[str, Any] | None = None) -> list[Any]:
        """Evaluate an expression of a rule over the same focus, with the features in scope."""
        scope = self.scope
        if extra:
            scope = Scope(scope)
            for name, value in extra.items():
                scope.put(name, value)
        return evaluate(compiled, self.context.focus, scope, self.context.env)

    def missing_inputs(self, compiled: CompiledExpression) -> list[str]:
        """The features an expression reads that could not be evaluated (themselves or an input of theirs)."""
        return sorted(v for v in compiled.variables if v in self.failed)


def needed_features(library: Artifact, names: Iterable[str]) -> set[str]:
    """The features `names` read, with everything they depend on."""
    by_name = {f.name: f for f in library.features}
    needed: set[str] = set()
    stack = [n for n in names if n in by_name]
    while stack:
        name = stack.pop()
        if name not in needed:
            needed.add(name)
            stack.extend(by_name[name].depends_on)
    return needed


def evaluate_features(
    kb: KnowledgeBase,
    library: Artifact | Mapping[str, Any] | str,
    context: PatientContext,
    *,
    only: Iterable[str] | None = None,
    fail: Iterable[str] = (),
    earlier: FeatureValues | None = None,
) -> FeatureValues:
    """Evaluate the case features of `library` over `context`, in declaration order.

    With `only`, just those features and what they depend on (the others are absent from the
    result): $apply evaluates what its rules read.

    Fail-safe: a feature whose expression raises is unknown (empty) and recorded in `failures`
    (reason without patient data, an error Issue, the failure counter and a log line naming the
    Library and the feature only); every feature reading it is evaluated on the unknown value and
    recorded with `cause` naming the failed input. `failed` holds both kinds.

    Fault injection: `fail` names features (of this Library) to force to fail, together with the
    context's `fail_features`; each raises `ForcedFailure` in place of its evaluation and takes the
    path of a real error. Names the Library does not declare are ignored.

    `earlier`: the values of a previous call for the same Library and context (with fewer features):
    those are kept as they were (value, failure, issue) and only the features it lacks are evaluated,
    so a second step that needs more features does not evaluate (or count the failures of) the first
    step's features again.
    """
    artifact = library if isinstance(library, Artifact) else kb.artifact(library, "Library")
    if artifact is None:
        raise FHIRError("not-found", f"Library {library} is not loaded", "library")
    wanted = needed_features(artifact, only) if only is not None else None
    forced = frozenset(fail) | context.fail_features
    raw: dict[str, list[Any]] = {}
    issues: list[Issue] = []
    timings: dict[str, float] = {}
    failures: dict[str, FeatureFailure] = {}
    scope = Scope.of(context.variables())
    if earlier is not None and (earlier.library is not artifact or earlier.context is not context):
        earlier = None
    if earlier is not None:
        issues.extend(earlier.issues)
        failures.update(earlier.failures)
        for name, value in earlier.raw.items():
            scope[name] = value
    run = Evaluator(context.focus, scope, context.env)
    clock = time.perf_counter
    for feature in artifact.features:
        if earlier is not None and feature.name in earlier.raw:
            raw[feature.name] = earlier.raw[feature.name]
            timings[feature.name] = earlier.timings_ms.get(feature.name, 0.0)
            continue
        if wanted is not None and feature.name not in wanted:
            continue
        started = clock()
        if feature.name in context.unknown_features and feature.name not in forced:
            raw[feature.name] = []
            scope[feature.name] = []
            timings[feature.name] = 0.0
            continue
        try:
            if feature.name in forced:
                raise ForcedFailure()
            value = run(feature.expression)
        except Exception as exc:  # any evaluation error: the feature is unknown, never a stop
            value = []
            failure = FeatureFailure(artifact.label, feature.name, reason_of(exc), feature.path)
            failures[feature.name] = failure
            record_failure(failure)
            issues.append(
                Issue(
                    "error",
                    "processing",
                    f"{artifact.label}: feature {feature.name} could not be evaluated ({failure.reason}): "
                    f"{feature.expression.text}",
                    [feature.path],
                    diagnostics=feature.expression.text,
                )
            )
        else:
            blocked = sorted(feature.depends_on & failures.keys(), key=lambda n: list(failures).index(n))
            if blocked:
                failures[feature.name] = FeatureFailure(
                    artifact.label,
                    feature.name,
                    f"reads %{blocked[0]}, which could not be evaluated",
                    feature.path,
                    cause=blocked[0],
                )
                issues.append(
                    Issue(
                        "warning",
                        "processing",
                        f"{artifact.label}: feature {feature.name} was evaluated with %{blocked[0]} unknown, "
                        "because that could not be evaluated",
                        [feature.path],
                        diagnostics=feature.expression.text,
                    )
                )
        timings[feature.name] = (clock() - started) * 1000.0
        raw[feature.name] = value
        scope[feature.name] = value
    return FeatureValues(
        library=artifact,
        context=context,
        raw=raw,
        issues=issues,
        timings_ms=timings,
        failed=set(failures),
        scope=scope,
        failures=failures,
    )
