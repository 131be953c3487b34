"""CDS client authentication: the JWT every call carries (https://cds-hooks.hl7.org/2.0/#trusting-cds-clients).

The CDS flow's own checks: allowlisted `iss`; key from the issuer's configured JWKS (inline or URL) or
from a `jku` header that is on the issuer's allowlist; `kid` required; `aud` = the URL of the endpoint
called; `exp`, `iat`, `jti` required. The rest (ES384/RS384 only, signature, lifetime, the `jti` replay
table shared by every worker and with SMART client assertions) is `app.auth.client_jwt`. Any failure is
a bare 401; the reason goes to the log, the token never does.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.auth.client_jwt import ClientJWTVerifier, JWKSCache, JWTRefused, jwk_key

log = logging.getLogger("lbp.cds")



class Unauthorized(Exception):
    """Bare 401; the message is for the log only."""


@dataclass
class Issuer:
    iss: str
    jwks: dict[str, Any] | None = None
    jwks_url: str | None = None
    jku: tuple[str, ...] = ()
    variant: str | None = None
    tenants: dict[str, str] = field(default_factory=dict)


@dataclass
class Caller:
    iss: str
    sub: str | None
    tenant: str | None


def load_issuers(inline: Any, path: str | None) -> dict[str, Issuer]:
    entries: list[dict[str, Any]] = []
    if path and Path(path).exists():
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        entries.extend(raw.get("issuers", raw) if isinstance(raw, dict) else raw)
    if inline:
        entries.extend(inline.get("issuers", []) if isinstance(inline, dict) else inline)
    out: dict[str, Issuer] = {}
    for e in entries:
        out[e["iss"]] = Issuer(
            iss=e["iss"],
            jwks=e.get("jwks"),
            jwks_url=e.get("jwks_url"),
            jku=tuple(e.get("jku", []) or []),
            variant=e.get("variant"),
            tenants=dict(e.get("tenants", {}) or {}),
        )
    return out


def _find(keys: list[dict[str, Any]], kid: str) -> dict[str, Any] | None:
    return next((k for k in keys if k.get("kid") == kid), None)


class Verifier:
    """The CDS flow over the shared client-JWT verifier: trusted issuers, their keys, kid required, aud the endpoint."""

    def __init__(self, client_jwt: ClientJWTVerifier, issuers: dict[str, Issuer], timeout: float = 2.0):
        self.client_jwt = client_jwt
        self.issuers = issuers
        self.jwks = JWKSCache(timeout)

    def verify(self, authorization: str | None, audiences: list[str]) -> Caller:
        if not authorization or not authorization.startswith("Bearer "):
            raise Unauthorized("no bearer token")
        token = authorization[len("Bearer "):].strip()
        try:
            claims = self.client_jwt.verify(token, find_key=self._issuer_key, audience=audiences,
                                            require=("iss", "aud", "exp", "iat", "jti"))
        except JWTRefused as exc:
            raise Unauthorized(str(exc)) from None
        tenant = claims.get("tenant")
        return Caller(str(claims["iss"]), claims.get("sub"), tenant if isinstance(tenant, str) else None)

    def _issuer_key(self, unverified: dict[str, Any], header: dict[str, Any], alg: str) -> Any:
        issuer = self.issuers.get(unverified["iss"])
        if issuer is None:
            raise JWTRefused("iss not trusted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise JWTRefused("no kid")
        return jwk_key(self._key(issuer, header, kid), alg)

    def _key(self, issuer: Issuer, header: dict[str, Any], kid: str) -> dict[str, Any]:
        jku = header.get("jku")
        if jku is not None:
            if jku not in issuer.jku:
                raise JWTRefused("jku not on the issuer's allowlist")
            url: str | None = jku
        elif issuer.jwks is not None:
            found = _find(issuer.jwks.get("keys", []), kid)
            if found is None:
                raise JWTRefused("unknown kid")
            return found
        else:
            url = issuer.jwks_url or (issuer.jku[0] if len(issuer.jku) == 1 else None)
        if url is None:
            raise JWTRefused("no JWKS for the issuer")
        found = self.jwks.find(url, lambda k: k.get("kid") == kid)
        if found is None:
            raise JWTRefused("unknown kid")
        return found
