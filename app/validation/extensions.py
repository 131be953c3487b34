"""Extensions against their definitions (R4 core and registered ones): URL, context, value type, cardinality.

For every `extension` and `modifierExtension` of an element (https://hl7.org/fhir/R4/extensibility.html):

- a URL of a core extension definition: the element must be one of its `context`s (an element path,
  a data type or an ancestor of it, `Element`, `Resource`; or the URL of the extension it sits in),
  the value must be one of its value types (none for a complex extension), the extension may not
  repeat beyond its cardinality, and the sub-extensions of a complex extension must be those it
  defines (relative URLs), each with its value type and cardinality;
- the URL of an extension definition registered with `register_extension_definitions` (the project's own
  StructureDefinitions, shipped among its artifacts): checked in the same way as a core one;
- any other URL, as the HL7 Java validator treats an extension it cannot find
  (`InstanceValidator.checkExtension`): an unknown `modifierExtension` is an error; an unknown
  `extension` is an error ("could not be found so is not allowed here") unless its URL is in a domain
  the validator is told to accept (`-extension <domain>`, or example URLs under
  `-allow-example-urls`), where it is a warning. `TRUSTED_EXTENSION_DOMAINS` plays that part here:
  HL7's own namespace (extensions of IGs such as SDC and CPG, whose definitions this server does not
  ship; the R4 package's own examples use `valueset-definition` from it), this project's canonical
  base, and the example domains; `LBP_VALIDATION_EXTENSION_DOMAINS` (comma-separated URL prefixes, or
  `any`) adds to them, as `-extension` does for the HL7 validator.
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from app.errors import Issue

from .definitions import CoreDefinitions

TRUSTED_EXTENSION_DOMAINS = (
    "http://hl7.org/fhir/",
    "https://lbp-pathway.org/fhir/",
    "http://example.org/",
    "https://example.org/",
    "http://example.com/",
    "https://example.com/",
    "http://acme.com/",
    "http://acme.org/",
    "http://nema.org/",
)
DOMAINS_SETTING = "LBP_VALIDATION_EXTENSION_DOMAINS"
EXTENSION_BASE = "http://hl7.org/fhir/StructureDefinition/Extension"

# extension definitions registered beside the core ones (by URL), in the form of the core table
_registered: dict[str, dict[str, Any]] = {}  # the shipped artifact folders' and those given by a caller
_stored: dict[str, dict[str, Any]] = {}  # the store's, replaced whole each time its knowledge is rebuilt


def _element_types(element: Mapping[str, Any]) -> list[str]:
    return [str(t["code"]) for t in element.get("type", []) or [] if isinstance(t, Mapping) and t.get("code")]


def extension_definition(sd: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the checks need of an extension StructureDefinition (its snapshot, else its differential): contexts,
    cardinality, value types (none: a complex extension; None: any, a differential that leaves value[x] as
    the base has it) and sub-extensions. None when `sd` does not define an extension."""
    if sd.get("resourceType") != "StructureDefinition" or sd.get("type") != "Extension":
        return None
    if sd.get("baseDefinition") != EXTENSION_BASE and sd.get("derivation") != "constraint":
        return None
    view = sd.get("snapshot") or sd.get("differential") or {}
    elements = [e for e in view.get("element", []) or [] if isinstance(e, Mapping)]
    by_id = {str(e.get("id") or e.get("path")): e for e in elements}
    root = by_id.get("Extension", {})
    value = by_id.get("Extension.value[x]")
    values: list[str] | None
    if value is None:
        values = None if "snapshot" not in sd else []
    else:
        values = _element_types(value) if value.get("max", "1") != "0" else []
        if value.get("max", "1") != "0" and not values:
            values = None
    out: dict[str, Any] = {
        "context": [[c.get("type"), c.get("expression")] for c in sd.get("context", []) or []
                    if isinstance(c, Mapping)],
        "min": root.get("min", 0),
        "max": root.get("max", "*"),
        "value": values,
    }
    children: dict[str, Any] = {}
    for element in elements:
        slice_name = element.get("sliceName")
        if element.get("path") != "Extension.extension" or not slice_name:
            continue
        prefix = str(element.get("id"))
        url_element = by_id.get(f"{prefix}.url", {})
        child_value = by_id.get(f"{prefix}.value[x]", {})
        children[str(url_element.get("fixedUri") or slice_name)] = {
            "min": element.get("min", 0),
            "max": element.get("max", "*"),
            "value": _element_types(child_value) if child_value.get("max", "1") != "0" else [],
        }
    if children:
        out["children"] = children
    return out


def register_extension_definitions(resources: Iterable[Mapping[str, Any]]) -> list[str]:
    """Check extensions of these StructureDefinitions' URLs as core ones from now on (in this process); the URLs
    registered. A URL of a core definition is not replaced."""
    urls = []
    for resource in resources:
        definition = extension_definition(resource)
        url = resource.get("url")
        if definition is not None and isinstance(url, str):
            _registered[url] = definition
            urls.append(url)
    return urls


def replace_stored_extension_definitions(resources: Iterable[Mapping[str, Any]]) -> list[str]:
    """The extension StructureDefinitions now in the store, in place of the ones it held before: an extension
    whose definition was deleted from the store is unknown again (unless the software ships it)."""
    fresh: dict[str, dict[str, Any]] = {}
    for resource in resources:
        definition = extension_definition(resource)
        url = resource.get("url")
        if definition is not None and isinstance(url, str):
            fresh[url] = definition
    _stored.clear()
    _stored.update(fresh)
    return sorted(fresh)


def registered_extensions() -> dict[str, dict[str, Any]]:
    return {**_registered, **_stored}


def _definition(defs: CoreDefinitions, url: str) -> dict[str, Any] | None:
    return defs.extensions.get(url) or _stored.get(url) or _registered.get(url)


@cache
def trusted_domains() -> tuple[str, ...] | None:
    """The URL prefixes whose unknown extensions are warnings; None: every domain (`any`)."""
    extra = [d.strip() for d in os.environ.get(DOMAINS_SETTING, "").split(",") if d.strip()]
    if "any" in extra:
        return None
    return TRUSTED_EXTENSION_DOMAINS + tuple(extra)


def _trusted(url: str) -> bool:
    domains = trusted_domains()
    return domains is None or url.startswith(domains)


def _value_type(extension: dict[str, Any]) -> str | None:
    for key in extension:
        if key.startswith("value") and len(key) > 5:
            name = key[5:]
            lowered = name[0].lower() + name[1:]
            return lowered if lowered in _PRIMITIVES else name
    return None


_PRIMITIVES = frozenset({
    "base64Binary", "boolean", "canonical", "code", "date", "dateTime", "decimal", "id", "instant", "integer",
    "markdown", "oid", "positiveInt", "string", "time", "unsignedInt", "uri", "url", "uuid",
})


def _is_relative(url: str) -> bool:
    return ":" not in url


def _contexts_of(defs: CoreDefinitions, path: str, base: str, type_name: str | None, is_resource: bool,
                 primitive: bool) -> set[str]:
    names = {path, defs.definition_path(path), base}
    if path.endswith("[x]"):
        names.add(path[:-3])
    types: list[str] = []
    if primitive:
        declared = defs.types.get(path)
        types = list(declared[0]) if declared else []
    elif type_name:
        types = [type_name]
    for type_code in types:
        names.update(defs.type_chain(type_code))
    if is_resource:
        # R4's "Element" context is meant as "anywhere" and is used on resources by the package itself
        names.update(defs.type_chain(path))
        names.update({"Resource", "Element"})
    else:
        names.add("Element")
        if type_name == "BackboneElement" or type_name is None:
            names.add("BackboneElement")
    return names


def extension_issues(defs: CoreDefinitions, holder: dict[str, Any], base: str, path: str,
                     type_name: str | None, location: str, is_resource: bool, *,
                     primitive: bool = False) -> list[Issue]:
    """The issues of the extensions held by one element (`holder`)."""
    issues: list[Issue] = []
    contexts: set[str] | None = None
    holder_url = holder.get("url")
    parent = _definition(defs, holder_url) if type_name == "Extension" and isinstance(holder_url, str) else None
    for field in ("extension", "modifierExtension"):
        items = holder.get(field)
        if type(items) is not list:
            continue
        counts: Counter[str] = Counter()
        for index, extension in enumerate(items):
            if type(extension) is not dict or not isinstance(extension.get("url"), str):
                continue
            url = extension["url"]
            where = f"{location}.{field}[{index}]"
            counts[url] += 1
            if type_name == "Extension" and _is_relative(url):
                if parent is not None and isinstance(holder_url, str):
                    issues.extend(_sub_extension(parent, holder_url, extension, where, counts[url]))
                continue
            definition = _definition(defs, url)
            if definition is None:
                issues.append(_unknown(url, field, where))
                continue
            if contexts is None:
                contexts = _contexts_of(defs, path, base, type_name, is_resource, primitive)
            issues.extend(_known(definition, url, extension, holder, contexts, where, counts[url]))
    return issues


def _unknown(url: str, field: str, where: str) -> Issue:
    if field == "modifierExtension" and not _trusted(url):
        return Issue("error", "structure", f"The modifier extension {url} is unknown: a modifier extension "
                     "that cannot be understood makes the element unusable", [where])
    if _trusted(url):
        kind = "modifier extension" if field == "modifierExtension" else "extension"
        return Issue("warning", "informational", f"Unknown {kind} {url}: its definition is not known "
                     "here, so its content is not checked", [where])
    return Issue("error", "structure", f"The extension {url} could not be found so is not allowed here",
                 [where])


def _known(definition: dict[str, Any], url: str, extension: dict[str, Any], holder: dict[str, Any],
           contexts: set[str], where: str, seen: int) -> list[Issue]:
    issues: list[Issue] = []
    allowed = False
    for kind, expression in definition["context"]:
        if kind == "element" and expression in contexts:
            allowed = True
        elif kind == "extension" and holder.get("url") == expression:
            allowed = True
        elif kind == "fhirpath":
            allowed = True  # a FHIRPath context is not evaluated (listed in docs/validation.md)
    if not allowed:
        shown = ", ".join(expression for _, expression in definition["context"])
        issues.append(Issue("warning", "structure", f"The extension {url} is not allowed here: its context is "
                            f"{shown}", [where]))
    issues.extend(_value_issues(definition, url, extension, where))
    maximum = definition["max"]
    if maximum != "*" and seen == int(maximum) + 1:
        issues.append(Issue("error", "structure", f"The extension {url} may appear at most {maximum} time(s) "
                            "here", [where]))
    return issues


def _value_issues(definition: dict[str, Any], url: str, extension: dict[str, Any], where: str) -> list[Issue]:
    value_type = _value_type(extension)
    allowed = definition["value"]
    if value_type is None or allowed is None:
        return []  # a missing value (or both value and extensions) is ext-1's finding; None: any type
    if not allowed:
        return [Issue("error", "structure", f"The extension {url} is a complex extension: it takes "
                      f"sub-extensions, not value{value_type[0].upper()}{value_type[1:]}", [where])]
    if value_type not in allowed:
        return [Issue("error", "structure", f"The extension {url} takes a value of type "
                      f"{', '.join(allowed)}, not {value_type}", [where])]
    return []


def _sub_extension(parent: dict[str, Any], parent_url: str, extension: dict[str, Any], where: str,
                   seen: int) -> list[Issue]:
    url = extension["url"]
    children = parent.get("children", {})
    child = children.get(url)
    if child is None:
        if not children and not parent["value"]:
            return []
        return [Issue("warning", "structure", f"The extension {parent_url} defines no sub-extension '{url}' "
                      f"(it defines {', '.join(children) or 'none'})", [where])]
    issues = _value_issues(child, f"{parent_url}#{url}", extension, where)
    maximum = child["max"]
    if maximum != "*" and seen == int(maximum) + 1:
        issues.append(Issue("error", "structure", f"The sub-extension '{url}' of {parent_url} may appear at "
                            f"most {maximum} time(s)", [where]))
    return issues
