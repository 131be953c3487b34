"""FHIR search over the index tables — https://hl7.org/fhir/R4/search.html

Parameters are ANDed (one SQL sub-select each); comma-separated values within one are ORed.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Text, and_, cast, false, func, literal, not_, or_, select, true
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from app.errors import FHIRError, Issue

from . import schema
from .db import Store, Stored, _load_content
from .indexing import SearchParam, date_range, normalize_string, split_reference

RESULT_PARAMS = {
    "_count", "_offset", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total", "_format",
    "_pretty", "_contained", "_containedType",
}
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
DEFAULT_COUNT = 50
MAX_COUNT = 1000
SUPPORTED_MODIFIERS = {
    "token": {"not", "in", "not-in", "missing"},
    "string": {"exact", "contains", "missing"},
    "date": {"missing"},
    "reference": {"missing"},  # plus :Type
    "uri": {"below", "above", "missing"},
    "number": {"missing"},
    "quantity": {"missing"},
    "special": set(),
}
_NUM_RE = re.compile(r"^[+-]?\d+(\.\d+)?([eE][+-]?\d+)?$")

# (system, code) -> member of the ValueSet? The search asks it about the codes actually indexed, so that `:in`
# has the terminology's semantics (prefix families, hierarchies, filters) rather than a list of pairs.
CodeMatcher = Callable[["str | None", str], bool]
ValueSetResolver = Callable[[str], "CodeMatcher | None"]


@dataclass
class Criterion:
    name: str
    modifier: str | None
    values: list[str]
    param: SearchParam | None = None  # None for _id / _lastUpdated


@dataclass
class SearchRequest:
    res_type: str
    criteria: list[Criterion] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    offset: int = 0
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (param, descending)
    include: list[tuple[str, str, str | None]] = field(default_factory=list)  # (source type, param, target)
    revinclude: list[tuple[str, str, str | None]] = field(default_factory=list)
    max_included: int = 1000  # _include + _revinclude results per page; beyond it the search is refused (400)
    summary: str | None = None
    elements: list[str] | None = None
    warnings: list[Issue] = field(default_factory=list)
    echo: list[tuple[str, str]] = field(default_factory=list)  # parameters actually used, for self links


@dataclass
class SearchResult:
    total: int
    matches: list[Stored]
    included: list[Stored]


def parse(store: Store, res_type: str, items: Iterable[tuple[str, str]], *, strict: bool) -> SearchRequest:
    """Query parameters -> SearchRequest. Unknown parameters: warning (lenient) or error (strict)."""
    req = SearchRequest(res_type)

    def problem(text: str, name: str) -> None:
        expr = f"{res_type}?{name}" if not name.startswith("_") else name
        if strict:
            raise FHIRError("not-supported", text, expr)
        req.warnings.append(Issue("warning", "not-supported", text + " (ignored)", [expr]))

    params = store.search_params.params_for(res_type)
    for raw_name, raw_value in items:
        name, _, modifier = raw_name.partition(":")
        if name in ("_format", "_pretty"):
            continue
        if name == "_count":
            req.count = _int_param(raw_value, "_count", 0, MAX_COUNT)
            req.echo.append((raw_name, raw_value))
            continue
        if name == "_offset":
            req.offset = _int_param(raw_value, "_offset", 0, 10**9)
            continue
        if name == "_sort":
            for key in raw_value.split(","):
                key = key.strip()
                desc = key.startswith("-")
                key = key.lstrip("-")
                if key in ("_id", "_lastUpdated") or (key in params and params[key].type != "reference"):
                    req.sort.append((key, desc))
                else:
                    problem(f"Unknown or unsortable sort parameter '{key}'", "_sort")
            req.echo.append((raw_name, raw_value))
            continue
        if name in ("_include", "_revinclude"):
            spec = _parse_include(store, raw_value, name, modifier, problem)
            if spec:
                (req.include if name == "_include" else req.revinclude).append(spec)
                req.echo.append((raw_name, raw_value))
            continue
        if name == "_summary":
            if raw_value not in ("count", "false", "data", "text"):
                problem(f"_summary={raw_value} is not supported (count, data, text, false are)", "_summary")
            else:
                req.summary = raw_value
                req.echo.append((raw_name, raw_value))
            continue
        if name == "_elements":
            req.elements = [e.strip() for e in raw_value.split(",") if e.strip()]
            req.echo.append((raw_name, raw_value))
            continue
        if name == "_total":
            continue  # totals are always accurate here
        if name in RESULT_PARAMS:
            problem(f"Result parameter {name} is not supported", name)
            continue
        if "." in name:
            problem(f"Chained parameter '{name}' is not supported", name)
            continue
        if name in ("_id", "_lastUpdated"):
            if modifier and modifier != "missing":
                problem(f"Modifier :{modifier} is not supported on {name}", raw_name)
                continue
            req.criteria.append(Criterion(name, modifier or None, raw_value.split(",")))
            req.echo.append((raw_name, raw_value))
            continue
        sp = params.get(name)
        if sp is None:
            problem(f"Unknown search parameter '{name}' for {res_type}", name)
            continue
        if modifier:
            ok = modifier in SUPPORTED_MODIFIERS.get(sp.type, set()) or (
                sp.type == "reference" and modifier[:1].isupper()
            )
            if not ok:
                problem(f"Modifier :{modifier} is not supported on {sp.type} parameter '{name}'", raw_name)
                continue
        req.criteria.append(Criterion(name, modifier or None, _split_values(raw_value), sp))
        req.echo.append((raw_name, raw_value))
    return req


def _split_values(raw: str) -> list[str]:
    # a backslash escapes a comma inside a value
    parts, cur, esc = [], [], False
    for ch in raw:
        if esc:
            cur.append(ch)
            esc = False
        elif ch == "\\":
            esc = True
        elif ch == ",":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def _int_param(value: str, name: str, lo: int, hi: int) -> int:
    try:
        n = int(value)
    except ValueError:
        raise FHIRError("invalid", f"{name} must be an integer, got '{value}'", name) from None
    if n < lo:
        raise FHIRError("invalid", f"{name} must be at least {lo}", name)
    return min(n, hi)


def _parse_include(store: Store, value: str, name: str, modifier: str, problem) -> tuple | None:
    if modifier and modifier != "iterate":
        problem(f"{name}:{modifier} is not supported", name)
        return None
    if modifier == "iterate":
        problem(f"{name}:iterate is not supported; one level is included", name)
    parts = value.split(":")
    if value == "*":
        return ("*", "*", None)
    if len(parts) < 2:
        problem(f"{name} must be Type:param[:targetType], got '{value}'", name)
        return None
    src, param = parts[0], parts[1]
    target = parts[2] if len(parts) > 2 else None
    if param != "*":
        sp = store.search_params.get(src, param)
        if sp is None or sp.type != "reference":
            problem(f"{name}: '{src}:{param}' is not a reference search parameter", name)
            return None
    return (src, param, target)


# ------------------------------------------------------------------ SQL

def _owner(table, res_type: str):
    return select(table.c.rid).where(table.c.res_type == res_type)


def _param_is(store: Store, table, res_type: str, code: str) -> ColumnElement:
    """The index rows of parameter `code`: its own, or for a derived parameter (`indexing.derived_params`) the
    rows of the parameters it is made of, restricted to its target type as its `where(resolve() is T)` is."""
    stored = store.search_params.stored_as(res_type, code)
    if stored is None:
        return table.c.param == code
    cond = table.c.param == stored.params[0] if len(stored.params) == 1 else table.c.param.in_(stored.params)
    if stored.target:
        t = stored.target  # a type name (letters only): no LIKE wildcard in it
        cond = and_(cond, or_(table.c.target_type == t, table.c.url.startswith(t + "/"),
                              table.c.url.contains("/" + t + "/")))
    return cond


def _prefix(value: str) -> tuple[str, str]:
    if value[:2] in PREFIXES and len(value) > 2 and (value[2].isdigit() or value[2] in "+-."):
        return value[:2], value[2:]
    return "eq", value


def _date_cond(low_col, high_col, value: str, expr: str) -> ColumnElement:
    prefix, v = _prefix(value)
    rng = date_range(v)
    if rng is None:
        raise FHIRError("invalid", f"Invalid date search value '{value}'", expr)
    lp, hp = rng
    if prefix == "eq":
        return and_(low_col >= lp, high_col <= hp)
    if prefix == "ne":
        return not_(and_(low_col >= lp, high_col <= hp))
    if prefix == "lt":
        return low_col < lp
    if prefix == "gt":
        return high_col > hp
    if prefix == "le":
        return low_col < hp
    if prefix == "ge":
        return high_col > lp
    if prefix == "sa":
        return low_col >= hp
    if prefix == "eb":
        return high_col <= lp
    now = datetime.now(tz=UTC).timestamp()
    slack = abs(now - lp) * 0.1
    return and_(low_col < hp + slack, high_col > lp - slack)


def _number_cond(col, value: str, expr: str) -> ColumnElement:
    prefix, v = _prefix(value)
    if not _NUM_RE.match(v):
        raise FHIRError("invalid", f"Invalid number search value '{value}'", expr)
    n = float(v)
    decimals = len(v.split(".", 1)[1]) if "." in v and "e" not in v.lower() else 0
    half = 0.5 * 10 ** (-decimals)
    return {
        "eq": and_(col >= n - half, col < n + half),
        "ne": or_(col < n - half, col >= n + half),
        "gt": col > n,
        "lt": col < n,
        "ge": col >= n,
        "le": col <= n,
        "sa": col > n,
        "eb": col < n,
        "ap": and_(col >= n * 0.9, col <= n * 1.1) if n >= 0 else and_(col <= n * 0.9, col >= n * 1.1),
    }[prefix]


def _token_match(table, value: str) -> ColumnElement:
    if "|" in value:
        system, code = value.split("|", 1)
        if system == "":
            return and_(table.c.system.is_(None), table.c.code == code)
        if code == "":
            return table.c.system == system
        return and_(table.c.system == system, table.c.code == code)
    return table.c.code == value


def _valueset_members(
    store: Store, conn: Connection, table, res_type: str, c: Criterion, resolve_valueset: ValueSetResolver | None,
    expr: str,
) -> ColumnElement:
    """`:in` / `:not-in`: the indexed codes of this parameter that are members of any of the ValueSets."""
    matchers: list[CodeMatcher] = []
    for url in c.values:
        matcher = resolve_valueset(url) if resolve_valueset else None
        if matcher is None:
            raise FHIRError("not-found", f"ValueSet '{url}' is not known to this server", expr)
        matchers.append(matcher)
    indexed = conn.execute(
        select(table.c.system, table.c.code).distinct().where(table.c.res_type == res_type,
                                                              _param_is(store, table, res_type, c.name))
    ).all()
    by_system: dict[str | None, list[str]] = {}
    for system, code in indexed:
        if code is not None and any(m(system, code) for m in matchers):
            by_system.setdefault(system, []).append(code)
    if not by_system:
        return false()
    return or_(*[and_(table.c.system.is_(None) if system is None else table.c.system == system,
                      table.c.code.in_(codes)) for system, codes in by_system.items()])


def _criterion_subquery(
    store: Store, conn: Connection, res_type: str, c: Criterion, resolve_valueset: ValueSetResolver | None
) -> tuple[ColumnElement, bool]:
    """-> (rid IN-able select, negate)."""
    sp = c.param
    assert sp is not None
    expr = f"{res_type}?{c.name}"
    kind = "number" if sp.type == "quantity" else sp.type
    table = schema.INDEX_TABLES[kind]
    base = _owner(table, res_type).where(_param_is(store, table, res_type, c.name))
    if c.modifier == "missing":
        want_missing = c.values[0] == "true"
        return base, want_missing
    conds: list[ColumnElement] = []
    negate = False
    if sp.type == "token":
        if c.modifier in ("in", "not-in"):
            conds.append(_valueset_members(store, conn, table, res_type, c, resolve_valueset, expr))
            negate = c.modifier == "not-in"
        else:
            conds.extend(_token_match(table, v) for v in c.values)
            negate = c.modifier == "not"
    elif sp.type == "string":
        for v in c.values:
            if c.modifier == "exact":
                conds.append(table.c.exact == v)
            elif c.modifier == "contains":
                conds.append(table.c.norm.contains(normalize_string(v), autoescape=True))
            else:
                conds.append(table.c.norm.startswith(normalize_string(v), autoescape=True))
    elif sp.type == "date":
        conds.extend(_date_cond(table.c.low, table.c.high, v, expr) for v in c.values)
    elif sp.type == "reference":
        type_mod = c.modifier if c.modifier and c.modifier[:1].isupper() else None
        for v in c.values:
            conds.append(_reference_cond(table, v, type_mod, sp))
    elif sp.type == "uri":
        for v in c.values:
            if c.modifier == "below":
                conds.append(table.c.value.startswith(v, autoescape=True))
            elif c.modifier == "above":
                conds.append(literal(v).startswith(table.c.value))
            else:
                conds.append(table.c.value == v)
    elif sp.type == "number":
        conds.extend(_number_cond(table.c.value, v, expr) for v in c.values)
    elif sp.type == "quantity":
        for v in c.values:
            num, _, rest = v.partition("|")
            cond = _number_cond(table.c.value, num, expr)
            if rest:
                system, _, code = rest.partition("|")
                if system:
                    cond = and_(cond, table.c.system == system)
                if code:
                    cond = and_(cond, table.c.code == code)
            conds.append(cond)
    return base.where(or_(*conds) if conds else false()), negate


def _reference_cond(table, value: str, type_mod: str | None, sp: SearchParam) -> ColumnElement:
    if value.startswith(("http://", "https://", "urn:")) and not re.search(r"/[A-Z][A-Za-z]+/[^/]+$", value):
        return table.c.url == value
    rtype, rid, url = split_reference(value)
    if rtype and rid:
        cond = and_(table.c.target_type == rtype, table.c.target_id == rid)
        if value.startswith(("http://", "https://")):
            # A canonical looks like a RESTful URL (…/Measure/q1): match it as a canonical too, with any version.
            base = value.split("|", 1)[0]
            cond = or_(cond, table.c.url == value, table.c.url.startswith(base + "|", autoescape=True))
        return cond
    if "/" not in value and "|" not in value:
        cond = table.c.target_id == value
        if type_mod:
            cond = and_(cond, table.c.target_type == type_mod)
        elif len(sp.target) == 1:
            cond = and_(cond, table.c.target_type == sp.target[0])
        return cond
    # canonical with version, or another absolute form
    return or_(table.c.url == value, table.c.url.startswith(value.split("|", 1)[0] + "|", autoescape=True))


def _where(
    store: Store, conn: Connection, req: SearchRequest, resolve_valueset: ValueSetResolver | None
) -> list[ColumnElement]:
    r = schema.resources.c
    conds: list[ColumnElement] = [r.res_type == req.res_type, r.deleted.is_(False)]
    for c in req.criteria:
        if c.name == "_id":
            conds.append(r.res_id.in_(c.values))
        elif c.name == "_lastUpdated":
            conds.append(or_(*[_date_cond(r.last_updated, r.last_updated, v, "_lastUpdated") for v in c.values]))
        else:
            sub, negate = _criterion_subquery(store, conn, req.res_type, c, resolve_valueset)
            conds.append(r.rid.not_in(sub) if negate else r.rid.in_(sub))
    return conds


def _sort_key(req: SearchRequest, store: Store, key: str, desc: bool):
    r = schema.resources.c
    if key == "_id":
        col: ColumnElement = r.res_id
    elif key == "_lastUpdated":
        col = r.last_updated
    else:
        sp = store.search_params.get(req.res_type, key)
        assert sp is not None
        kind = "number" if sp.type == "quantity" else sp.type
        table = schema.INDEX_TABLES[kind]
        value_col = {"token": table.c.code if kind == "token" else None}.get(kind)
        if kind == "string":
            value_col = table.c.norm
        elif kind == "date":
            value_col = table.c.high if desc else table.c.low
        elif kind in ("number",):
            value_col = table.c.value
        elif kind == "uri":
            value_col = table.c.value
        agg = func.max(value_col) if desc else func.min(value_col)
        col = (
            select(agg)
            .where(table.c.rid == r.rid, _param_is(store, table, req.res_type, key))
            .scalar_subquery()
        )
    # missing values last in both directions
    return [col.is_(None), col.desc() if desc else col.asc()]


def execute(
    store: Store,
    req: SearchRequest,
    *,
    resolve_valueset: ValueSetResolver | None = None,
    conn: Connection | None = None,
) -> SearchResult:
    r = schema.resources.c
    with store._conn(conn) as c:
        conds = _where(store, c, req, resolve_valueset)

        def count() -> int:
            return int(c.execute(select(func.count()).select_from(schema.resources).where(*conds)).scalar_one())

        if req.summary == "count" or req.count == 0:
            return SearchResult(count(), [], [])
        order = []
        for key, desc in req.sort:
            order.extend(_sort_key(req, store, key, desc))
        order.append(r.res_id)
        rows = c.execute(
            select(r.res_id, r.version, r.last_updated, _content(store), r.rid)
            .where(*conds)
            .order_by(*order)
            .limit(req.count)
            .offset(req.offset)
        ).all()
        # a page that is not full ends the matches: the total is known without counting them again (most
        # searches of one patient's record, the CDS prefetch's among them, fit in their first page)
        total = req.offset + len(rows) if len(rows) < req.count and (rows or req.offset == 0) else count()
        matches = [Stored(req.res_type, row[0], row[1], row[2], False, _load_content(row[3]), rid=row[4])
                   for row in rows]
        included = _includes(store, req, matches, c) if (req.include or req.revinclude) and matches else []
    return SearchResult(total, matches, included)


def _content(store: Store) -> Any:
    """The stored JSON as text: PostgreSQL's jsonb keeps a decimal's digits (1.50); a parsed dict would not."""
    column = schema.resources.c.content
    return cast(column, Text) if store.dialect == "postgresql" else column


def _includes(store: Store, req: SearchRequest, matches: list[Stored], c: Connection) -> list[Stored]:
    ref = schema.idx_reference.c
    r = schema.resources.c
    rids = [m.rid for m in matches]
    ids = [m.res_id for m in matches]
    seen = {(m.res_type, m.res_id) for m in matches}
    wanted: dict[str, set[str]] = {}
    for src, param, target in req.include:
        if src not in ("*", req.res_type):
            continue
        stmt = select(ref.target_type, ref.target_id).where(ref.rid.in_(rids), ref.target_type.is_not(None))
        if param != "*":
            stmt = stmt.where(_param_is(store, schema.idx_reference, req.res_type, param))
        if target:
            stmt = stmt.where(ref.target_type == target)
        for t, i in c.execute(stmt.distinct().limit(req.max_included + 1)).all():
            if (t, i) not in seen:
                seen.add((t, i))
                wanted.setdefault(t, set()).add(i)
        if sum(len(v) for v in wanted.values()) > req.max_included:
            raise _too_many_included(req)
    out: list[Stored] = []
    cols = (r.res_type, r.res_id, r.version, r.last_updated, _content(store))
    for t, id_set in wanted.items():
        for row in c.execute(
            select(*cols).where(r.res_type == t, r.res_id.in_(sorted(id_set)), r.deleted.is_(False))
        ):
            out.append(Stored(row[0], row[1], row[2], row[3], False, _load_content(row[4]), "include"))
    for src, param, target in req.revinclude:
        if target and target != req.res_type:
            continue
        sub = select(ref.rid).where(ref.target_type == req.res_type, ref.target_id.in_(ids))
        if src != "*":
            sub = sub.where(ref.res_type == src)
        if param != "*":
            sub = sub.where(_param_is(store, schema.idx_reference, src, param))
        room = req.max_included - len(out)
        for row in c.execute(select(*cols).where(r.rid.in_(sub), r.deleted.is_(False)).limit(room + 1)):
            if (row[0], row[1]) not in seen:
                seen.add((row[0], row[1]))
                out.append(Stored(row[0], row[1], row[2], row[3], False, _load_content(row[4]), "include"))
        if len(out) > req.max_included:
            raise _too_many_included(req)
    return out


def _too_many_included(req: SearchRequest) -> FHIRError:
    return FHIRError("too-costly", f"_include/_revinclude would return more than {req.max_included} resources; "
                     "lower _count or narrow the search", "_revinclude" if req.revinclude else "_include", status=400)


def count_matches(store: Store, res_type: str, query: str, conn: Connection | None = None,
                  resolve_valueset: ValueSetResolver | None = None) -> list[str]:
    """Ids matching a conditional query string (`identifier=x|y&...`), strict parsing, at most 2."""
    from urllib.parse import parse_qsl

    items = parse_qsl(query, keep_blank_values=True)
    if not items:
        raise FHIRError("invalid", f"Empty conditional query for {res_type}", f"{res_type}?")
    if len(items) == 1:
        found = _one_token_matches(store, res_type, *items[0], conn)
        if found is not None:
            return found
    req = parse(store, res_type, items, strict=True)
    req.count = 2
    r = schema.resources.c
    with store._conn(conn) as c:
        conds = _where(store, c, req, resolve_valueset)
        return [row[0] for row in c.execute(select(r.res_id).where(*conds).limit(2)).all()]


def _one_token_matches(store: Store, res_type: str, name: str, value: str, conn: Connection | None) -> list[str] | None:
    """The commonest conditional query, one token parameter with one value and no modifier (`identifier=s|v`,
    as every Synthea bundle refers to its Organizations and Practitioners), in one prepared statement: the
    same rows as the general path, without building and compiling its SQL expression each time (most of a
    conditional lookup's cost). None when the query has another shape."""
    sp = store.search_params.get(res_type, name)
    if (sp is None or sp.type != "token" or not value or "," in value or "\\" in value
            or store.search_params.stored_as(res_type, name) is not None):
        return None
    mark = "%s" if store.dialect == "postgresql" else "?"
    if "|" in value:
        system, code = value.split("|", 1)
        if not code:
            return None
        match = f"system IS NULL AND code = {mark}" if system == "" else f"system = {mark} AND code = {mark}"
        args: tuple = (code,) if system == "" else (system, code)
    else:
        match, args = f"code = {mark}", (value,)
    sql = (f"SELECT res_id FROM resources WHERE res_type = {mark} AND deleted = {mark} AND rid IN "
           f"(SELECT rid FROM idx_token WHERE res_type = {mark} AND param = {mark} AND {match}) LIMIT 2")
    with store._conn(conn) as c:
        return [row[0] for row in c.exec_driver_sql(sql, (res_type, False, res_type, name, *args)).all()]


__all__ = ["parse", "execute", "count_matches", "SearchRequest", "SearchResult", "true"]
