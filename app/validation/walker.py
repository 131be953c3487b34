"""One pass over a resource: the R4 JSON schema (compiled) and the element-level own checks, with FHIRPath.

The walk follows the compiled schema (`compiler.py`) and reports each problem at the FHIRPath of the
element (`Observation.code.coding[0].system`, `Bundle.entry[3].resource.status`); a primitive's
`_x` companion is reported as the element `x` itself, as FHIRPath sees them as one.

With `check_schema` the walk reports what the schema forbids: unknown elements, wrong JSON types,
values outside a pattern or enum, missing required elements; and, where the schema is silent, the
FHIR JSON rules (https://hl7.org/fhir/R4/json.html): a complex element is an object, arrays and
objects are never empty, `null` only stands in a primitive array whose `_x` partner has a value at
that index, and at most one type of a choice element is present. Always (own checks): the codes of
required bindings (`core_rules.json`), resource ids, references, and the Bundle rules.
"""
from __future__ import annotations

from typing import Any

from app.errors import Issue

from .compiler import (
    ANY,
    COMPLEX,
    PRIMITIVE,
    REFERENCE,
    RESOURCE,
    RESOURCE_ID,
    CompiledSchema,
    Node,
    Prop,
    lexical,
)
from .rules import CONDITIONAL_BUNDLE_TYPES, bundle_issues, id_problem, reference_problem

_NO_IDS: frozenset[str] = frozenset()


class Walker:
    """Collects the issues of one resource (and the resources inside it)."""

    __slots__ = ("compiled", "check_schema", "issues", "local_ids", "conditional_ok")

    def __init__(self, compiled: CompiledSchema, *, check_schema: bool = True, conditional_ok: bool = False):
        self.compiled = compiled
        self.check_schema = check_schema
        self.issues: list[Issue] = []
        self.local_ids: frozenset[str] = _NO_IDS
        self.conditional_ok = conditional_ok

    def fail(self, code: str, text: str, expr: str) -> None:
        self.issues.append(Issue("error", code, text, [expr]))

    # ------------------------------------------------------------------ resources

    def resource(self, obj: Any, expr: str, *, contained: bool = False) -> None:
        if type(obj) is not dict:
            self.fail("structure", "A resource must be a JSON object", expr)
            return
        resource_type = obj.get("resourceType")
        if resource_type is None:
            self.fail("required", "Missing resourceType", expr)
            return
        node = self.compiled.resource_node(resource_type) if type(resource_type) is str else None
        if node is None:
            self.fail("not-supported", f"Unknown resource type '{resource_type}'", expr)
            return
        saved_ids, saved_conditional = self.local_ids, self.conditional_ok
        if not contained:
            self.local_ids = _contained_ids(obj)
        if resource_type == "Bundle":
            self.conditional_ok = obj.get("type") in CONDITIONAL_BUNDLE_TYPES
        self.object(node, obj, expr)
        if resource_type == "Bundle":
            self.issues.extend(bundle_issues(obj, expr))
        self.local_ids, self.conditional_ok = saved_ids, saved_conditional

    # ------------------------------------------------------------------ elements

    def object(self, node: Node, obj: Any, expr: str) -> None:
        if type(obj) is not dict:
            if self.check_schema:
                self.fail("structure", f"Expected a JSON object ({node.name}), found {_json_type(obj)}", expr)
            return
        check_schema = self.check_schema
        if not obj and check_schema:
            self.fail("structure", "An element must have a value or children (ele-1)", expr)
            return
        props = node.props
        choices_seen: dict[str, str] | None = None
        for key, value in obj.items():
            prop = props.get(key)
            if prop is None:
                if check_schema:
                    self.fail("structure", f"Unknown element '{key}'", f"{expr}.{key}")
                continue
            if prop.choice is not None and check_schema:
                if choices_seen is None:
                    choices_seen = {prop.choice: key}
                elif prop.choice in choices_seen:
                    self.fail("structure", f"Only one type of {prop.choice}[x] is allowed: found "
                                           f"{choices_seen[prop.choice]} and {key}", f"{expr}.{key}")
                else:
                    choices_seen[prop.choice] = key
            if prop.array:
                if type(value) is not list:
                    if check_schema:
                        self.fail("structure", f"'{key}' must be a JSON array", f"{expr}.{prop.element}")
                    continue
                if not value:
                    if check_schema:
                        self.fail("structure", f"'{key}' must not be an empty array",
                                  f"{expr}.{prop.element}")
                    continue
                self.array(prop, value, obj, expr)
                continue
            kind = prop.kind
            if kind == PRIMITIVE:
                self.primitive(prop, value, expr, prop.element)
            elif kind == COMPLEX:
                self.object(prop.node or self.compiled.target(prop), value, f"{expr}.{prop.element}")
            elif kind == RESOURCE:
                self.resource(value, f"{expr}.{key}")
        if check_schema:
            for name, alternatives in node.required:
                for alternative in alternatives:
                    if alternative in obj:
                        break
                else:
                    label = name[:-3] if name.endswith("[x]") else name
                    self.fail("required", f"Missing required element '{name}'", f"{expr}.{label}")

    def array(self, prop: Prop, value: list[Any], obj: dict[str, Any], expr: str) -> None:
        kind = prop.kind
        element = prop.element
        if kind == PRIMITIVE:
            partner = obj.get("_" + prop.name)
            for index, item in enumerate(value):
                if item is None:
                    if not (type(partner) is list and index < len(partner) and partner[index] is not None):
                        if self.check_schema:
                            self.fail("structure", f"null in '{prop.name}' needs a value in '_{prop.name}' "
                                                   "at the same index", f"{expr}.{element}[{index}]")
                    continue
                self.primitive(prop, item, expr, f"{element}[{index}]")
        elif kind == COMPLEX:
            node = prop.node or self.compiled.target(prop)
            partner_prop = prop.is_extension_of
            for index, item in enumerate(value):
                if item is None and partner_prop is not None:
                    partner = obj.get(element)
                    # a null on both sides is reported once, by the primitive array
                    if type(partner) is list and index < len(partner):
                        continue
                    if self.check_schema:
                        self.fail("structure", f"null in '{prop.name}' needs a value in '{element}' at "
                                               "the same index", f"{expr}.{element}[{index}]")
                    continue
                self.object(node, item, f"{expr}.{element}[{index}]")
        elif kind == RESOURCE:
            contained = prop.name == "contained"
            for index, item in enumerate(value):
                self.resource(item, f"{expr}.{element}[{index}]", contained=contained)
        elif kind != ANY:
            raise AssertionError(kind)

    def primitive(self, prop: Prop, value: Any, expr: str, element: str) -> None:
        types = prop.types
        if self.check_schema:
            if types is not None and type(value) not in types:
                self.fail("value", f"Expected {prop.type_name} ({_expected(types)}), "
                                   f"found {_json_type(value)}", f"{expr}.{element}")
                return
            search = prop.search
            if search is not None:
                if prop.on_text:
                    if not search(lexical(value)):
                        self.fail("value", f"Invalid {prop.type_name} value {lexical(value)}",
                                  f"{expr}.{element}")
                        return
                elif not search(value):
                    self.fail("value", f"Invalid {prop.type_name} value '{_clip(value)}'",
                              f"{expr}.{element}")
                    return
            enum = prop.enum
            if enum is not None and value not in enum:
                if prop.codes is None:
                    self.fail("code-invalid", f"Value '{_clip(value)}' is not one of {_options(enum)}",
                              f"{expr}.{element}")
                    return
        elif type(value) is not str:
            return
        codes = prop.codes
        if codes is not None and value not in codes:
            self.fail("code-invalid", f"Code '{_clip(value)}' is not in the required value set "
                                      f"{prop.value_set}: {_options(codes)}", f"{expr}.{element}")
            return
        check = prop.check
        if check and type(value) is str:
            if check == RESOURCE_ID:
                problem = id_problem(value)
            elif check == REFERENCE:
                problem = reference_problem(value, self.compiled.resource_types, self.local_ids,
                                            self.conditional_ok)
            else:
                problem = None
            if problem is not None:
                self.fail("value", problem, f"{expr}.{element}")


def _contained_ids(obj: dict[str, Any]) -> frozenset[str]:
    contained = obj.get("contained")
    if type(contained) is not list:
        return _NO_IDS
    return frozenset(c["id"] for c in contained if type(c) is dict and type(c.get("id")) is str)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if type(value) is bool:
        return "a boolean"
    if type(value) in (int, float):
        return "a number"
    if type(value) is str:
        return "a string"
    if type(value) is list:
        return "an array"
    return "an object"


def _expected(types: tuple[type, ...]) -> str:
    if str in types:
        return "a JSON string"
    if bool in types:
        return "a JSON boolean"
    return "a JSON number"


def _clip(value: Any, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _options(codes: frozenset[Any], limit: int = 12) -> str:
    ordered = sorted(str(c) for c in codes)
    shown = ", ".join(ordered[:limit])
    return shown + (f", ... ({len(ordered)} codes)" if len(ordered) > limit else "")
