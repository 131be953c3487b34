"""Search index extraction: the spec's SearchParameter expressions compiled once into fast Python walkers.

The official R4 SearchParameter definitions (CC0, shipped as search_parameters.json) carry FHIRPath
expressions. Nearly all of them are simple paths with unions, type casts (`as`, `ofType`),
`where(resolve() is Type)` and `where(field='value')`. Those are compiled once into closures over plain
dicts; a full FHIRPath engine per resource would cost two orders of magnitude more on the write path.
Expressions outside that subset are not indexed and are reported as unsupported (CapabilityStatement
lists only what is indexed).
"""
from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

Walker = Callable[[dict], Iterable[Any]]  # the values an expression selects from a resource

INDEXED_TYPES = ("token", "string", "date", "reference", "uri", "number", "quantity")
_SEGMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_AS = re.compile(r"^\((.+) as ([A-Za-z]+)\)(.*)$")
_WHERE_RESOLVE = re.compile(r"^where\(resolve\(\) is ([A-Za-z]+)\)$")
_WHERE_EQ = re.compile(r"^where\(([A-Za-z]+) ?= ?'([^']*)'\)$")
_EXTENSION = re.compile(r"^extension\('([^']+)'\)$")
_CAST = re.compile(r"^(?:as|ofType)\(([A-Za-z]+)\)$")


@dataclass
class SearchParam:
    code: str
    type: str
    base: str
    expression: str
    target: list[str]
    url: str
    description: str = ""
    walker: Walker | None = field(default=None, repr=False)


def _split_top(expr: str, sep: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    depth, quote = 0, False
    i = 0
    while i < len(expr):
        ch = expr[i]
        if ch == "'":
            quote = not quote
        if not quote:
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            elif depth == 0 and expr.startswith(sep, i):
                parts.append("".join(cur).strip())
                cur = []
                i += len(sep)
                continue
        cur.append(ch)
        i += 1
    parts.append("".join(cur).strip())
    return parts


def _children(node: Any, name: str, cast: str | None) -> list[Any]:
    if not isinstance(node, dict):
        return []
    if cast is not None:
        value = node.get(name + cast[0].upper() + cast[1:])
        if value is None:
            value = node.get(name)  # non-choice element with a type filter
    else:
        value = node.get(name)
        if value is None:
            # choice element: onset -> onsetDateTime / onsetPeriod ...
            prefix_len = len(name)
            for key, val in node.items():
                if len(key) > prefix_len and key.startswith(name) and key[prefix_len].isupper():
                    value = val
                    break
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _compile_branch(branch: str, base: str) -> Walker | None:
    branch = branch.strip()
    m = _AS.match(branch)
    if m:  # (Type.path as X) or (Type.path as X).rest
        inner, cast, rest = m.group(1).strip(), m.group(2), m.group(3).strip()
        if rest and not rest.startswith("."):
            return None
        tail = _split_top(rest[1:], ".") if rest else []
        return _compile_steps(_split_top(inner, "."), tail, cast, base)
    while branch.startswith("(") and branch.endswith(")"):
        branch = branch[1:-1].strip()
    return _compile_steps(_split_top(branch, "."), [], None, base)


def _compile_steps(parts: list[str], tail: list[str], cast_last: str | None, base: str) -> Walker | None:
    if not parts or parts[0] not in (base, "Resource", "DomainResource"):
        return None
    steps: list[tuple[str, Any]] = []
    body = parts[1:]
    for idx, part in enumerate(body):
        cast = cast_last if idx == len(body) - 1 else None
        if _SEGMENT.match(part):
            steps.append(("child", (part, cast)))
            continue
        m = _CAST.match(part)
        if m and steps and steps[-1][0] == "child":
            name, _ = steps[-1][1]
            steps[-1] = ("child", (name, m.group(1)))
            continue
        m = _WHERE_RESOLVE.match(part)
        if m:
            steps.append(("ref_type", m.group(1)))
            continue
        m = _WHERE_EQ.match(part)
        if m:
            steps.append(("eq", (m.group(1), m.group(2))))
            continue
        m = _EXTENSION.match(part)
        if m:
            steps.append(("extension", m.group(1)))
            continue
        return None
    for part in tail:
        if not _SEGMENT.match(part):
            return None
        steps.append(("child", (part, None)))

    def walk(resource: dict) -> list[Any]:
        nodes: list[Any] = [resource]
        for kind, arg in steps:
            if kind == "child":
                name, cast = arg
                out: list[Any] = []
                for n in nodes:
                    out.extend(_children(n, name, cast))
                nodes = out
            elif kind == "ref_type":
                prefix = arg + "/"
                nodes = [
                    n for n in nodes if isinstance(n, dict) and _ref_type_is(n.get("reference", ""), arg, prefix)
                ]
            elif kind == "eq":
                key, val = arg
                nodes = [n for n in nodes if isinstance(n, dict) and n.get(key) == val]
            else:  # extension
                nodes = [
                    {k: v for k, v in ext.items() if k.startswith("value")}
                    for n in nodes
                    if isinstance(n, dict)
                    for ext in n.get("extension", ())
                    if ext.get("url") == arg
                ]
                nodes = [next(iter(n.values())) for n in nodes if n]
            if not nodes:
                return nodes
        return nodes

    walk.first_key = steps[0][1][0] if steps and steps[0][0] == "child" else None  # type: ignore[attr-defined]
    return walk


def _ref_type_is(ref: str, type_name: str, prefix: str) -> bool:
    if ref.startswith(prefix):
        return True
    return ("/" + prefix) in ref


def _branches(expression: str, base: str) -> list[str]:
    """The union branches of an expression that apply to `base` (FHIRPath text, stripped)."""
    out = []
    for b in _split_top(expression, "|"):
        head = b.lstrip("(").split(".", 1)[0].split(" ", 1)[0]
        if b and head in (base, "Resource", "DomainResource"):
            out.append(b)
    return out


def compile_expression(expression: str, base: str) -> Walker | None:
    walkers = []
    for b in _branches(expression, base):
        w = _compile_branch(b, base)
        if w is None:
            return None
        walkers.append(w)
    if not walkers:
        return None
    if len(walkers) == 1:
        only = walkers[0]
        key = getattr(only, "first_key", None)
        only.first_keys = None if key is None else {key}  # type: ignore[attr-defined]
        return only

    def union(resource: dict) -> list[Any]:
        out: list[Any] = []
        for w in walkers:
            out.extend(w(resource))
        return out

    keys = {getattr(w, "first_key", None) for w in walkers}
    union.first_keys = None if None in keys else keys  # type: ignore[attr-defined]
    return union


@dataclass(frozen=True)
class StoredAs:
    """Where a derived parameter's index rows are: the rows of `params` (each selects a part of what it
    selects), restricted to references whose type is `target` when that is set."""

    params: tuple[str, ...]
    target: str | None = None


_RESOLVE_IS = re.compile(r"^(.+)\.where\(resolve\(\) is ([A-Za-z]+)\)$")


def derived_params(params: dict[str, SearchParam]) -> dict[str, StoredAs]:
    """Parameters of one resource type whose index rows would repeat other parameters' rows, and where those are.

    Three shapes, read off the expressions: the same expression as another parameter (`phonetic` and `name`
    of Practitioner); a union of other parameters' expressions (`combo-code` = `code` | `component-code`);
    another reference parameter's expression restricted by `where(resolve() is Type)` (`patient` =
    `subject.where(resolve() is Patient)`). Their rows are not written; search reads the source rows.
    """
    shape = {code: (sp.type, tuple(sorted(b.strip() for b in _branches(sp.expression, sp.base))))
             for code, sp in params.items() if sp.walker is not None}
    derived: dict[str, StoredAs] = {}
    kept: dict[tuple, str] = {}
    for code in sorted(shape):  # the same expression: the first code by name keeps the rows
        first = kept.setdefault(shape[code], code)
        if first != code:
            derived[code] = StoredAs((first,))

    def sources() -> dict[tuple, str]:
        return {shape[c]: c for c in sorted(shape) if c not in derived}

    by_shape = sources()
    for code in sorted(shape):
        kind, branches = shape[code]
        if code in derived or kind != "reference" or len(branches) != 1:
            continue
        m = _RESOLVE_IS.match(branches[0])
        source = m and by_shape.get(("reference", (m.group(1).strip(),)))
        if m and source and source != code:
            derived[code] = StoredAs((source,), m.group(2))
    for code in sorted(shape, key=lambda c: (len(shape[c][1]), c)):  # smaller unions first
        kind, branches = shape[code]
        if code in derived or len(branches) < 2:
            continue
        parts = [c for c in sorted(shape) if c != code and c not in derived and shape[c][0] == kind
                 and shape[c][1] and set(shape[c][1]) <= set(branches)]
        if parts and {b for c in parts for b in shape[c][1]} == set(branches):
            derived[code] = StoredAs(tuple(parts))
    return derived


class _KeyDispatch(dict):
    """Element name -> the params reading it, filled on first sight of each name (choice elements by stem)."""

    def __init__(self, by_stem: dict[str, list[SearchParam]]):
        super().__init__()
        self.by_stem = by_stem

    def __missing__(self, key: str) -> tuple[SearchParam, ...]:
        found: list[SearchParam] = []
        for stem in _stems(key):
            for sp in self.by_stem.get(stem, ()):
                if sp not in found:
                    found.append(sp)
        value = self[key] = tuple(found)
        return value


class SearchParamRegistry:
    """All search parameters by resource type, compiled once."""

    def __init__(self, definitions: list[dict]):
        self.by_type: dict[str, dict[str, SearchParam]] = {}
        self.common: dict[str, SearchParam] = {}
        self.unsupported: list[str] = []
        for d in definitions:
            if d["type"] not in INDEXED_TYPES:
                continue
            for base in d["base"]:
                sp = SearchParam(d["code"], d["type"], base, d["expression"], d["target"], d["url"], d["description"])
                if d["code"] in ("_id", "_lastUpdated"):
                    continue  # served from the resource table
                sp.walker = compile_expression(d["expression"], base)
                if sp.walker is None:
                    self.unsupported.append(f"{base}.{d['code']}")
                    continue
                if base in ("Resource", "DomainResource"):
                    self.common[d["code"]] = sp
                else:
                    self.by_type.setdefault(base, {})[d["code"]] = sp
        self._merged: dict[str, dict[str, SearchParam]] = {}
        self._derived: dict[str, dict[str, StoredAs]] = {}
        self._dispatch: dict[str, tuple[dict[str, tuple[SearchParam, ...]], tuple[SearchParam, ...]]] = {}

    def params_for(self, resource_type: str) -> dict[str, SearchParam]:
        merged = self._merged.get(resource_type)
        if merged is None:
            merged = dict(self.common)
            merged.update(self.by_type.get(resource_type, {}))
            self._merged[resource_type] = merged
        return merged

    def derived(self, resource_type: str) -> dict[str, StoredAs]:
        """The parameters of `resource_type` searched through other parameters' rows (see `derived_params`)."""
        d = self._derived.get(resource_type)
        if d is None:
            d = self._derived[resource_type] = derived_params(self.params_for(resource_type))
        return d

    def stored_as(self, resource_type: str, code: str) -> StoredAs | None:
        """Where the index rows of `code` are, when they are another parameter's; None: under its own code."""
        return self.derived(resource_type).get(code)

    def dispatch(self, resource_type: str) -> tuple[dict[str, tuple[SearchParam, ...]], tuple[SearchParam, ...]]:
        """(element name -> the params whose expression starts at it, params to evaluate always).

        Element names are the resource's own keys: a choice element is found under each of its typed
        names (`onsetDateTime`, `onsetPeriod`, ...) the first time such a key is seen. Derived parameters
        (`derived`) are left out: their rows are other parameters' rows.
        """
        d = self._dispatch.get(resource_type)
        if d is None:
            derived = self.derived(resource_type)
            by_stem: dict[str, list[SearchParam]] = {}
            always: list[SearchParam] = []
            for sp in self.params_for(resource_type).values():
                if sp.code in derived:
                    continue
                keys = getattr(sp.walker, "first_keys", None)
                if keys is None:
                    always.append(sp)
                else:
                    for k in keys:
                        by_stem.setdefault(k, []).append(sp)
            d = self._dispatch[resource_type] = (_KeyDispatch(by_stem), tuple(always))
        return d

    def get(self, resource_type: str, code: str) -> SearchParam | None:
        return self.params_for(resource_type).get(code)


_REGISTRY: SearchParamRegistry | None = None


def registry() -> SearchParamRegistry:
    global _REGISTRY
    if _REGISTRY is None:
        path = Path(__file__).with_name("search_parameters.json")
        _REGISTRY = SearchParamRegistry(json.loads(path.read_text()))
    return _REGISTRY


# ---------------------------------------------------------------- value normalisation

def normalize_string(value: str) -> str:
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().strip()


_DATE_RE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def date_range(value: str) -> tuple[float, float] | None:
    """A FHIR date/dateTime/instant as [low, high) in UTC epoch seconds, following its precision.

    A value without a time zone is read as UTC.
    """
    m = _DATE_RE.match(value.strip())
    if not m:
        return None
    year, month, day, hh, mi, ss, frac, tz = m.groups()
    try:
        if month is None:
            low = datetime(int(year), 1, 1, tzinfo=UTC)
            high = datetime(int(year) + 1, 1, 1, tzinfo=UTC)
        elif day is None:
            low = datetime(int(year), int(month), 1, tzinfo=UTC)
            high = (
                datetime(int(year) + 1, 1, 1, tzinfo=UTC)
                if int(month) == 12
                else datetime(int(year), int(month) + 1, 1, tzinfo=UTC)
            )
        elif hh is None:
            low = datetime(int(year), int(month), int(day), tzinfo=UTC)
            high = low + timedelta(days=1)
        else:
            tzinfo = UTC
            if tz and tz != "Z":
                sign = 1 if tz[0] == "+" else -1
                tzinfo = timezone(sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])))
            seconds = int(ss) if ss else 0
            micro = int(float(frac) * 1_000_000) if frac else 0
            low = datetime(int(year), int(month), int(day), int(hh), int(mi), seconds, micro, tzinfo=tzinfo)
            if ss is None:
                high = low + timedelta(minutes=1)
            elif frac is None:
                high = low + timedelta(seconds=1)
            else:
                high = low + timedelta(microseconds=1)
    except ValueError:
        return None
    return ((low - EPOCH).total_seconds(), (high - EPOCH).total_seconds())


def today_range(d: date) -> tuple[float, float]:
    low = datetime(d.year, d.month, d.day, tzinfo=UTC)
    return ((low - EPOCH).total_seconds(), (low + timedelta(days=1) - EPOCH).total_seconds())


# ---------------------------------------------------------------- index rows

@dataclass
class IndexRows:
    token: list[tuple] = field(default_factory=list)  # (param, system, code)
    string: list[tuple] = field(default_factory=list)  # (param, norm, exact)
    date: list[tuple] = field(default_factory=list)  # (param, low, high)
    reference: list[tuple] = field(default_factory=list)  # (param, target_type, target_id, url)
    uri: list[tuple] = field(default_factory=list)  # (param, value)
    number: list[tuple] = field(default_factory=list)  # (param, value, system, code)


_STRING_PARTS = ("family", "given", "text", "prefix", "suffix", "line", "city", "district", "state", "postalCode",
                 "country")


def _token_values(value: Any) -> Iterator[tuple[str | None, str]]:
    if isinstance(value, str):
        yield (None, value)
    elif isinstance(value, bool):
        yield (None, "true" if value else "false")
    elif isinstance(value, dict):
        if "coding" in value or ("text" in value and "code" not in value and "value" not in value):
            for c in value.get("coding", ()):
                if c.get("code") is not None:
                    yield (c.get("system"), c["code"])
        elif "code" in value:
            yield (value.get("system"), str(value["code"]))
        elif "value" in value:  # Identifier, ContactPoint
            v = value["value"]
            yield (value.get("system"), str(v))


def _string_values(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for part in _STRING_PARTS:
            v = value.get(part)
            if isinstance(v, str):
                yield v
            elif isinstance(v, list):
                yield from (x for x in v if isinstance(x, str))


def _date_values(value: Any) -> Iterator[tuple[float, float]]:
    if isinstance(value, str):
        r = date_range(value)
        if r:
            yield r
    elif isinstance(value, dict):
        if "start" in value or "end" in value:  # Period
            start = date_range(value["start"]) if "start" in value else None
            end = date_range(value["end"]) if "end" in value else None
            low = start[0] if start else float("-inf")
            high = end[1] if end else float("inf")
            yield (low, high)
        elif "event" in value:  # Timing
            for e in value["event"]:
                r = date_range(e)
                if r:
                    yield r


def split_reference(ref: str) -> tuple[str | None, str | None, str]:
    """Reference string -> (type, id, url). Relative `Type/id[/_history/v]` gives type and id."""
    if ref.startswith(("urn:", "#")):
        return (None, None, ref)
    parts = ref.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2][:1].isupper() and "?" not in ref:
        return (parts[-2], parts[-1], ref)
    return (None, None, ref)




def _stems(key: str) -> Iterator[str]:
    yield key
    # choice elements: onsetDateTime -> onset (every camel-case prefix is a candidate)
    for i in range(1, len(key)):
        if key[i].isupper():
            yield key[:i]


def extract(resource: dict, registry_: SearchParamRegistry | None = None) -> IndexRows:
    rows = IndexRows()
    by_key, always = (registry_ or registry()).dispatch(resource["resourceType"])
    selected: dict[str, SearchParam] = {sp.code: sp for sp in always}
    for key in resource:
        for sp in by_key[key]:
            selected[sp.code] = sp
    for code, sp in selected.items():
        walker = sp.walker
        if walker is None:
            continue
        values = walker(resource)
        if not values:
            continue
        t = sp.type
        if t == "token":
            for v in values:
                for system, c in _token_values(v):
                    rows.token.append((code, system, c))
        elif t == "string":
            for v in values:
                for s in _string_values(v):
                    rows.string.append((code, normalize_string(s), s))
        elif t == "date":
            for v in values:
                for low, high in _date_values(v):
                    rows.date.append((code, low, high))
        elif t == "reference":
            for v in values:
                if isinstance(v, dict):
                    ref = v.get("reference")
                    if isinstance(ref, str):
                        rtype, rid, url = split_reference(ref)
                        rows.reference.append((code, rtype, rid, url))
                elif isinstance(v, str):  # canonical
                    rows.reference.append((code, None, None, v))
        elif t == "uri":
            for v in values:
                if isinstance(v, str):
                    rows.uri.append((code, v))
        elif t in ("number", "quantity"):
            for v in values:
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    rows.number.append((code, float(v), None, None))
                elif isinstance(v, dict) and isinstance(v.get("value"), (int, float)):
                    rows.number.append((code, float(v["value"]), v.get("system"), v.get("code") or v.get("unit")))
    return rows
