"""The loaded knowledge artifacts by canonical url, each with its FHIRPath compiled at load, and the terminology index.

Readers never lock: every change builds a new `_Snapshot` and swaps one attribute, so a request
(a gunicorn thread) works on one consistent snapshot from start to end.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.errors import FHIRError, Issue
from app.fhirmodels import model_class
from app.fhirpath import (
    STANDARD_VARIABLES,
    CompiledExpression,
    compile_expression,
    expressions_in,
)
from app.reasoning.terminology import TerminologyIndex, canonical_parts

CASE_FEATURE = "https://lbp-pathway.org/fhir/StructureDefinition/case-feature"
# %-names the engine defines for case features and rules besides the standard ones
ENGINE_VARIABLES = frozenset({"patient", "draftOrders", "selections", "subject", "encounter", "practitioner"})
TERMINOLOGY_TYPES = ("CodeSystem", "ValueSet")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PATH_SEGMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[\d+\])*$")


@dataclass(frozen=True)
class Feature:
    """One case feature of a Library: computed when first read, reading only features declared before it as %name."""

    name: str
    expression: CompiledExpression
    path: str  # element path of the expression in the Library
    description: str | None
    depends_on: frozenset[str]  # the earlier features it reads
    type: str | None = None


@dataclass(frozen=True)
class Artifact:
    """A loaded resource with its compiled expressions (element path -> expression)."""

    resource: dict[str, Any]
    expressions: Mapping[str, CompiledExpression]
    features: tuple[Feature, ...] = ()

    @property
    def resource_type(self) -> str:
        return str(self.resource["resourceType"])

    @property
    def id(self) -> str:
        return str(self.resource["id"])

    @property
    def url(self) -> str | None:
        return self.resource.get("url")

    @property
    def version(self) -> str | None:
        return self.resource.get("version")

    @property
    def label(self) -> str:
        return f"{self.resource_type}/{self.id}"

    def expression(self, path: str) -> CompiledExpression:
        return self.expressions[path]


def _version_key(version: str | None) -> tuple[Any, ...]:
    parts = re.split(r"[.\-+]", version or "")
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


class _LazyTerminology:
    """The terminology index of a snapshot, built on first use (loading artifacts one by one stays linear)."""

    def __init__(
        self, resources: list[dict[str, Any]], prefix_families: Mapping[str, Mapping[str, str]] | None
    ):
        self._resources = resources
        self._families = prefix_families
        self._index: TerminologyIndex | None = None
        self._lock = threading.Lock()

    def get(self) -> TerminologyIndex:
        if self._index is None:
            with self._lock:
                if self._index is None:
                    self._index = TerminologyIndex(self._resources, prefix_families=self._families)
        return self._index


@dataclass(frozen=True)
class _Snapshot:
    by_key: Mapping[tuple[str, str], Artifact]
    by_url: Mapping[str, tuple[Artifact, ...]]  # newest version first
    terminology: _LazyTerminology
    order: Mapping[tuple[str, str], int] = field(default_factory=dict)  # load order, for "latest wins" ties
    # what is worked out once from this set of artifacts (e.g. the features a hook reads); a new
    # snapshot (any artifact added or removed) starts empty, so nothing outlives its knowledge epoch
    derived: dict[Any, Any] = field(default_factory=dict, compare=False)


def _by_url(
    by_key: Mapping[tuple[str, str], Artifact], order: Mapping[tuple[str, str], int]
) -> dict[str, tuple[Artifact, ...]]:
    grouped: dict[str, list[Artifact]] = {}
    for artifact in by_key.values():
        if artifact.url:
            grouped.setdefault(artifact.url, []).append(artifact)
    return {
        url: tuple(
            sorted(
                items,
                key=lambda a: (_version_key(a.version), order.get((a.resource_type, a.id), 0)),
                reverse=True,
            )
        )
        for url, items in grouped.items()
    }


def compile_artifact(resource: Mapping[str, Any]) -> Artifact:
    """Compile every FHIRPath in an artifact; FHIRError('invalid') listing each one that does not compile."""
    resource_type = resource.get("resourceType")
    if not resource_type or not resource.get("id"):
        raise FHIRError("required", "An artifact needs resourceType and id", "Resource.id")
    label = f"{resource_type}/{resource['id']}"
    issues: list[Issue] = []
    expressions: dict[str, CompiledExpression] = {}
    for path, text, _name in expressions_in(resource, resource_type):
        try:
            expressions[path] = compile_expression(text, artifact=label, path=path)
        except FHIRError as exc:
            issues.extend(exc.issues)
    issues.extend(_check_dynamic_value_paths(resource, label))
    features: tuple[Feature, ...] = ()
    if resource_type == "Library":
        features, feature_issues = _library_features(resource, label, expressions)
        issues.extend(feature_issues)
    if issues:
        raise FHIRError("invalid", issues[0].text, issues=issues)
    return Artifact(resource=resource, expressions=expressions, features=features)  # type: ignore[arg-type]


def _check_dynamic_value_paths(resource: Mapping[str, Any], label: str) -> list[Issue]:
    """dynamicValue.path must be a simple path: identifiers and constant indexers (R4 ActivityDefinition)."""
    issues = []

    def visit(actions: list[dict[str, Any]], where: str) -> None:
        for i, action in enumerate(actions or []):
            check(action.get("dynamicValue", []), f"{where}[{i}].dynamicValue")
            visit(action.get("action", []), f"{where}[{i}].action")

    def check(values: list[dict[str, Any]], where: str) -> None:
        for j, dv in enumerate(values or []):
            path = dv.get("path", "")
            if not path or not all(_PATH_SEGMENT.match(seg) for seg in path.split(".")):
                text = f"{label}: dynamicValue path {path!r} at {where}[{j}].path is not a simple path"
                issues.append(Issue("error", "invalid", text, [f"{where}[{j}].path"], diagnostics=path))

    rtype = resource.get("resourceType")
    check(resource.get("dynamicValue", []), f"{rtype}.dynamicValue")
    visit(resource.get("action", []), f"{rtype}.action")
    return issues


def _library_features(
    resource: Mapping[str, Any], label: str, expressions: Mapping[str, CompiledExpression]
) -> tuple[tuple[Feature, ...], list[Issue]]:
    issues: list[Issue] = []
    features: list[Feature] = []
    names: set[str] = set()
    types = {p.get("name"): p.get("type") for p in resource.get("parameter", []) if p.get("use") == "out"}
    known = STANDARD_VARIABLES | ENGINE_VARIABLES
    for i, ext in enumerate(resource.get("extension", [])):
        if ext.get("url") != CASE_FEATURE:
            continue
        value = ext.get("valueExpression") or {}
        path = f"Library.extension[{i}].valueExpression"
        name = value.get("name")
        if not name or not _NAME.match(name):
            issues.append(
                Issue(
                    "error",
                    "invalid",
                    f"{label}: case feature at {path} needs a name (an identifier)",
                    [f"{path}.name"],
                )
            )
            continue
        if name in names:
            issues.append(
                Issue("error", "invalid", f"{label}: case feature {name} is declared twice", [f"{path}.name"])
            )
            continue
        if value.get("language") != "text/fhirpath":
            issues.append(
                Issue(
                    "error",
                    "not-supported",
                    f"{label}: case feature {name} must be text/fhirpath",
                    [f"{path}.language"],
                )
            )
            continue
        compiled = expressions.get(f"{path}.expression")
        if compiled is None:  # it did not compile; the issue is already recorded
            names.add(name)
            continue
        unknown = sorted(
            v
            for v in compiled.variables
            if v not in known and v not in names and not v.startswith(("vs-", "ext-"))
        )
        if unknown:
            later = [
                v
                for v in unknown
                if any(
                    v == (e.get("valueExpression") or {}).get("name") for e in resource.get("extension", [])
                )
            ]
            reason = "is declared later" if later else "is not defined"
            text = f"{label}: case feature {name} reads %{unknown[0]}, which {reason}: {compiled.text}"
            issues.append(Issue("error", "invalid", text, [f"{path}.expression"], diagnostics=compiled.text))
        names.add(name)
        features.append(
            Feature(
                name=name,
                expression=compiled,
                path=f"{path}.expression",
                description=value.get("description"),
                depends_on=frozenset(v for v in compiled.variables if v in names and v != name),
                type=types.get(name),
            )
        )
    return tuple(features), issues


class KnowledgeBase:
    """Artifacts by (type, id) and canonical url (latest version wins), plus the terminology index."""

    def __init__(
        self,
        resources: Iterable[Mapping[str, Any]] = (),
        *,
        prefix_families: Mapping[str, Mapping[str, str]] | None = None,
    ):
        self._prefix_families = prefix_families
        self._lock = threading.Lock()
        self._counter = 0
        self._state = _Snapshot(by_key={}, by_url={}, terminology=_LazyTerminology([], prefix_families))
        resources = list(resources)
        if resources:
            self.add_all(resources)
            self.warm()

    # -- writing ------------------------------------------------------------------------------
    def add(self, resource: Mapping[str, Any]) -> Artifact:
        """Compile and add (or replace) one artifact; FHIRError('invalid') when an expression does not compile."""
        return self.add_all([resource])[0]

    def add_all(self, resources: Iterable[Mapping[str, Any]]) -> list[Artifact]:
        """Add several at once, all or nothing; every failing expression of every artifact is reported."""
        compiled: list[Artifact] = []
        issues: list[Issue] = []
        for resource in resources:
            try:
                compiled.append(compile_artifact(resource))
            except FHIRError as exc:
                issues.extend(exc.issues)
        if issues:
            raise FHIRError("invalid", issues[0].text, issues=issues)
        with self._lock:
            state = self._state
            by_key = dict(state.by_key)
            order = dict(state.order)
            for artifact in compiled:
                key = (artifact.resource_type, artifact.id)
                by_key[key] = artifact
                self._counter += 1
                order[key] = self._counter
            terminology = state.terminology
            if any(a.resource_type in TERMINOLOGY_TYPES for a in compiled):
                self._refuse_broken_valuesets(compiled, by_key)
                terminology = self._terminology(by_key, order)
            self._state = _Snapshot(
                by_key=by_key, by_url=_by_url(by_key, order), terminology=terminology, order=order
            )
        return compiled

    def remove(self, resource_type: str, id: str) -> bool:
        with self._lock:
            state = self._state
            if (resource_type, id) not in state.by_key:
                return False
            by_key = {k: v for k, v in state.by_key.items() if k != (resource_type, id)}
            order = {k: v for k, v in state.order.items() if k != (resource_type, id)}
            terminology = (
                self._terminology(by_key, order) if resource_type in TERMINOLOGY_TYPES else state.terminology
            )
            self._state = _Snapshot(
                by_key=by_key, by_url=_by_url(by_key, order), terminology=terminology, order=order
            )
        return True

    def _terminology(
        self, by_key: Mapping[tuple[str, str], Artifact], order: Mapping[tuple[str, str], int]
    ) -> _LazyTerminology:
        newest = [
            versions[0].resource
            for versions in _by_url(by_key, order).values()
            if versions[0].resource_type in TERMINOLOGY_TYPES
        ]
        return _LazyTerminology(newest, self._prefix_families)

    def _refuse_broken_valuesets(
        self, compiled: list[Artifact], by_key: Mapping[tuple[str, str], Artifact]
    ) -> None:
        """A ValueSet whose own definition cannot be used (unsupported filter, a cycle) is refused;
        one that includes a ValueSet not loaded yet is accepted and reported by `check()`."""
        new = [a for a in compiled if a.resource_type == "ValueSet"]
        if not new:
            return
        valuesets = {a.url: a.resource for a in by_key.values() if a.resource_type == "ValueSet" and a.url}
        needed: dict[str, Mapping[str, Any]] = {}
        stack = [a.resource for a in new]
        while stack:
            vs = stack.pop()
            if vs.get("url") in needed:
                continue
            needed[vs.get("url", "")] = vs
            for inc in [
                *(vs.get("compose") or {}).get("include", []),
                *(vs.get("compose") or {}).get("exclude", []),
            ]:
                stack.extend(
                    valuesets[u]
                    for u in (canonical_parts(c)[0] for c in inc.get("valueSet", []))
                    if u in valuesets
                )
        systems = {
            inc.get("system")
            for vs in needed.values()
            for inc in [
                *(vs.get("compose") or {}).get("include", []),
                *(vs.get("compose") or {}).get("exclude", []),
            ]
        }
        codesystems = [
            a.resource for a in by_key.values() if a.resource_type == "CodeSystem" and a.url in systems
        ]
        trial = TerminologyIndex([*codesystems, *needed.values()], prefix_families=self._prefix_families)
        own = [
            trial.problems[a.url]
            for a in new
            if a.url in trial.problems and trial.problems[a.url].code in ("invalid", "not-supported")
        ]
        if own:
            raise FHIRError(own[0].code, str(own[0]), issues=[i for exc in own for i in exc.issues])

    # -- reading ------------------------------------------------------------------------------
    @property
    def terminology(self) -> TerminologyIndex:
        return self._state.terminology.get()

    def derived(self, key: Any, compute: Callable[[], Any]) -> Any:
        """`compute()` worked out once per knowledge epoch: kept with the current set of artifacts and
        forgotten when any artifact is added or removed."""
        cache = self._state.derived
        try:
            return cache[key]
        except KeyError:
            value = cache[key] = compute()
            return value

    def warm(self) -> None:
        """Build the terminology index, and load the FHIR models $apply writes with, ahead of the first
        request that needs them."""
        self._state.terminology.get()
        kinds = {
            a.resource.get("kind")
            for a in self._state.by_key.values()
            if a.resource_type == "ActivityDefinition"
        }
        for kind in sorted(k for k in kinds if k) + ["RequestGroupAction", "Task", "Goal"]:
            model_class(kind)

    def artifact(
        self, reference: str | Mapping[str, Any], resource_type: str | None = None
    ) -> Artifact | None:
        """The artifact for a canonical (`url` or `url|version`), a `Type/id`, or a resource dict."""
        state = self._state
        if isinstance(reference, Mapping):
            loaded = state.by_key.get((reference.get("resourceType", ""), reference.get("id", "")))
            if loaded is not None and (loaded.resource is reference or loaded.resource == reference):
                return loaded
            return compile_artifact(reference)  # a caller-supplied artifact, compiled (and cached) now
        url, version = canonical_parts(reference)
        versions = state.by_url.get(url, ())
        if version:
            versions = tuple(a for a in versions if a.version == version)
        if resource_type:
            versions = tuple(a for a in versions if a.resource_type == resource_type)
        if versions:
            return versions[0]
        if "/" in reference and "://" not in reference:
            rtype, _, rid = reference.partition("/")
            found = state.by_key.get((rtype, rid))
            if found and (resource_type is None or found.resource_type == resource_type):
                return found
        return None

    def resolve(self, canonical: str, resource_type: str | None = None) -> dict[str, Any] | None:
        found = self.artifact(canonical, resource_type)
        return found.resource if found else None

    def get(self, resource_type: str, id: str) -> dict[str, Any] | None:
        found = self._state.by_key.get((resource_type, id))
        return found.resource if found else None

    def resources(self, resource_type: str | None = None) -> list[dict[str, Any]]:
        return [a.resource for (t, _), a in self._state.by_key.items() if resource_type in (None, t)]

    def library_for(self, artifact: Mapping[str, Any], fallback: Artifact | None = None) -> Artifact | None:
        """The case-feature Library an artifact names in `library` (else the fallback)."""
        for canonical in artifact.get("library", []) or []:
            library = self.artifact(canonical, "Library")
            if library is not None:
                return library
        return fallback

    def check(self) -> list[Issue]:
        """Cross-artifact problems that loading order allows: unknown canonicals, features, broken ValueSets."""
        state = self._state
        issues: list[Issue] = []
        terminology = state.terminology.get()
        for exc in terminology.problems.values():
            issues.extend(Issue("error", i.code, i.text, i.expression, i.diagnostics) for i in exc.issues)
        for (rtype, _), artifact in state.by_key.items():
            if rtype not in ("PlanDefinition", "ActivityDefinition"):
                continue
            library = self.library_for(artifact.resource)
            for canonical in artifact.resource.get("library", []) or []:
                if self.artifact(canonical, "Library") is None:
                    issues.append(
                        Issue(
                            "error",
                            "not-found",
                            f"{artifact.label}: Library {canonical} is not loaded",
                            [f"{rtype}.library"],
                        )
                    )
            features = {f.name for f in library.features} if library else set()
            for path, compiled in artifact.expressions.items():
                unknown = sorted(
                    v
                    for v in compiled.variables
                    if v not in features
                    and v not in STANDARD_VARIABLES
                    and v not in ENGINE_VARIABLES
                    and not v.startswith(("vs-", "ext-"))
                )
                if unknown and library is not None:
                    issues.append(
                        Issue(
                            "error",
                            "invalid",
                            f"{artifact.label}: {path} reads %{unknown[0]}, which {library.label} does not define",
                            [path],
                            diagnostics=compiled.text,
                        )
                    )
                for vs in re.findall(r"memberOf\(\s*'([^']+)'\s*\)", compiled.text):
                    if not terminology.has_valueset(vs):
                        issues.append(
                            Issue(
                                "error",
                                "not-found",
                                f"{artifact.label}: {path} uses ValueSet {vs}, which is not loaded",
                                [path],
                            )
                        )
            for path, canonical in _definitions(artifact.resource):
                if self.artifact(canonical) is None:
                    issues.append(
                        Issue(
                            "error",
                            "not-found",
                            f"{artifact.label}: {path} names {canonical}, which is not loaded",
                            [path],
                        )
                    )
        for (rtype, _), artifact in state.by_key.items():
            if rtype == "Library":
                for feature in artifact.features:
                    for vs in re.findall(r"memberOf\(\s*'([^']+)'\s*\)", feature.expression.text):
                        if not terminology.has_valueset(vs):
                            issues.append(
                                Issue(
                                    "error",
                                    "not-found",
                                    f"{artifact.label}: feature {feature.name} uses ValueSet {vs}, which is not loaded",
                                    [feature.path],
                                )
                            )
        return issues


def _definitions(resource: Mapping[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []

    def visit(actions: list[dict[str, Any]], where: str) -> None:
        for i, action in enumerate(actions or []):
            if action.get("definitionCanonical"):
                found.append((f"{where}[{i}].definitionCanonical", action["definitionCanonical"]))
            visit(action.get("action", []), f"{where}[{i}].action")

    visit(resource.get("action", []), f"{resource.get('resourceType')}.action")
    return found
