"""The official FHIR R4 JSON schema, compiled definition by definition into nodes the walker follows.

The schema (`schema/fhir.schema.json.gz`, see the README beside it) is read once. Each definition is
compiled into a `Node` the first time an instance reaches it, so a resource type costs its compile
once per process and never per call. A node maps every JSON property the schema allows to a `Prop`
that carries what the schema says of it (JSON type, pattern, enum, const, array or single, target
definition) plus what `core_rules.json` adds for the same element (required, choice group, the
codes of its required binding) and the own check that applies (resource id, reference).

Keywords of the R4 schema and how they are honoured: `$ref`, `type`, `items`, `properties`,
`additionalProperties: false`, `required`, `enum`, `const` and `pattern` as in JSON Schema draft-06,
with Python's `re.search` as the jsonschema package uses; the `oneOf` of `ResourceList` is decided by
`resourceType` as its `discriminator` says. A pattern given to a number or boolean type (which JSON
Schema ignores) is applied to the value's JSON text, so `integer`, `positiveInt` and `unsignedInt`
reject 1.5 as the pattern intends. Patterns use ASCII classes (`\\s` is space, tab, CR, LF, as in
the XML Schema and Java regexes FHIR's patterns were written for). Every primitive property gets its
`_x` companion, which the schema omits for `canonical` elements.

Backbone definitions are named by their first use (`Bundle_Request`); each is given the element path
that defines it in the StructureDefinitions, following `contentReferences` of `core_rules.json`
(`Questionnaire.item.item` reuses `Questionnaire.item`), so it finds its rules.
"""
from __future__ import annotations

import gzip
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import orjson

SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "fhir.schema.json.gz"
RULES_PATH = Path(__file__).resolve().parent / "core_rules.json"
SCHEMA_ID = "http://hl7.org/fhir/json-schema/4.0"

# Prop.kind
PRIMITIVE = 0  # a JSON string, number or boolean (or an enum / const)
COMPLEX = 1  # a JSON object following another definition
RESOURCE = 2  # a JSON object whose resourceType picks the definition (ResourceList)
ANY = 3  # xhtml: the schema sets no constraint

# Prop.check: the own check a value gets besides the schema
NO_CHECK = 0
RESOURCE_ID = 1
REFERENCE = 2

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "boolean": (bool,),
}


@cache
def schema() -> dict[str, Any]:
    with gzip.open(SCHEMA_PATH, "rb") as handle:
        loaded: dict[str, Any] = orjson.loads(handle.read())
    if loaded.get("id") != SCHEMA_ID:
        raise RuntimeError(f"{SCHEMA_PATH} is not the FHIR R4 JSON schema ({loaded.get('id')})")
    return loaded


def definitions() -> dict[str, dict[str, Any]]:
    defs: dict[str, dict[str, Any]] = schema()["definitions"]
    return defs


@cache
def resource_types() -> frozenset[str]:
    """The 146 resource types of R4, from the schema's discriminator."""
    return frozenset(schema()["discriminator"]["mapping"])


@cache
def core_rules() -> dict[str, Any]:
    rules: dict[str, Any] = orjson.loads(RULES_PATH.read_bytes())
    return rules


def lexical(value: Any) -> str:
    """The JSON text of a number or boolean, which the schema's patterns for those types describe."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return repr(value)


class Prop:
    """What one JSON property of a definition may hold."""

    __slots__ = (
        "name", "element", "kind", "array", "types", "type_name", "search", "on_text", "enum", "codes",
        "value_set", "target", "node", "choice", "check", "is_extension_of",
    )

    def __init__(self, name: str):
        self.name = name
        # the FHIR element the property belongs to: `_birthDate` is part of `birthDate`
        self.element = name[1:] if name.startswith("_") else name
        self.kind = PRIMITIVE
        self.array = False
        self.types: tuple[type, ...] | None = None
        self.type_name = ""
        self.search: Callable[[str], Any] | None = None
        self.on_text = False  # the pattern applies to the JSON text of a number / boolean
        self.enum: frozenset[Any] | None = None
        self.codes: frozenset[str] | None = None
        self.value_set = ""
        self.target = ""
        self.node: Node | None = None
        self.choice: str | None = None
        self.check = NO_CHECK
        self.is_extension_of: Prop | None = None  # for `_x`: the primitive property `x`


class Node:
    """One compiled schema definition."""

    __slots__ = ("name", "path", "props", "required", "resource_type")

    def __init__(self, name: str, path: str):
        self.name = name
        self.path = path  # the element path of the R4 StructureDefinitions (`Bundle.entry.request`)
        self.props: dict[str, Prop] = {}
        # (element name for the message, JSON properties any one of which satisfies it)
        self.required: tuple[tuple[str, tuple[str, ...]], ...] = ()
        self.resource_type: str | None = None


@cache
def element_paths() -> dict[str, str]:
    """Definition name -> element path; a backbone definition gets the path that defines it.

    `CapabilityStatement_Operation` -> `CapabilityStatement.rest.resource.operation`, not its reuse
    `CapabilityStatement.rest.operation`.
    """
    defs = definitions()
    reused: dict[str, str] = core_rules()["contentReferences"]
    paths: dict[str, str] = {}
    queue: list[str] = []
    for name, definition in defs.items():
        if "_" not in name and "properties" in definition:
            paths[name] = name
            queue.append(name)
    while queue:
        parent = queue.pop(0)
        for prop_name, spec in defs[parent].get("properties", {}).items():
            target = _ref_name(spec.get("items", spec))
            if target and "_" in target and target not in paths:
                path = f"{paths[parent]}.{prop_name}"
                paths[target] = reused.get(path, path)
                queue.append(target)
    return paths


def _ref_name(spec: dict[str, Any]) -> str:
    ref = spec.get("$ref", "")
    return ref.rsplit("/", 1)[-1] if ref else ""


class CompiledSchema:
    """The compiled definitions; `node(name)` compiles on first use."""

    def __init__(self) -> None:
        self.defs = definitions()
        self.paths = element_paths()
        rules = core_rules()
        self.rule_elements: dict[str, dict[str, Any]] = rules["elements"]
        self.value_sets = {url: frozenset(codes) for url, codes in rules["valueSets"].items()}
        self.resource_types = resource_types()
        self.nodes: dict[str, Node] = {}

    def resource_node(self, resource_type: str) -> Node | None:
        if resource_type not in self.resource_types:
            return None
        return self.nodes.get(resource_type) or self.node(resource_type)

    def node(self, name: str) -> Node:
        found = self.nodes.get(name)
        if found is None:
            found = self.nodes[name] = self._compile(name)
        return found

    def target(self, prop: Prop) -> Node:
        node = prop.node
        if node is None:
            node = prop.node = self.node(prop.target)
        return node

    def _compile(self, name: str) -> Node:
        definition = self.defs[name]
        path = self.paths.get(name, name)
        node = Node(name, path)
        rules = self.rule_elements.get(path, {})
        choice_of = {member: base for base, members in rules.get("choices", {}).items() for member in members}
        bindings = rules.get("bindings", {})
        for prop_name, spec in definition.get("properties", {}).items():
            prop = self._compile_prop(prop_name, spec)
            if not prop_name.startswith("_"):
                prop.choice = choice_of.get(prop_name)
                url = bindings.get(prop_name)
                if url is not None and url in self.value_sets:
                    prop.codes = self.value_sets[url]
                    prop.value_set = url
            if name == "Reference" and prop_name == "reference":
                prop.check = REFERENCE
            node.props[prop_name] = prop
        for prop in list(node.props.values()):
            if prop.kind == PRIMITIVE and not prop.name.startswith("_") and prop.name != "resourceType":
                # every primitive may carry id/extensions in `_x`; the schema omits `_x` for canonical
                companion = "_" + prop.name
                if companion not in node.props:
                    node.props[companion] = self._compile_prop(
                        companion, {"type": "array", "items": {"$ref": "#/definitions/Element"}}
                        if prop.array else {"$ref": "#/definitions/Element"})
        for prop in node.props.values():
            if prop.name.startswith("_") and prop.element in node.props:
                prop.is_extension_of = node.props[prop.element]
        resource_type = definition.get("properties", {}).get("resourceType", {}).get("const")
        if resource_type:
            node.resource_type = resource_type
            node.props["id"].check = RESOURCE_ID
        node.required = self._required(definition, rules, node)
        return node

    def _required(self, definition: dict[str, Any], rules: dict[str, Any], node: Node) -> tuple:
        required: dict[str, tuple[str, ...]] = {}
        for name in definition.get("required", []):
            if name != "resourceType":
                required[name] = (name,)
        choices = rules.get("choices", {})
        for name in rules.get("required", []):
            if name.endswith("[x]"):
                members = choices.get(name[:-3], [])
                required[name] = tuple(m for member in members for m in (member, "_" + member))
            elif name in node.props:
                required.setdefault(name, (name, "_" + name))
        return tuple(required.items())

    def _compile_prop(self, name: str, spec: dict[str, Any]) -> Prop:
        prop = Prop(name)
        if spec.get("type") == "array":
            prop.array = True
            spec = spec["items"]
        ref = _ref_name(spec)
        if ref == "ResourceList":
            prop.kind = RESOURCE
            return prop
        if ref:
            referenced = self.defs[ref]
            if "properties" in referenced:
                prop.kind = COMPLEX
                prop.target = ref
                return prop
            if not referenced:  # xhtml: {}
                prop.kind = ANY
                return prop
            prop.type_name = ref
            spec = referenced
        prop.kind = PRIMITIVE
        if "type" in spec:
            prop.types = _JSON_TYPES[spec["type"]]
            prop.on_text = spec["type"] != "string"
            if not prop.type_name:
                prop.type_name = spec["type"]
        if "pattern" in spec:
            # ASCII classes: the FHIR patterns mean \s as XML Schema and Java do (space, tab, CR, LF),
            # so a no-break space is text, not whitespace
            prop.search = re.compile(spec["pattern"], re.ASCII).search
        if "enum" in spec or "const" in spec:
            prop.enum = frozenset(spec["enum"]) if "enum" in spec else frozenset([spec["const"]])
            # only strings equal the (string) enum values, so the type check gives the same verdict
            prop.types = prop.types or (str,)
            prop.type_name = prop.type_name or "code"
        return prop


@cache
def compiled() -> CompiledSchema:
    return CompiledSchema()


def allows(resource_type: str, location: tuple[str | int, ...]) -> bool:
    """Whether the R4 schema has the element at `location` (JSON property names and array indexes)."""
    compiled_schema = compiled()
    node = compiled_schema.resource_node(resource_type)
    if node is None:
        return False
    names = [step for step in location if isinstance(step, str)]
    for depth, step in enumerate(names):
        prop = node.props.get(step)
        if prop is None:
            return False
        if depth == len(names) - 1:
            return True
        if prop.kind != COMPLEX:
            return False
        node = compiled_schema.target(prop)
    return True
