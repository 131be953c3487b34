"""Chained parameters (one level) and `_has` (one level), rewritten into plain criteria before the search runs.

https://hl7.org/fhir/R4/search.html#chaining and #has. `subject:Patient.identifier=X` becomes
`subject=Patient/a,Patient/b` (the Patients whose identifier matches); `_has:Observation:patient:code=Y` becomes
`_id=a,b` (the Patients some matching Observation points to). The inner search is an ordinary, strict search of
the other type, so it needs the token's search scope on that type. Whatever cannot be honoured (a chain of two
levels, a nested `_has`, an inner search matching more than `MAX_INNER` resources) is refused with a 400 under
every handling mode: an unfiltered answer would look like a filtered one to most clients.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app import auth as access
from app.errors import FHIRError
from app.store import search as engine

MAX_INNER = engine.MAX_COUNT
# `_id` with an empty value matches no resource: the filter held for nothing
NOTHING = ("_id", "")


def _refuse(text: str, name: str, code: str = "not-supported") -> FHIRError:
    return FHIRError(code, text, name, status=400)


def _inner(store: Any, res_type: str, items: list[tuple[str, str]], name: str,
           resolve_valueset: Callable[..., Any] | None) -> engine.SearchResult:
    access.require(res_type, "s", name)
    try:
        req = engine.parse(store, res_type, [*items, ("_count", str(MAX_INNER))], strict=True)
    except FHIRError as err:
        raise _refuse(f"{name}: {err.issues[0].text if err.issues else err}", name) from None
    result = engine.execute(store, req, resolve_valueset=resolve_valueset)
    if result.total > MAX_INNER:
        raise _refuse(f"{name} matches {result.total} {res_type} resources; at most {MAX_INNER} can be followed "
                      "(narrow the inner criteria)", name, "too-costly")
    return result


def _chain(store: Any, res_type: str, raw_name: str, value: str,
           resolve_valueset: Callable[..., Any] | None) -> tuple[str, str]:
    head, _, tail = raw_name.partition(".")
    if "." in tail or not tail:
        raise _refuse(f"Chained parameter '{raw_name}': only one level of chaining is supported", raw_name)
    ref_name, _, type_mod = head.partition(":")
    sp = store.search_params.params_for(res_type).get(ref_name)
    if sp is None or sp.type != "reference":
        raise _refuse(f"Chained parameter '{raw_name}': '{ref_name}' is not a reference parameter of {res_type}",
                      raw_name)
    targets = [type_mod] if type_mod else [t for t in sp.target if t != "Any"]
    inner_name = tail.partition(":")[0]
    targets = [t for t in targets if inner_name in store.search_params.params_for(t) or inner_name in ("_id",)]
    if not targets:
        raise _refuse(f"Chained parameter '{raw_name}': no target type of '{ref_name}' has a parameter "
                      f"'{inner_name}'", raw_name)
    refs: list[str] = []
    for target in targets:
        result = _inner(store, target, [(tail, value)], raw_name, resolve_valueset)
        refs.extend(f"{target}/{s.res_id}" for s in result.matches)
    return (ref_name, ",".join(refs)) if refs else NOTHING


def _has(store: Any, res_type: str, raw_name: str, value: str,
         resolve_valueset: Callable[..., Any] | None) -> tuple[str, str]:
    parts = raw_name.split(":", 3)
    if len(parts) < 4 or not all(parts[1:]):
        raise _refuse(f"'{raw_name}' must be _has:Type:reference:parameter", raw_name)
    _, other, ref_name, inner = parts
    if inner.startswith("_has") or "." in inner.partition(":")[0]:
        raise _refuse(f"'{raw_name}': only one level of _has is supported", raw_name)
    sp = store.search_params.params_for(other).get(ref_name)
    if sp is None or sp.type != "reference":
        raise _refuse(f"'{raw_name}': '{ref_name}' is not a reference parameter of {other}", raw_name)
    result = _inner(store, other, [(inner, value), ("_include", f"{other}:{ref_name}:{res_type}")], raw_name,
                    resolve_valueset)
    ids = sorted({s.res_id for s in result.included if s.res_type == res_type})
    return ("_id", ",".join(ids)) if ids else NOTHING


def rewrite(store: Any, res_type: str, items: list[tuple[str, str]],
            resolve_valueset: Callable[..., Any] | None = None) -> list[tuple[str, str]]:
    """The query with every chain and `_has` replaced by the criteria they resolve to."""
    out = []
    for raw_name, value in items:
        if raw_name.startswith("_has"):
            out.append(_has(store, res_type, raw_name, value, resolve_valueset))
        elif "." in raw_name and not raw_name.startswith("_"):
            out.append(_chain(store, res_type, raw_name, value, resolve_valueset))
        else:
            out.append((raw_name, value))
    return out
