"""CDS client authentication: the JWT every call carries (https://cds-hooks.hl7.org/2.0/#trusting-cds-clients).

The CDS flow's own checks: allowlisted `iss`; key from the issuer's configured JWKS (inline or URL) or
from a `jku` header that is on the issuer's allowlist; `kid` required; `aud` = the URL of the endpoint
called; `exp`, `iat`, `jti` required; the issuers file is re-read when it changes. The rest (ES384/RS384
only, signature, lifetime, the `jti` replay table shared by every worker and with SMART client assertions)
is `app.auth.client_jwt`. Any failure is
a 401; the reason goes to the log at WARNING with the claimed issuer (and to the caller only in the debug
mode, LBP_CDS_DEBUG_REFUSALS); the token never does.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.auth.client_jwt import ClientJWTVerifier, JWKSCache, JWTRefused, jwk_key

log = logging.getLogger("lbp.cds")


class Unauthorized(Exception):
    """Bare 401; the message (the check that failed) is for the log and the debug mode, never the token."""

    def __init__(self, message: str, iss: str | None = None):
        super().__init__(message)
        self.iss = iss


class IssuersFile:
    """The trusted issuers: inline ones plus the file's, re-read when the file changes (no restart needed)."""

    def __init__(self, inline: Any, path: str | None):
        self.inline = inline
        self.path = path
        self._stamp: tuple[float, int] | None = None
        self.issuers: dict[str, Issuer] = {}
        self.refresh()

    def _current_stamp(self) -> tuple[float, int] | None:
        try:
            st = Path(self.path).stat() if self.path else None
        except OSError:
            return None
        return (st.st_mtime, st.st_size) if st else None

    def refresh(self) -> dict[str, Issuer]:
        stamp = self._current_stamp()
        if stamp != self._stamp or not self.issuers and self.inline:
            try:
                self.issuers = load_issuers(self.inline, self.path)
                self._stamp = stamp
                log.info("CDS trusted issuers: %d (from %s)", len(self.issuers), self.path or "configuration")
            except (ValueError, KeyError, TypeError) as exc:  # a half-written or bad file: keep the last good set
                log.error("CDS trusted issuers file %s not read: %s", self.path, exc)
        return self.issuers

    def get(self, iss: str) -> Issuer | None:
        return self.issuers.get(iss)


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


def _unverified_iss(token: str) -> str | None:
    """The `iss` a refused token claims (for the log: which client to tell), or None."""
    import jwt

    try:
        iss = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        return None
    return iss[:200] if isinstance(iss, str) else None


def _find(keys: list[dict[str, Any]], kid: str) -> dict[str, Any] | None:
    return next((k for k in keys if k.get("kid") == kid), None)


# A parsed key from an inline JWKS is kept while its issuer's entry is unchanged (a new issuers file replaces
# the entry), and at most this long; one from a fetched JWKS no longer than that document is cached.
INLINE_KEY_SECONDS = 300.0
MAX_PARSED_KEYS = 1024


@dataclass
class _ParsedKey:
    issuer: Issuer  # the issuers-file entry it was found under: a reloaded file makes a new one
    key: Any
    until: float  # monotonic


class Verifier:
    """The CDS flow over the shared client-JWT verifier: trusted issuers, their keys, kid required, aud the endpoint.

    Verification keys are parsed from their JWK once and kept per (issuer, kid, JWKS source, alg): the
    allowlist of issuers and of `jku` URLs is still checked on every call, before the cache is looked at.
    """

    def __init__(self, client_jwt: ClientJWTVerifier, issuers: dict[str, Issuer] | IssuersFile,
                 timeout: float = 2.0, jwks_ttl: float = 3600.0, inline_key_seconds: float = INLINE_KEY_SECONDS):
        self.client_jwt = client_jwt
        self.source = issuers if isinstance(issuers, IssuersFile) else None
        self.issuers = issuers.issuers if isinstance(issuers, IssuersFile) else issuers
        self.jwks = JWKSCache(timeout, ttl=jwks_ttl)
        self.inline_key_seconds = inline_key_seconds
        self._parsed: dict[tuple[str, str, str | None, str], _ParsedKey] = {}

    def verify(self, authorization: str | None, audiences: list[str]) -> Caller:
        if self.source is not None:
            self.issuers = self.source.refresh()
        if not authorization or not authorization.startswith("Bearer "):
            raise Unauthorized("no bearer token")
        token = authorization[len("Bearer "):].strip()
        try:
            claims = self.client_jwt.verify(token, find_key=self._issuer_key, audience=audiences,
                                            require=("iss", "aud", "exp", "iat", "jti"))
        except JWTRefused as exc:
            raise Unauthorized(str(exc), _unverified_iss(token)) from None
        tenant = claims.get("tenant")
        return Caller(str(claims["iss"]), claims.get("sub"), tenant if isinstance(tenant, str) else None)

    def _issuer_key(self, unverified: dict[str, Any], header: dict[str, Any], alg: str) -> Any:
        issuer = self.issuers.get(unverified["iss"])
        if issuer is None:
            raise JWTRefused("iss not trusted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise JWTRefused("no kid")
        jku = header.get("jku")
        if jku is not None and jku not in issuer.jku:
            raise JWTRefused("jku not on the issuer's allowlist")
        cache_key = (issuer.iss, kid, jku, alg)
        now = time.monotonic()
        hit = self._parsed.get(cache_key)
        if hit is not None and hit.issuer is issuer and now < hit.until:
            return hit.key
        jwk, until = self._key(issuer, jku, kid, now)
        key = jwk_key(jwk, alg)
        if len(self._parsed) >= MAX_PARSED_KEYS:
            self._parsed.clear()
        self._parsed[cache_key] = _ParsedKey(issuer, key, until)
        return key

    def _key(self, issuer: Issuer, jku: str | None, kid: str, now: float) -> tuple[dict[str, Any], float]:
        """The issuer's JWK named `kid` and the monotonic time until which it may be used without looking again."""
        if jku is not None:
            url: str | None = jku
        elif issuer.jwks is not None:
            found = _find(issuer.jwks.get("keys", []), kid)
            if found is None:
                raise JWTRefused("unknown kid")
            return found, now + self.inline_key_seconds
        else:
            url = issuer.jwks_url or (issuer.jku[0] if len(issuer.jku) == 1 else None)
        if url is None:
            raise JWTRefused("no JWKS for the issuer")
        found_until = self.jwks.find_until(url, lambda k: k.get("kid") == kid)
        if found_until is None:
            raise JWTRefused("unknown kid")
        return found_until
