"""SMART v2 and v1 scopes (`system/Patient.rs`, `system/*.cruds`, `system/Observation.read`) and what they allow."""
from __future__ import annotations

import re
from dataclasses import dataclass

# Interaction -> SMART v2 permission letter
PERMISSION = {
    "read": "r", "vread": "r", "history-instance": "r",
    "search-type": "s", "history-type": "s",
    "create": "c", "update": "u", "patch": "u", "delete": "d",
}
_V2 = re.compile(r"^(system|user|patient)/(\*|[A-Z][A-Za-z]+)\.(c?r?u?d?s?)(\?.*)?$")
_V1 = re.compile(r"^(system|user|patient)/(\*|[A-Z][A-Za-z]+)\.(read|write|\*)$")


@dataclass(frozen=True)
class Grant:
    resource_type: str  # or "*"
    permissions: frozenset[str]


def parse_scope(scope: str) -> Grant | None:
    m = _V1.match(scope)
    if m:
        perms = {"read": "rs", "write": "cud", "*": "cruds"}[m.group(3)]
        return Grant(m.group(2), frozenset(perms))
    m = _V2.match(scope)
    if m and m.group(4):
        return None  # granular (`?category=…`): not enforced by this server, so never taken as the whole type
    if m and m.group(3):
        return Grant(m.group(2), frozenset(m.group(3)))
    return None


class Scopes:
    """A parsed scope string: which permission letters hold on which resource types."""

    def __init__(self, scope: str):
        self.text = " ".join(scope.split())
        self.grants = [g for g in (parse_scope(s) for s in scope.split()) if g is not None]

    def allows(self, resource_type: str, permission: str) -> bool:
        return any(permission in g.permissions and g.resource_type in ("*", resource_type) for g in self.grants)

    def __contains__(self, item: str) -> bool:
        return item in self.text.split()


def granular(scope: str) -> list[str]:
    """The SMART v2 granular scopes (`Type.rs?param=value`) in a scope string: refused at registration and token."""
    return [s for s in scope.split() if "?" in s]


FEEDBACK_SCOPE = "system/cds-feedback.read"  # the CDS feedback report (/cds-feedback); no patient data
CUSTOM_SCOPES = (FEEDBACK_SCOPE,)


def granted(requested: str, allowed: str) -> str:
    """The requested scopes that the client's registration covers (each requested scope narrowed, not widened)."""
    allow = Scopes(allowed)
    out = []
    for s in requested.split():
        if s in CUSTOM_SCOPES:
            if s in allowed.split():
                out.append(s)
            continue
        g = parse_scope(s)
        if g is None:
            continue
        types = [g.resource_type] if g.resource_type != "*" else ["*"]
        ok = all(
            any(p in a.permissions and a.resource_type in ("*", t) for a in allow.grants)
            for t in types for p in g.permissions
        )
        if ok:
            out.append(s)
    return " ".join(out)
