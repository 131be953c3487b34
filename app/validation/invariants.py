"""The rule layer: R4 core invariants, bindings, extensions and primitive rules, element by element.

One walk over a resource visits every element with its StructureDefinition path (`Observation`,
`Observation.referenceRange`, `Period`, `Observation.value[x]`) and its location as FHIRPath
(`Observation.referenceRange[0]`, `Observation.valueQuantity`). At each element it applies:

- the `constraint`s of the core StructureDefinitions (`definitions/r4-core.json.gz`): those of the
  element's own definition in the snapshot, those of a definition it reuses (`contentReference`),
  those of its data type and of a core profile on that type (SimpleQuantity). Severity error gives an
  error issue, warning a warning; the issue's text starts with the key (`ras-2: Must be <= 100`) and
  its diagnostics carry the expression. Each distinct set is compiled once per process (`rules_for`).
  `ele-1` and `ext-1`, which stand on every element and every extension, are decided in Python with
  the same meaning as their expressions (`tests/validation/test_invariants.py` compares the two on the
  engine). `txt-1` and `txt-2` (`htmlChecks()`) run on the engine with the narrative check of
  `narrative.py` registered as a host function; a failing narrative names each problem under its key.
  `CORRECTIONS` replaces R4 expressions that later FHIR versions corrected; `EXCLUDED` lists the
  invariants the engine cannot evaluate, with the reason, and each is reported where it applies as
  an information issue rather than skipped in silence.
- required and extensible bindings to core ValueSets of Coding and CodeableConcept elements
  (`bindings.py`); code elements' required bindings are checked by the schema walk already;
- extension definitions (`extensions.py`) and primitive rules (`primitives.py`);
- in a Bundle, the references of its entries resolved against its fullUrls, and the searchset and
  history rules (`bundles.py`); for conformance resources, what the spec text requires beyond the
  invariants (`conformance_resources.py`).

An empty result of an invariant is no verdict and passes; an evaluation error is reported as a
warning naming the key and the engine's message, never dropped.
"""
from __future__ import annotations

from typing import Any

from app.errors import FHIRError, Issue

from . import fhirpath_adapter as fp
from .bindings import binding_issues
from .bundles import bundle_rule_issues
from .conformance_resources import conformance_issues
from .definitions import CoreDefinitions, core
from .extensions import extension_issues
from .narrative import narrative_problems
from .primitives import primitive_issues

# invariants decided in Python: ele-1 and ext-1 here (same meaning as the expression, see the module
# docstring); the Bundle invariants and ref-1 by the own checks of rules.py, which every level runs
NATIVE = frozenset({"ele-1", "ext-1", "ref-1", *(f"bdl-{n}" for n in range(1, 13))})

# dom-6 asks for narrative; a contained resource is presented by its container's narrative
# (https://hl7.org/fhir/R4/references.html#contained), so it is not asked of contained resources
NOT_FOR_CONTAINED = frozenset({"dom-6"})

# key -> (corrected expression, where the correction comes from): R4 expressions later versions fixed
CORRECTIONS: dict[str, tuple[str, str]] = {
    "que-7": (
        "operator = 'exists' implies (answer is boolean)",
        "FHIR R4B (4.3.0) and R5 Questionnaire que-7: `boolean`, the FHIR type of answerBoolean, where R4 "
        "has `Boolean`, the System type, which a FHIR boolean element is not",
    ),
    "dom-3": (
        "contained.where((('#'+id in (%resource.descendants().reference | "
        "%resource.descendants().ofType(canonical) | %resource.descendants().ofType(uri) | "
        "%resource.descendants().ofType(url))) or descendants().where(reference = '#').exists() or "
        "descendants().where(ofType(canonical) = '#').exists() or "
        "descendants().where(ofType(canonical) = '#').exists()).not()).trace('unmatched', id).empty()",
        "FHIR R5 (5.0.0) DomainResource dom-3: ofType() where R4 has as(), which FHIRPath defines on one "
        "item only, so the R4 expression is an evaluation error on any resource with more than one "
        "descendant",
    ),
}

# key -> (expression or None, severity or None, reason): where this server departs from R4's text
# because the official R4 package itself does not meet the rule as written
DEVIATIONS: dict[str, tuple[str | None, str | None, str]] = {
    "sdf-4": (
        "abstract = true or baseDefinition.exists() or kind = 'logical'", None,
        "not applied to logical models: the R4 package's own pattern models (Definition, Event, FiveWs, "
        "Request) have no baseDefinition; R5 gives every logical model the base type Base",
    ),
    "txt-2": (
        None, "warning",
        "reported as a warning: the R4 package's own ActivityDefinition-blood-tubes-supply (and three "
        "resources in Bundles) have a whitespace-only narrative",
    ),
}

# key -> why the engine cannot evaluate it (reported as information where it applies)
EXCLUDED: dict[str, str] = {}

_COMPLEX_SKIP = frozenset({"BackboneElement", "Element"})


class ElementRules:
    """What applies at one element definition path for one data type, compiled."""

    __slots__ = ("invariants", "excluded", "binding")

    def __init__(self, invariants: tuple[fp.Invariant, ...], excluded: tuple[tuple[str, str], ...],
                 binding: list[str] | None):
        self.invariants = invariants
        self.excluded = excluded
        self.binding = binding


_rules_cache: dict[tuple[str, str | None], ElementRules] = {}


def _constraint_ids(defs: CoreDefinitions, path: str, type_name: str | None, is_resource: bool) -> list[int]:
    ids: list[int] = list(defs.elements.get(path, ()))
    reused = defs.content_references.get(path)
    if reused:
        ids.extend(defs.elements.get(reused, ()))
    if type_name and not is_resource and type_name not in _COMPLEX_SKIP and type_name != path:
        for ancestor in defs.type_chain(type_name):
            ids.extend(defs.elements.get(ancestor, ()))
    if is_resource:
        for ancestor in defs.type_chain(path)[1:]:
            ids.extend(defs.elements.get(ancestor, ()))
    declared = defs.types.get(path)
    if declared and len(declared) > 1:
        ids.extend(defs.elements.get(declared[1], ()))
    return ids


def rules_for(path: str, type_name: str | None, is_resource: bool = False) -> ElementRules:
    """The compiled rules of an element definition path and data type (cached per process)."""
    cache_key = (path, type_name)
    found = _rules_cache.get(cache_key)
    if found is not None:
        return found
    defs = core()
    seen: set[str] = set()
    invariants: list[fp.Invariant] = []
    excluded: list[tuple[str, str]] = []
    for index in _constraint_ids(defs, path, type_name, is_resource):
        key, severity, human, expression = defs.constraints[index]
        if key in seen or key in NATIVE:
            continue
        seen.add(key)
        if key in EXCLUDED:
            excluded.append((key, EXCLUDED[key]))
            continue
        if key in CORRECTIONS:
            expression = CORRECTIONS[key][0]
        if key in DEVIATIONS:
            expression = DEVIATIONS[key][0] or expression
            severity = DEVIATIONS[key][1] or severity
        try:
            invariants.append(fp.compile_invariant(key, severity, human, expression))
        except FHIRError as err:
            excluded.append((key, f"the engine cannot compile it: {fp.compile_error_text(err)}"))
    binding = defs.bindings.get(path)
    found = _rules_cache[cache_key] = ElementRules(tuple(invariants), tuple(excluded), binding)
    return found


class RuleWalk:
    """Collects the rule-layer issues of one resource and every resource inside it."""

    def __init__(self) -> None:
        self.defs = core()
        self.env = fp.environment()
        self.issues: list[Issue] = []
        self.references: list[tuple[str, str]] = []  # (location, reference) inside the Bundle being walked

    # ------------------------------------------------------------------ resources

    def resource(self, data: dict[str, Any], location: str, root: fp.Node | None = None) -> None:
        resource_type = data.get("resourceType")
        if not isinstance(resource_type, str) or resource_type not in self.defs.bases:
            return  # not a type of R4: the schema layer reports it
        node = fp.root_node(data)
        self._checked(conformance_issues, location, data, location)
        if resource_type != "Bundle":
            self.element(node, resource_type, location, node, root or node, is_resource=True)
            return
        outer, self.references = self.references, []
        self.element(node, resource_type, location, node, root or node, is_resource=True)
        self._checked(bundle_rule_issues, location, data, location, self.references)
        self.references = outer

    # ------------------------------------------------------------------ elements

    def element(self, node: fp.Node, path: str, location: str, resource: fp.Node, root: fp.Node,
                *, is_resource: bool = False) -> None:
        data = node.data
        type_name = node.type
        rules = rules_for(path, type_name, is_resource)
        contained = is_resource and root is not node
        for invariant in rules.invariants:
            if contained and invariant.key in NOT_FOR_CONTAINED:
                continue
            self._evaluate(invariant, node, location, resource, root, path)
        for key, reason in rules.excluded:
            self.issues.append(Issue("information", "informational",
                                     f"{key}: not checked ({reason})", [location]))
        if type_name == "Reference" and type(data) is dict and type(data.get("reference")) is str:
            self.references.append((f"{location}.reference", data["reference"]))
        if rules.binding is not None:
            self._checked(binding_issues, location, self.defs, rules.binding, path, type_name, data, location)
        if type(data) is not dict:
            self._checked(primitive_issues, location, type_name, data, location)
            return
        if type_name == "Extension" and not is_resource:
            has_children = "extension" in data
            has_value = any(k.startswith(("value", "_value")) for k in data)
            if has_children == has_value:
                self.issues.append(_native_issue(
                    "ext-1", "Must have either extensions or value[x], not both", location))
        elif not is_resource and data and all(k == "id" for k in data):
            self.issues.append(_native_issue("ele-1", "All FHIR elements must have a @value or children",
                                             location))
        self._children(node, path, type_name, location, resource, root, is_resource)

    def _children(self, node: fp.Node, path: str, type_name: str | None, location: str, resource: fp.Node,
                  root: fp.Node, is_resource: bool, *, extensions_done: bool = False) -> None:
        data = node.data
        defs = self.defs
        if is_resource or type_name in _COMPLEX_SKIP or type_name is None:
            base = defs.definition_path(path)
        else:
            base = type_name
        choices = defs.choices.get(base, {})
        if not extensions_done and ("extension" in data or "modifierExtension" in data):
            self._checked(extension_issues, location, defs, data, base, path, type_name, location, is_resource)
        for field, value in data.items():
            if field == "resourceType":
                continue
            if field.startswith("_"):
                self._primitive_extras(field, value, data, base, choices, location)
                continue
            choice = choices.get(field)
            name = choice or field
            child_path = f"{base}.{choice}[x]" if choice else f"{base}.{field}"
            if child_path not in defs.types:
                continue  # not an element of R4: the schema layer reports it
            children = fp.child_nodes(node, name)
            if not children:
                continue
            if type(value) is list:
                places = [i for i, item in enumerate(value) if item is not None]
                if len(places) != len(children):
                    continue
                where = [f"{location}.{field}[{i}]" for i in places]
            else:
                where = [f"{location}.{field}"]
            for child, child_location in zip(children, where, strict=True):
                child_data = child.data
                if type(child_data) is dict and "resourceType" in child_data:
                    contained = field == "contained"
                    self.resource(child_data, child_location, root if contained else None)
                else:
                    self.element(child, child_path, child_location, resource, root)
                    if child.ext is not None:
                        self._primitive_extension(child.ext, child_path, child_location)

    def _primitive_extras(self, field: str, value: Any, data: dict[str, Any], base: str,
                          choices: dict[str, str], location: str) -> None:
        """`_x` without a value `x`: the primitive must still have an extension (ele-1)."""
        name = field[1:]
        if name in data:
            return  # visited with its value
        choice = choices.get(name)
        path = f"{base}.{choice}[x]" if choice else f"{base}.{name}"
        items = value if type(value) is list else [value]
        for index, item in enumerate(items):
            where = f"{location}.{name}[{index}]" if type(value) is list else f"{location}.{name}"
            if type(item) is dict and item and not item.get("extension"):
                self.issues.append(_native_issue(
                    "ele-1", "All FHIR elements must have a @value or children", where))
            elif type(item) is dict and item.get("extension"):
                self._primitive_extension(item, path, where)

    def _primitive_extension(self, ext: Any, path: str, location: str) -> None:
        if type(ext) is dict and ext.get("extension"):
            self._checked(extension_issues, location, self.defs, ext, path, path, "Element", location, False,
                          primitive=True)
            holder = fp.extension_holder(ext)
            self._children(holder, "Element", "Element", location, holder, holder, False, extensions_done=True)

    # ------------------------------------------------------------------ evaluation

    def _checked(self, check: Any, location: str, *args: Any, **kwargs: Any) -> None:
        """Run one check; content too malformed for it is reported at the element, never raised.

        The schema layer reports what is malformed; this says which rule could not look at it.
        """
        try:
            self.issues.extend(check(*args, **kwargs))
        except (TypeError, AttributeError, KeyError, IndexError, ValueError) as exc:
            self.issues.append(Issue("warning", "processing", f"The {check.__module__.rsplit('.', 1)[-1]} "
                                     f"rules could not check this element: its content is malformed "
                                     f"({type(exc).__name__})", [location]))

    def _evaluate(self, invariant: fp.Invariant, node: fp.Node, location: str, resource: fp.Node,
                  root: fp.Node, path: str) -> None:
        try:
            verdict = fp.evaluate(invariant, node, resource, root, self.env)
        except fp.EngineError as err:
            self.issues.append(Issue("warning", "processing",
                                     f"{invariant.key}: could not be evaluated here ({err})", [location],
                                     diagnostics=f"{invariant.key}: {invariant.expression}"))
            return
        if verdict is False:
            severity = "error" if invariant.severity == "error" else "warning"
            if invariant.narrative:
                # txt-1 and txt-2 share the expression htmlChecks(); each reports the problems of its rule
                for key, text in narrative_problems(node.data):
                    if key == invariant.key:
                        self.issues.append(Issue(severity, "invariant", f"{key}: {text}", [location],
                                                 diagnostics=f"{key}: {invariant.human}"))
                return
            self.issues.append(Issue(severity, "invariant", f"{invariant.key}: {invariant.human}", [location],
                                     diagnostics=f"{invariant.key} ({path}): {invariant.expression}"))


def _native_issue(key: str, human: str, location: str) -> Issue:
    return Issue("error", "invariant", f"{key}: {human}", [location], diagnostics=f"{key}: {human}")


def rule_issues(resource: dict[str, Any], location: str) -> list[Issue]:
    """The rule-layer issues of a resource (its contained resources and Bundle entries included)."""
    walk = RuleWalk()
    walk.resource(resource, location)
    return walk.issues


def excluded_invariants() -> dict[str, str]:
    """Every invariant not evaluated, with the reason (EXCLUDED and any the engine cannot compile)."""
    defs = core()
    out = dict(EXCLUDED)
    for key, severity, human, expression in defs.constraints:
        if key in NATIVE or key in out:
            continue
        try:
            fp.compile_invariant(key, severity, human, CORRECTIONS.get(key, (expression, ""))[0])
        except FHIRError as err:
            out[key] = f"the engine cannot compile it: {fp.compile_error_text(err)}"
    return out
