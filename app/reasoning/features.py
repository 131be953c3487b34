"""Case features: the Library's FHIRPath over the patient's record, each computed when an expression first reads it.

The focus is a Bundle (type collection) of the record; `%patient`, `%today`, `%now`,
`%draftOrders`, `%selections` and every earlier feature (`%name`) are in scope
(docs/artifact-conventions.md, "Case features"). A feature is evaluated at most once per context,
the first time a rule condition, a dynamicValue, a Measure criterion or another feature reads it;
one that nothing reads is never evaluated (`FeatureScope`). One feature's error does not stop the
others: it is recorded as an Issue naming the Library, the feature and the expression, its value is
unknown (empty) and it is marked as failed; every feature that reads it while being evaluated gets
that unknown value, exactly as if the record lacked the fact, and is marked as failed too, so the rules
that read any of them can say "could not be evaluated" (docs/fail-safe.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
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
from app.reasoning.knowledge import Artifact, Feature, KnowledgeBase
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


@dataclass(frozen=True)
class Traced:
    """One expression evaluated over the features: its value (or the error it raised) and the failed
    case features it actually read (directly, or through a feature it read), in declaration order."""

    value: list[Any]
    error: Exception | None
    failed: tuple[str, ...]

    def result(self) -> list[Any]:
        if self.error is not None:
            raise self.error
        return self.value


class FeatureScope(Scope):
    """The %-variables of one Library over one patient context, each case feature computed on its first read.

    A feature is evaluated the first time an expression (a condition, a dynamicValue, a Measure
    criterion, another feature) reads `%name`, and kept for the rest of the request; a feature nothing
    reads is never evaluated. A feature may read only the features declared before it (as when they
    were evaluated in declaration order). A feature that raises, or that read a failed one, holds its
    value outside the dict, so every read of it is seen (`Scope.observed`) and noted in the collector
    of the evaluation under way (`reads`): "depends on a failed feature" means "read one while being
    evaluated" (docs/fail-safe.md).
    """

    def __init__(self, library: Artifact, context: PatientContext, allowed: frozenset[str] | None,
                 forced: frozenset[str]):
        super().__init__()
        for name, value in context.variables().items():
            self.put(name, value)
        self.library = library
        self.context = context
        self.index = _feature_index(library)
        self.limit = len(library.features)  # features at a position below it may be read
        self.allowed = allowed  # None: every declared feature
        self.forced = forced
        self.failures: dict[str, FeatureFailure] = {}
        self.failed_values: dict[str, list[Any]] = {}
        self.causes: dict[str, tuple[str, ...]] = {}  # failed feature -> the failed features it read
        self.issues: list[Issue] = []
        self.sinks: list[list[Issue]] = []  # further lists every new issue is appended to
        self.timings: dict[str, float] = {}
        self.reads: set[str] | None = None  # failed features read by the evaluation under way
        self.evaluated = 0  # features computed (not counting values taken from a failure)
        self._nested_ms = 0.0
        self._runners: list[Evaluator] = []
        self._depth = 0

    # -- reading --------------------------------------------------------------------------------------
    def missing(self, name: str) -> list[Any] | None:
        entry = self.index.get(name)
        if entry is None:
            return None
        position, feature = entry
        if position >= self.limit:
            return None  # a later feature: not defined yet for the one being evaluated
        if name in self.failures:
            self.observed()
            if self.reads is not None:
                self.reads.add(name)
            return self.failed_values[name]
        if self.allowed is not None and name not in self.allowed:
            return None
        return self._compute(position, feature)

    def value_of(self, name: str) -> list[Any]:
        """The feature's value, computed now if it was not (as read at the top level, by no feature)."""
        value = self.get(name)
        if value is None:
            limit, self.limit = self.limit, len(self.library.features)
            try:
                value = self.missing(name)
            finally:
                self.limit = limit
        return value if value is not None else []

    def available(self, name: str) -> bool:
        return name in self.index and (self.allowed is None or name in self.allowed)

    def run(self, compiled: CompiledExpression) -> list[Any]:
        """Evaluate over the record with this scope (one evaluator per nesting depth: they are not re-entrant)."""
        depth = self._depth
        if depth == len(self._runners):
            self._runners.append(Evaluator(self.context.focus, self, self.context.env))
        self._depth = depth + 1
        try:
            return self._runners[depth](compiled)
        finally:
            self._depth = depth

    def trace(self, compiled: CompiledExpression, scope: Scope | None = None) -> Traced:
        """Evaluate `compiled` (over `scope`, a child of this one, when given) noting the failed features read."""
        outer, self.reads = self.reads, set()
        limit, self.limit = self.limit, len(self.library.features)
        try:
            if scope is None:
                value, error = self.run(compiled), None
            else:
                value, error = evaluate(compiled, self.context.focus, scope, self.context.env), None
        except Exception as exc:  # noqa: BLE001 — the caller decides what an error means for it
            value, error = [], exc
        finally:
            reads, self.reads, self.limit = self.reads, outer, limit
        if not reads:
            return Traced(value, error, ())
        if outer is not None:
            outer |= reads
        return Traced(value, error, self.in_order(reads))

    def in_order(self, names: Iterable[str]) -> tuple[str, ...]:
        return tuple(sorted(names, key=lambda n: self.index[n][0] if n in self.index else -1))

    # -- computing ------------------------------------------------------------------------------------
    def _compute(self, position: int, feature: Feature) -> list[Any]:
        name = feature.name
        label = self.library.label
        outer_reads, outer_limit, outer_nested = self.reads, self.limit, self._nested_ms
        self.reads, self.limit, self._nested_ms = set(), position, 0.0
        failure: FeatureFailure | None = None
        started = time.perf_counter()
        try:
            if name in self.forced:
                raise ForcedFailure()
            value = [] if name in self.context.unknown_features else self.run(feature.expression)
        except Exception as exc:  # any evaluation error: the feature is unknown, never a stop
            value = []
            failure = FeatureFailure(label, name, reason_of(exc), feature.path)
            record_failure(failure)
            self._issue(Issue(
                "error",
                "processing",
                f"{label}: feature {name} could not be evaluated ({failure.reason}): {feature.expression.text}",
                [feature.path],
                diagnostics=feature.expression.text,
            ))
        finally:
            reads, nested = self.reads, self._nested_ms
            self.reads, self.limit = outer_reads, outer_limit
        elapsed = (time.perf_counter() - started) * 1000.0
        self.timings[name] = elapsed - nested
        self._nested_ms = outer_nested + elapsed
        self.evaluated += 1
        if failure is None and reads:
            blocked = self.in_order(reads)
            self.causes[name] = blocked
            failure = FeatureFailure(
                label, name, f"reads %{blocked[0]}, which could not be evaluated", feature.path, cause=blocked[0]
            )
            self._issue(Issue(
                "warning",
                "processing",
                f"{label}: feature {name} was evaluated with %{blocked[0]} unknown, "
                "because that could not be evaluated",
                [feature.path],
                diagnostics=feature.expression.text,
            ))
        if failure is None:
            self[name] = value
            return value
        self.failures[name] = failure
        self.failed_values[name] = value
        self.observed()
        if outer_reads is not None:
            outer_reads.add(name)
        return value

    def _issue(self, issue: Issue) -> None:
        self.issues.append(issue)
        for sink in self.sinks:
            sink.append(issue)


_INDEXES: dict[int, tuple[Artifact, dict[str, tuple[int, Feature]]]] = {}


def _feature_index(library: Artifact) -> dict[str, tuple[int, Feature]]:
    """name -> (declaration position, feature), built once per loaded Library."""
    cached = _INDEXES.get(id(library))
    if cached is not None and cached[0] is library:
        return cached[1]
    index = {f.name: (i, f) for i, f in enumerate(library.features)}
    if len(_INDEXES) > 256:
        _INDEXES.clear()
    _INDEXES[id(library)] = (library, index)
    return index


class FeatureMap(Mapping[str, list[Any]]):
    """The features of a FeatureValues as a mapping: reading a feature computes it if it was not;
    `in`, iteration and `len` name the features that may be read (declared, and asked for) without computing."""

    def __init__(self, scope: FeatureScope):
        self._scope = scope

    def __getitem__(self, name: str) -> list[Any]:
        if not self._scope.available(name):
            raise KeyError(name)
        return self._scope.value_of(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._scope.available(name)

    def __iter__(self) -> Iterator[str]:
        return (f.name for f in self._scope.library.features if self._scope.available(f.name))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def computed(self) -> list[str]:
        """The features evaluated so far (failed ones included), in declaration order."""
        scope = self._scope
        return [f.name for f in scope.library.features if f.name in scope or f.name in scope.failures]


class FeatureValues:
    """The features of one Library for one patient: computed on first read (see `FeatureScope`), the
    issues and failures of those computed, their cost.

    `raw` (name -> engine values) computes a feature when read; `values()` computes every feature
    asked for. `failures`, `failed`, `issues` and `timings_ms` name the features computed so far.
    """

    def __init__(self, library: Artifact, context: PatientContext, scope: Scope):
        self.library = library
        self.context = context
        self.scope = scope
        self._lazy = scope if isinstance(scope, FeatureScope) else None
        self.raw: Mapping[str, list[Any]] = FeatureMap(self._lazy) if self._lazy is not None else {}
        self._traced: dict[int, tuple[CompiledExpression, Traced]] = {}

    @classmethod
    def bare(cls, context: PatientContext) -> FeatureValues:
        """What an expression of an artifact without a Library sees: the patient context only."""
        return cls(None, context, Scope.of(context.variables()))  # type: ignore[arg-type]

    @property
    def issues(self) -> list[Issue]:
        return self._lazy.issues if self._lazy is not None else []

    @property
    def failures(self) -> dict[str, FeatureFailure]:
        """Every failed feature (computed so far), why."""
        return self._lazy.failures if self._lazy is not None else {}

    @property
    def failed(self) -> set[str]:
        """Features that could not be evaluated (errors and the features that read them)."""
        return set(self.failures)

    @property
    def timings_ms(self) -> dict[str, float]:
        return self._lazy.timings if self._lazy is not None else {}

    @property
    def evaluated_count(self) -> int:
        """How many features were computed for this patient so far."""
        return self._lazy.evaluated if self._lazy is not None else 0

    def issues_to(self, sink: list[Issue]) -> None:
        """Append the issues so far, and every later one, to `sink` (a walk's issue list)."""
        if self._lazy is not None:
            sink.extend(self._lazy.issues)
            self._lazy.sinks.append(sink)

    def failures_behind(self, names: Iterable[str]) -> list[FeatureFailure]:
        """The features that raised behind `names` (following each failed dependant to what it read)."""
        failures = self.failures
        causes = self._lazy.causes if self._lazy is not None else {}
        found: dict[str, FeatureFailure] = {}
        stack = [n for n in names if n in failures]
        seen: set[str] = set()
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            failure = failures[name]
            if failure.cause is None:
                found[name] = failure
            else:
                stack.extend(n for n in causes.get(name, (failure.cause,)) if n in failures)
        order = {f.name: i for i, f in enumerate(self.library.features)} if self.library else {}
        return sorted(found.values(), key=lambda f: order.get(f.feature, 0))

    def values(self) -> dict[str, list[Any]]:
        """name -> FHIR JSON values of every feature asked for (computing those not yet), in declaration order."""
        return {name: to_json(value) for name, value in self.raw.items()}

    def value(self, name: str) -> list[Any]:
        return to_json(self.raw.get(name, []))

    def trace(self, compiled: CompiledExpression, extra: Mapping[str, Any] | None = None) -> Traced:
        """Evaluate an expression of a rule over the same focus, with the features in scope, noting the
        failed features it read. Without `extra` the result is kept: the same expression is evaluated once."""
        if not extra:
            kept = self._traced.get(id(compiled))
            if kept is not None and kept[0] is compiled:
                if self._lazy is not None and self._lazy.reads is not None:
                    self._lazy.reads.update(kept[1].failed)
                return kept[1]
        scope = self.scope.child(extra) if extra else None
        if self._lazy is not None:
            traced = self._lazy.trace(compiled, scope)
        else:
            try:
                traced = Traced(evaluate(compiled, self.context.focus, scope or self.scope, self.context.env),
                                None, ())
            except Exception as exc:  # noqa: BLE001 — the caller decides what an error means for it
                traced = Traced([], exc, ())
        if not extra:
            self._traced[id(compiled)] = (compiled, traced)
        return traced

    def evaluate(self, compiled: CompiledExpression, extra: Mapping[str, Any] | None = None) -> list[Any]:
        """Evaluate an expression of a rule over the same focus, with the features in scope (raises its error)."""
        return self.trace(compiled, extra).result()

    def missing_inputs(self, compiled: CompiledExpression) -> list[str]:
        """The failed features an expression reads when evaluated (itself or through features it reads)."""
        return sorted(self.trace(compiled).failed)


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


_CLOSURES: dict[tuple[int, int], tuple[Artifact, frozenset[str], frozenset[str]]] = {}


def _closure(library: Artifact, only: Iterable[str]) -> frozenset[str]:
    """`needed_features`, kept per (Library, frozenset object): a Measure run and a hook's pruned set pass the
    same frozenset for every patient; other iterables are worked out each time."""
    if not isinstance(only, frozenset):
        return frozenset(needed_features(library, only))
    key = (id(library), id(only))
    cached = _CLOSURES.get(key)
    if cached is not None and cached[0] is library and cached[1] is only:
        return cached[2]
    closure = frozenset(needed_features(library, only))
    if len(_CLOSURES) > 1024:
        _CLOSURES.clear()
    _CLOSURES[key] = (library, only, closure)
    return closure


def evaluate_features(
    kb: KnowledgeBase,
    library: Artifact | Mapping[str, Any] | str,
    context: PatientContext,
    *,
    only: Iterable[str] | None = None,
    fail: Iterable[str] = (),
    earlier: FeatureValues | None = None,
    lazy: bool = False,
) -> FeatureValues:
    """The case features of `library` over `context`.

    `lazy=True`: nothing is evaluated now; each feature is computed the first time an expression read
    through the result (`evaluate`, `trace`, `raw`, `value`) reads it, so a feature no rule reaches is
    never evaluated (see `FeatureScope`). Otherwise every feature asked for is computed now, in
    declaration order.

    With `only`, just those features and what they depend on may be read (the others are absent from
    the result, as undefined variables): $apply evaluates what its rules read.

    Fail-safe: a feature whose expression raises is unknown (empty) and recorded in `failures`
    (reason without patient data, an error Issue, the failure counter and a log line naming the
    Library and the feature only); every feature that reads it while being evaluated gets the unknown
    value and is recorded with `cause` naming the failed input. `failed` holds both kinds.

    Fault injection: `fail` names features (of this Library) to force to fail, together with the
    context's `fail_features`; each raises `ForcedFailure` in place of its evaluation and takes the
    path of a real error. Names the Library does not declare are ignored.

    `earlier`: the values of a previous call for the same Library and context: the same values are
    returned with the features of `only` added to those that may be read, so a second step that needs
    more features does not evaluate (or count the failures of) the first step's features again.
    """
    artifact = library if isinstance(library, Artifact) else kb.artifact(library, "Library")
    if artifact is None:
        raise FHIRError("not-found", f"Library {library} is not loaded", "library")
    wanted = _closure(artifact, only) if only is not None else None
    forced = frozenset(fail) | context.fail_features
    if (
        earlier is not None
        and earlier.library is artifact
        and earlier.context is context
        and isinstance(earlier.scope, FeatureScope)
        and earlier.scope.forced == forced
    ):
        scope = earlier.scope
        if scope.allowed is not None:
            scope.allowed = None if wanted is None else scope.allowed | wanted
        values = earlier
    else:
        scope = FeatureScope(artifact, context, wanted, forced)
        values = FeatureValues(artifact, context, scope)
    if not lazy:
        for feature in artifact.features:
            if scope.available(feature.name):
                scope.value_of(feature.name)
    return values
