"""Terminology index over the loaded CodeSystems and ValueSets: membership, $expand, $validate-code, $lookup.

Membership follows docs/artifact-conventions.md: for the ICD-10 family (WHO ICD-10, ICD-10-SE, Danish
SKS) and ATC a code listed in a ValueSet matches itself and all its sub-codes (prefix), with or without
the dot, case-insensitive; SKS diagnosis codes carry a leading ``D`` (``DM545`` = ``M54.5``). Every
other system matches exactly. Which system URIs form a family is data (`PREFIX_FAMILIES`), which the
application may replace from its configuration (see `TerminologyIndex(prefix_families=...)`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.errors import FHIRError

ICD10 = "http://hl7.org/fhir/sid/icd-10"
ATC = "http://www.whocc.no/atc"

# family name -> {system URI -> leading marker that the system puts before the family code}.
# The ICD-10-SE and SKS URIs are the ones the project's ValueSets use (valuesets/*.json compose
# includes); the OIDs are the registered ones (Socialstyrelsen KSH97/ICD-10-SE; SKS diagnosis
# codes, as used by MedCom), accepted too because journals send them.
PREFIX_FAMILIES: dict[str, dict[str, str]] = {
    "icd-10": {
        ICD10: "",
        "http://hl7.org/fhir/sid/icd-10-se": "",
        "urn:oid:1.2.752.116.1.1.1.1.3": "",
        "http://hl7.se/fhir/CodeSystem/icd-10-se": "",
        "urn:oid:1.2.208.176.2.4.12": "D",
        "urn:oid:1.2.208.176.2.4": "D",
        "http://medcomfhir.dk/ig/terminology/CodeSystem/sks": "D",
        "https://lbp-pathway.org/fhir/CodeSystem/sks-d": "D",
    },
    "atc": {ATC: "", "urn:oid:2.16.840.1.113883.6.73": ""},
}

_HIERARCHY_OPS = {"is-a", "descendent-of", "is-not-a", "generalizes"}


def _without_marker(norm: str, marker: str) -> str:
    """A normalised family code without its system's leading marker (SKS 'DM545' -> 'M545').

    The marker is dropped only before a letter: every ICD-10 code starts with a letter, so 'DD48' is the SKS
    form of D48 while 'D48' (a D-chapter code sent without the SKS prefix) is D48 itself, not '48'.
    """
    if marker and norm.startswith(marker) and norm[len(marker) : len(marker) + 1].isalpha():
        return norm[len(marker) :]
    return norm


def canonical_parts(canonical: str) -> tuple[str, str | None]:
    """Split ``url|version``."""
    url, _, version = canonical.partition("|")
    return url, (version or None)


def parameters(*parts: tuple[str, str, Any] | None) -> dict[str, Any]:
    """A Parameters resource from (name, value[x] element, value) triples; None entries are skipped."""
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": p[0], p[1]: p[2]} for p in parts if p],
    }


@dataclass(frozen=True)
class _Concept:
    system: str
    code: str
    display: str | None
    designations: tuple[dict[str, Any], ...] = ()
    properties: tuple[dict[str, Any], ...] = ()
    parents: tuple[str, ...] = ()
    definition: str | None = None


@dataclass
class _CodeSystem:
    url: str
    resource: dict[str, Any]
    concepts: dict[str, _Concept] = field(default_factory=dict)
    case_sensitive: bool = True

    def key(self, code: str) -> str:
        return code if self.case_sensitive else code.lower()

    def get(self, code: str) -> _Concept | None:
        return self.concepts.get(self.key(code))

    def descendants(self, code: str) -> set[str]:
        children: dict[str, list[str]] = {}
        for concept in self.concepts.values():
            for parent in concept.parents:
                children.setdefault(self.key(parent), []).append(concept.code)
        out: set[str] = set()
        stack = list(children.get(self.key(code), []))
        while stack:
            child = stack.pop()
            if child not in out:
                out.add(child)
                stack.extend(children.get(self.key(child), []))
        return out


@dataclass
class _Rule:
    """One compose.include or compose.exclude, compiled for membership tests."""

    system_key: str | None  # a family name, a system URI, or None (only valueSet criteria)
    family: bool
    codes: frozenset[str] | None  # normalised codes; None = every code of the system
    descendants_only: bool = False
    patterns: tuple[re.Pattern[str], ...] = ()
    valuesets: tuple[str, ...] = ()
    local: _CodeSystem | None = None

    def matches(self, index: TerminologyIndex, key: str | None, code: str, seen: frozenset[str]) -> bool:
        if self.system_key is not None:
            if key != self.system_key:
                return False
            if self.local is not None and self.local.get(code) is None and self.codes is None:
                return False
            if self.codes is not None:
                if self.family:
                    # a listed code stands for itself and every code it prefixes
                    longest = len(code) - 1 if self.descendants_only else len(code)
                    if not any(code[:i] in self.codes for i in range(1, longest + 1)):
                        return False
                elif code not in self.codes:
                    return False
            if self.patterns and not any(p.fullmatch(code) for p in self.patterns):
                return False
        return all(index._member_key(vs, key, code, seen) for vs in self.valuesets)


def _split_rules(rules: list[_Rule]) -> tuple[dict[str, tuple[bool, frozenset[str]]], list[_Rule]]:
    """Plain code lists merged per system (or family) for set lookups; the other rules kept as they are."""
    merged: dict[str, tuple[bool, set[str]]] = {}
    rest: list[_Rule] = []
    for rule in rules:
        plain = (
            rule.system_key is not None
            and rule.codes is not None
            and not rule.descendants_only
            and not rule.patterns
            and not rule.valuesets
        )
        if plain:
            family, codes = merged.setdefault(rule.system_key, (rule.family, set()))  # type: ignore[arg-type]
            codes.update(rule.codes or ())
        else:
            rest.append(rule)
    return {key: (family, frozenset(codes)) for key, (family, codes) in merged.items()}, rest


def _in_table(table: dict[str, tuple[bool, frozenset[str]]], key: str | None, code: str) -> bool:
    entry = table.get(key) if key is not None else None
    if entry is None:
        return False
    family, codes = entry
    if family:
        for i in range(1, len(code) + 1):
            if code[:i] in codes:
                return True
        return False
    return code in codes


@dataclass
class _ValueSet:
    url: str
    resource: dict[str, Any]
    includes: list[_Rule]
    excludes: list[_Rule]
    listed: list[_Concept]  # the enumerable members, in compose order, for $expand
    fast_in: dict[str, tuple[bool, frozenset[str]]] = field(default_factory=dict)
    slow_in: list[_Rule] = field(default_factory=list)
    fast_out: dict[str, tuple[bool, frozenset[str]]] = field(default_factory=dict)
    slow_out: list[_Rule] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.fast_in, self.slow_in = _split_rules(self.includes)
        self.fast_out, self.slow_out = _split_rules(self.excludes)


class TerminologyIndex:
    """Immutable index built from CodeSystem and ValueSet dicts; build a new one to change it."""

    def __init__(
        self,
        resources: Iterable[Mapping[str, Any]] = (),
        *,
        prefix_families: Mapping[str, Mapping[str, str]] | None = None,
    ):
        families = PREFIX_FAMILIES if prefix_families is None else prefix_families
        self._family_of: dict[str, tuple[str, str]] = {
            system: (name, marker.upper())
            for name, systems in families.items()
            for system, marker in systems.items()
        }
        self.prefix_families = {name: dict(systems) for name, systems in families.items()}
        # the index never changes once built, so lookups are memoised (bounded, thread-safe enough:
        # a race only computes an answer twice)
        self._memo: dict[tuple[str, str | None, str], bool] = {}
        self._keys: dict[tuple[str, str], tuple[str, str]] = {}
        self._matchers: dict[str, Callable[[Any], bool | None]] = {}
        self._codesystems: dict[str, _CodeSystem] = {}
        self._valuesets: dict[str, _ValueSet] = {}
        resources = list(resources)
        for resource in resources:
            if resource.get("resourceType") == "CodeSystem" and resource.get("url"):
                self._codesystems[resource["url"]] = self._index_codesystem(resource)
        self._vs_resources = {
            r["url"]: r for r in resources if r.get("resourceType") == "ValueSet" and r.get("url")
        }
        # a ValueSet that cannot be compiled is kept out of the index; its problem is reported by
        # `problems` and by any use of it, so that loading order does not matter
        self.problems: dict[str, FHIRError] = {}
        for url in self._vs_resources:
            try:
                self._compile_valueset(url, ())
            except FHIRError as exc:
                self.problems[url] = exc
                self._valuesets.pop(url, None)
        # displays of codes of external systems, harvested from the ValueSets, for lookup()
        self._known: dict[tuple[str, str], _Concept] = {}
        for vs in self._valuesets.values():
            for concept in vs.listed:
                self._known.setdefault(self._key_code(concept.system, concept.code), concept)

    # -- normalisation ------------------------------------------------------------------------
    def _key_code(self, system: str | None, code: str) -> tuple[str, str]:
        """The family (or system) a code belongs to, and the code normalised for matching."""
        system = system or ""
        family = self._family_of.get(system)
        if family is None:
            return system, code
        cached = self._keys.get((system, code))
        if cached is not None:
            return cached
        name, marker = family
        norm = _without_marker(re.sub(r"[\s.]", "", code).upper(), marker)
        if len(self._keys) > 100_000:
            self._keys.clear()
        self._keys[(system, code)] = (name, norm)
        return name, norm

    def is_prefix_system(self, system: str) -> bool:
        return system in self._family_of

    # -- building -----------------------------------------------------------------------------
    @staticmethod
    def _index_codesystem(resource: Mapping[str, Any]) -> _CodeSystem:
        cs = _CodeSystem(
            url=resource["url"],
            resource=dict(resource),
            case_sensitive=resource.get("caseSensitive", True) is not False,
        )

        def walk(concepts: list[dict[str, Any]], parents: tuple[str, ...]) -> None:
            for c in concepts or []:
                own_parents = parents + tuple(
                    p.get("valueCode")
                    for p in c.get("property", [])
                    if p.get("code") == "parent" and p.get("valueCode")
                )
                cs.concepts[cs.key(c["code"])] = _Concept(
                    system=cs.url,
                    code=c["code"],
                    display=c.get("display"),
                    designations=tuple(c.get("designation", [])),
                    properties=tuple(c.get("property", [])),
                    parents=own_parents,
                    definition=c.get("definition"),
                )
                walk(c.get("concept", []), (c["code"],))

        walk(resource.get("concept", []), ())
        return cs

    def _compile_valueset(self, url: str, stack: tuple[str, ...]) -> _ValueSet | None:
        if url in self._valuesets:
            return self._valuesets[url]
        resource = self._vs_resources.get(url)
        if resource is None or url in stack:
            return None
        compose = resource.get("compose") or {}
        listed: list[_Concept] = []
        includes = [
            self._compile_rule(inc, listed, stack + (url,), f"ValueSet.compose.include[{i}]", url)
            for i, inc in enumerate(compose.get("include", []))
        ]
        excludes = [
            self._compile_rule(exc, None, stack + (url,), f"ValueSet.compose.exclude[{i}]", url)
            for i, exc in enumerate(compose.get("exclude", []))
        ]
        if resource.get("expansion"):
            # The stored expansion counts too (a region widens a ValueSet by adding codes to it, see
            # docs/terminology.md): a member of the expansion or of the compose, less the excludes.
            by_system: dict[str, set[str]] = {}
            present = {(c.system, c.code) for c in listed}

            def walk(contains: list[dict[str, Any]]) -> None:
                for c in contains or []:
                    if c.get("code"):
                        key, norm = self._key_code(c.get("system"), c["code"])
                        by_system.setdefault(key, set()).add(norm)
                        if (c.get("system", ""), c["code"]) not in present:
                            listed.append(
                                _Concept(
                                    c.get("system", ""),
                                    c["code"],
                                    c.get("display"),
                                    tuple(c.get("designation", [])),
                                )
                            )
                    walk(c.get("contains", []))

            walk(resource["expansion"].get("contains", []))
            includes = includes + [
                _Rule(system_key=key, family=key in self.prefix_families, codes=frozenset(codes))
                for key, codes in by_system.items()
            ]
        shown = {
            (c.get("system"), c.get("code")): c
            for c in (resource.get("expansion") or {}).get("contains", []) or []
            if c.get("display") or c.get("designation")
        }
        if shown and compose:
            listed[:] = [
                _Concept(
                    c.system,
                    c.code,
                    c.display or shown[(c.system, c.code)].get("display"),
                    c.designations or tuple(shown[(c.system, c.code)].get("designation", [])),
                )
                if (c.system, c.code) in shown
                else c
                for c in listed
            ]
        if excludes:
            excluded = [c for c in listed if self._matches_any(excludes, c.system, c.code, frozenset())]
            listed = [c for c in listed if c not in excluded]
        vs = _ValueSet(url=url, resource=dict(resource), includes=includes, excludes=excludes, listed=listed)
        self._valuesets[url] = vs
        return vs

    def _compile_rule(
        self,
        inc: Mapping[str, Any],
        listed: list[_Concept] | None,
        stack: tuple[str, ...],
        path: str,
        vs_url: str,
    ) -> _Rule:
        valuesets = tuple(canonical_parts(v)[0] for v in inc.get("valueSet", []))
        for ref in valuesets:
            if ref not in self._vs_resources:
                raise FHIRError(
                    "not-found",
                    f"ValueSet {vs_url}: included ValueSet {ref} is not loaded",
                    f"{path}.valueSet",
                )
            if ref in stack:
                raise FHIRError(
                    "invalid", f"ValueSet {vs_url}: include of {ref} is circular", f"{path}.valueSet"
                )
            try:
                nested = self._compile_valueset(ref, stack)
            except FHIRError as exc:
                raise FHIRError(
                    "processing",
                    f"ValueSet {vs_url}: included ValueSet {ref} is broken: {exc}",
                    f"{path}.valueSet",
                ) from exc
            if listed is not None and nested is not None and not inc.get("system"):
                listed.extend(c for c in nested.listed if c not in listed)
        system = inc.get("system")
        if not system:
            return _Rule(system_key=None, family=False, codes=None, valuesets=valuesets)
        key, _ = self._key_code(system, "")
        family = system in self._family_of
        local = self._codesystems.get(system)
        codes: set[str] | None = None
        patterns: list[re.Pattern[str]] = []
        descendants_only = False
        if inc.get("concept"):
            codes = set()
            for c in inc["concept"]:
                codes.add(self._key_code(system, c["code"])[1])
                if listed is not None:
                    known = local.get(c["code"]) if local else None
                    listed.append(
                        _Concept(
                            system,
                            c["code"],
                            c.get("display") or (known.display if known else None),
                            tuple(c.get("designation", [])) or (known.designations if known else ()),
                        )
                    )
        for j, flt in enumerate(inc.get("filter", [])):
            op, prop, value = flt.get("op"), flt.get("property"), flt.get("value", "")
            where = f"{path}.filter[{j}]"
            if family:
                if op in ("is-a", "descendent-of", "=", "in") and prop in ("concept", "code", None):
                    values = [v.strip() for v in value.split(",")] if op == "in" else [value]
                    codes = (codes or set()) | {self._key_code(system, v)[1] for v in values}
                    descendants_only = op == "descendent-of"
                    if listed is not None and op in ("is-a", "=", "in"):
                        listed.extend(_Concept(system, v, None) for v in values)
                elif op == "regex":
                    patterns.append(re.compile(value, re.IGNORECASE))
                else:
                    raise FHIRError(
                        "not-supported",
                        f"ValueSet {vs_url}: filter {prop} {op} is not supported for {system}",
                        where,
                    )
                continue
            if local is None:
                # an external system without a terminology server: a concept filter stands for the
                # code it names (descendants cannot be known), a regex tests the code
                if op in ("is-a", "=", "in") and prop in ("concept", "code", None):
                    values = [v.strip() for v in value.split(",")] if op == "in" else [value]
                    codes = (codes or set()) | set(values)
                    if listed is not None:
                        listed.extend(_Concept(system, v, None) for v in values)
                elif op == "regex" and prop in ("concept", "code", None):
                    patterns.append(re.compile(value))
                else:
                    raise FHIRError(
                        "not-supported",
                        f"ValueSet {vs_url}: filter {prop} {op} on {system} needs that CodeSystem loaded",
                        where,
                    )
                continue
            selected = self._filter_local(local, op, prop, value, vs_url, where)
            codes = selected if codes is None else codes & selected
        if codes is None and not patterns and local is not None and listed is not None:
            listed.extend(local.concepts.values())
        elif codes is not None and local is not None and listed is not None and not inc.get("concept"):
            listed.extend(local.concepts[local.key(c)] for c in sorted(codes) if local.get(c))
        return _Rule(
            system_key=key,
            family=family,
            codes=frozenset(codes) if codes is not None else None,
            descendants_only=descendants_only,
            patterns=tuple(patterns),
            valuesets=valuesets,
            local=local,
        )

    @staticmethod
    def _filter_local(cs: _CodeSystem, op: str, prop: str, value: str, vs_url: str, where: str) -> set[str]:
        if op in ("is-a", "descendent-of") and prop in ("concept", "code", None):
            out = cs.descendants(value)
            if op == "is-a" and cs.get(value):
                out.add(cs.get(value).code)  # type: ignore[union-attr]
            return out
        if op == "is-not-a" and prop in ("concept", "code", None):
            return {c.code for c in cs.concepts.values()} - cs.descendants(value) - {value}
        if op == "in" and prop in ("concept", "code", None):
            return {v.strip() for v in value.split(",") if cs.get(v.strip())}
        if op == "regex" and prop in ("concept", "code", None):
            pattern = re.compile(value)
            return {c.code for c in cs.concepts.values() if pattern.fullmatch(c.code)}
        if op in ("=", "regex", "in", "exists"):
            out = set()
            for c in cs.concepts.values():
                values = [
                    str(v).lower() if isinstance(v, bool) else str(v)
                    for p in c.properties
                    if p.get("code") == prop
                    for k, v in p.items()
                    if k.startswith("value")
                ]
                if op == "=" and value in values:
                    out.add(c.code)
                elif op == "in" and set(values) & {v.strip() for v in value.split(",")}:
                    out.add(c.code)
                elif op == "regex" and any(re.fullmatch(value, v) for v in values):
                    out.add(c.code)
                elif op == "exists" and bool(values) == (value == "true"):
                    out.add(c.code)
            return out
        raise FHIRError("not-supported", f"ValueSet {vs_url}: filter {prop} {op} is not supported", where)

    # -- membership ---------------------------------------------------------------------------
    def _matches_any(self, rules: list[_Rule], system: str | None, code: str, seen: frozenset[str]) -> bool:
        key, norm = self._key_code(system, code)
        return any(rule.matches(self, key, norm, seen) for rule in rules)

    def _member_key(self, url: str, key: str | None, code: str, seen: frozenset[str]) -> bool:
        memo_key = (url, key, code)
        if not seen:
            known = self._memo.get(memo_key)
            if known is not None:
                return known
        vs = self._valuesets.get(url)
        if vs is None or url in seen:
            return False
        seen = seen | {url}
        result = (
            _in_table(vs.fast_in, key, code)
            or any(rule.matches(self, key, code, seen) for rule in vs.slow_in)
        ) and not (
            _in_table(vs.fast_out, key, code)
            or any(rule.matches(self, key, code, seen) for rule in vs.slow_out)
        )
        if len(seen) == 1:
            if len(self._memo) > 200_000:
                self._memo.clear()
            self._memo[memo_key] = result
        return result

    def has_valueset(self, canonical: str) -> bool:
        return canonical_parts(canonical)[0] in self._valuesets

    def has_codesystem(self, canonical: str) -> bool:
        return canonical_parts(canonical)[0] in self._codesystems

    def _require_valueset(self, canonical: str, expression: str = "url") -> _ValueSet:
        url = canonical_parts(canonical)[0]
        vs = self._valuesets.get(url)
        if vs is None:
            if url in self.problems:
                problem = self.problems[url]
                raise FHIRError("processing", f"ValueSet {url} cannot be used: {problem}", expression)
            raise FHIRError("not-found", f"ValueSet {canonical} is not known", expression)
        return vs

    def contains(self, canonical: str, system: str | None, code: str) -> bool:
        """Is system|code a member of the ValueSet (with the family prefix semantics)?"""
        vs = self._require_valueset(canonical)
        key, norm = self._key_code(system, code)
        return self._member_key(vs.url, key, norm, frozenset())

    def contains_code(self, canonical: str, code: str) -> bool:
        """A bare code (FHIRPath `code`/`string`): a member under any system the ValueSet draws from."""
        vs = self._require_valueset(canonical)
        systems: set[str | None] = {r.system_key for r in vs.includes if r.system_key is not None}
        systems.update(vs.fast_in)
        for key in systems or {None}:
            if key is not None and key in self.prefix_families:
                norm = re.sub(r"[\s.]", "", code).upper()
                # a bare code carries no system: 'DM545' is the SKS form of M54.5 (no ICD-10 code starts
                # with a letter pair), so each of the family's markers is tried as well
                markers = {m.upper() for m in self.prefix_families[key].values() if m}
                for candidate in {norm} | {_without_marker(norm, m) for m in markers}:
                    if self._member_key(vs.url, key, candidate, frozenset()):
                        return True
            elif self._member_key(vs.url, key, code, frozenset()):
                return True
        return False

    def matcher(self, canonical: str) -> Callable[[Any], bool | None]:
        """A membership test for one ValueSet (memberOf on any input), built once per ValueSet."""
        found = self._matchers.get(canonical)
        if found is not None:
            return found
        vs = self._require_valueset(canonical)
        url = vs.url
        member_key = self._member_key
        key_code = self._key_code
        known: dict[tuple[str | None, str], bool] = {}
        empty: frozenset[str] = frozenset()

        def coding_member(system: str | None, code: str) -> bool:
            verdict = known.get((system, code))
            if verdict is None:
                if len(known) > 50_000:
                    known.clear()
                verdict = known[(system, code)] = member_key(url, *key_code(system, code), empty)
            return verdict

        def test(value: Any) -> bool | None:
            if type(value) is str:
                return self.contains_code(url, value)
            if type(value) is dict or isinstance(value, Mapping):
                coding = value.get("coding")
                if coding is not None or ("text" in value and "code" not in value):
                    for c in coding or ():
                        code = c.get("code")
                        if type(code) is str and coding_member(c.get("system"), code):
                            return True
                    return False
                code = value.get("code")
                if type(code) is str:
                    return coding_member(value.get("system"), code)
            return None

        self._matchers[canonical] = test
        return test

    def member_of(self, value: Any, canonical: str) -> bool | None:
        """memberOf for a Coding, CodeableConcept, Quantity-less code or string (dicts as in FHIR JSON)."""
        if isinstance(value, str):
            return self.contains_code(canonical, value)
        if isinstance(value, Mapping):
            if "coding" in value or "text" in value and "code" not in value:
                return any(self.member_of(c, canonical) for c in value.get("coding", []))
            if "code" in value and isinstance(value["code"], str):
                return self.contains(canonical, value.get("system"), value["code"])
        return None

    # -- operations ---------------------------------------------------------------------------
    def expand(
        self, url: str, filter: str | None = None, count: int | None = None, offset: int = 0
    ) -> dict[str, Any]:
        """ValueSet/$expand: the enumerable members (codes of prefix families stand for their sub-codes)."""
        vs = self._require_valueset(url)
        members = vs.listed
        if filter:
            needle = filter.lower()
            members = [
                c
                for c in members
                if needle in c.code.lower()
                or needle in (c.display or "").lower()
                or any(needle in str(d.get("value", "")).lower() for d in c.designations)
            ]
        total = len(members)
        offset = max(offset or 0, 0)
        page = members[offset : offset + count] if count is not None else members[offset:]
        contains = []
        for c in page:
            entry: dict[str, Any] = {"system": c.system, "code": c.code}
            if c.display:
                entry["display"] = c.display
            if c.designations:
                entry["designation"] = [dict(d) for d in c.designations]
            contains.append(entry)
        params: list[dict[str, Any]] = []
        if filter:
            params.append({"name": "filter", "valueString": filter})
        if count is not None:
            params.append({"name": "count", "valueInteger": count})
        if offset:
            params.append({"name": "offset", "valueInteger": offset})
        out: dict[str, Any] = {
            key: vs.resource[key]
            for key in ("id", "url", "version", "name", "title", "status", "language")
            if key in vs.resource
        }
        out["resourceType"] = "ValueSet"
        out["expansion"] = {
            "identifier": f"urn:uuid:expansion:{vs.url}|{vs.resource.get('version', '')}",
            "timestamp": vs.resource.get("date", "1970-01-01"),
            "total": total,
            "offset": offset,
            "parameter": params,
            "contains": contains,
        }
        if not params:
            del out["expansion"]["parameter"]
        return out

    def _known_concept(self, system: str, code: str) -> _Concept | None:
        cs = self._codesystems.get(system)
        if cs is not None:
            return cs.get(code)
        return self._known.get(self._key_code(system, code))

    def validate_code(
        self, url: str, system: str | None, code: str, display: str | None = None
    ) -> dict[str, Any]:
        """ValueSet/$validate-code (or CodeSystem/$validate-code when url names a CodeSystem)."""
        if not code:
            raise FHIRError("required", "A code is required", "code")
        base = canonical_parts(url)[0]
        if base in self._codesystems and base not in self._valuesets:
            system = system or base
            concept = self._codesystems[base].get(code) if system == base else None
            result = concept is not None
            message = None if result else f"The code '{code}' is not in the CodeSystem {base}"
        else:
            self._require_valueset(url)
            if not system:
                result = self.contains_code(url, code)
            else:
                result = self.contains(url, system, code)
            concept = self._known_concept(system or "", code) if system else None
            message = None if result else f"The code '{system or ''}#{code}' is not in the ValueSet {base}"
        shown = concept.display if concept else None
        if result and display and concept is not None:
            accepted = {concept.display} | {d.get("value") for d in concept.designations}
            if display not in accepted:
                result = False
                message = (
                    f"The display '{display}' is not a display of '{system}#{code}' (expected '{shown}')"
                )
        return parameters(
            ("result", "valueBoolean", result),
            ("message", "valueString", message) if message else None,
            ("display", "valueString", shown) if shown else None,
        )

    def lookup(self, system: str, code: str) -> dict[str, Any]:
        """CodeSystem/$lookup: name, version, display, designations and properties."""
        if not system:
            raise FHIRError("required", "A system is required", "system")
        cs = self._codesystems.get(canonical_parts(system)[0])
        if cs is not None:
            concept = cs.get(code)
            if concept is None:
                raise FHIRError("not-found", f"The code '{code}' is not in the CodeSystem {cs.url}", "code")
            name = cs.resource.get("name") or cs.resource.get("title") or cs.url
            version = cs.resource.get("version")
        else:
            concept = self._known.get(self._key_code(system, code))
            if concept is None:
                raise FHIRError("not-found", f"CodeSystem {system} is not known", "system")
            name, version = system, None
        parts: list[dict[str, Any]] = [{"name": "name", "valueString": name}]
        if version:
            parts.append({"name": "version", "valueString": version})
        if concept.display:
            parts.append({"name": "display", "valueString": concept.display})
        if concept.definition:
            parts.append({"name": "definition", "valueString": concept.definition})
        for d in concept.designations:
            sub = []
            if d.get("language"):
                sub.append({"name": "language", "valueCode": d["language"]})
            if d.get("use"):
                sub.append({"name": "use", "valueCoding": d["use"]})
            sub.append({"name": "value", "valueString": d.get("value", "")})
            parts.append({"name": "designation", "part": sub})
        for parent in concept.parents:
            parts.append(
                {
                    "name": "property",
                    "part": [{"name": "code", "valueCode": "parent"}, {"name": "value", "valueCode": parent}],
                }
            )
        for p in concept.properties:
            if p.get("code") == "parent":
                continue
            value = [{"name": "value", k: v} for k, v in p.items() if k.startswith("value")]
            parts.append({"name": "property", "part": [{"name": "code", "valueCode": p.get("code")}, *value]})
        return {"resourceType": "Parameters", "parameter": parts}

    def codesystem_concept(self, system: str, code: str) -> dict[str, Any] | None:
        """The concept as a dict (code, display, designation, property), or None."""
        concept = self._known_concept(system, code)
        if concept is None:
            return None
        out: dict[str, Any] = {"code": concept.code}
        if concept.display:
            out["display"] = concept.display
        if concept.designations:
            out["designation"] = [dict(d) for d in concept.designations]
        if concept.properties:
            out["property"] = [dict(p) for p in concept.properties]
        return out
