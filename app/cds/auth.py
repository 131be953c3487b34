"""CDS client authentication: the JWT every call carries (https://cds-hooks.hl7.org/2.0/#trusting-cds-clients).

Allowlisted `iss`; key from the issuer's configured JWKS (inline or URL) or from a `jku` header that is on
the issuer's allowlist; `kid` required; ES384 or RS384 only (so `none` and HMAC are refused before any
key is looked at); `aud` = the URL of the endpoint called; `exp`, `iat`, `jti` required, the `jti`
remembered in the database so a replay is refused by every gunicorn worker. Any failure is a bare 401;
the reason goes to the log, the token never does.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import requests
from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError

from app.cds.tables import cds_jti

log = logging.getLogger("lbp.cds")

ALGORITHMS = ("ES384", "RS384")
LEEWAY = 30
MAX_LIFETIME = 300 + LEEWAY  # the spec asks clients for exp at most 5 minutes ahead
JWKS_TTL = 3600.0
JWKS_MIN_REFRESH = 5.0  # an unknown kid refetches, at most this often per URL
PURGE_EVERY = 60.0


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


class JWKSCache:
    """JWKS documents by URL: cached for an hour, refetched (rate-limited) when a kid is unknown."""

    def __init__(self, timeout: float = 2.0):
        self.timeout = timeout
        self._docs: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def keys(self, url: str, *, force: bool = False) -> list[dict[str, Any]]:
        now = time.monotonic()
        hit = self._docs.get(url)
        if hit is not None and not force and now - hit[0] < JWKS_TTL:
            return hit[1].get("keys", [])
        if hit is not None and force and now - hit[0] < JWKS_MIN_REFRESH:
            return hit[1].get("keys", [])
        try:
            response = requests.get(url, timeout=self.timeout, headers={"Accept": "application/json"})
            response.raise_for_status()
            doc = response.json()
        except (requests.RequestException, ValueError) as exc:
            log.warning("JWKS %s could not be fetched: %s", url, type(exc).__name__)
            if hit is not None:
                return hit[1].get("keys", [])
            raise Unauthorized("JWKS unavailable") from None
        with self._lock:
            self._docs[url] = (now, doc)
        return doc.get("keys", [])


def _find(keys: list[dict[str, Any]], kid: str) -> dict[str, Any] | None:
    return next((k for k in keys if k.get("kid") == kid), None)


class Verifier:
    def __init__(self, store: Any, issuers: dict[str, Issuer], timeout: float = 2.0):
        self.store = store
        self.issuers = issuers
        self.jwks = JWKSCache(timeout)
        self._purged = 0.0

    def verify(self, authorization: str | None, audiences: list[str]) -> Caller:
        if not authorization or not authorization.startswith("Bearer "):
            raise Unauthorized("no bearer token")
        token = authorization[len("Bearer "):].strip()
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise Unauthorized("not a JWT") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise Unauthorized(f"alg {alg!r} refused")
        iss = unverified.get("iss")
        issuer = self.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise Unauthorized("iss not trusted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("no kid")
        jwk = self._key(issuer, header, kid)
        try:
            key = jwt.PyJWK(jwk, algorithm=alg).key
        except (jwt.PyJWTError, ValueError, KeyError, TypeError):
            raise Unauthorized("the key does not suit alg") from None
        try:
            claims = jwt.decode(
                token, key, algorithms=[alg], audience=audiences, issuer=iss, leeway=LEEWAY,
                options={"require": ["iss", "aud", "exp", "iat", "jti"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"rejected: {type(exc).__name__}") from None
        now = time.time()
        if float(claims["exp"]) > now + MAX_LIFETIME:
            raise Unauthorized("exp too far ahead")
        if float(claims["iat"]) > now + LEEWAY:
            raise Unauthorized("iat in the future")
        self._remember(issuer.iss, str(claims["jti"]), float(claims["exp"]))
        tenant = claims.get("tenant")
        return Caller(issuer.iss, claims.get("sub"), tenant if isinstance(tenant, str) else None)

    def _key(self, issuer: Issuer, header: dict[str, Any], kid: str) -> dict[str, Any]:
        jku = header.get("jku")
        if jku is not None:
            if jku not in issuer.jku:
                raise Unauthorized("jku not on the issuer's allowlist")
            url: str | None = jku
        elif issuer.jwks is not None:
            found = _find(issuer.jwks.get("keys", []), kid)
            if found is None:
                raise Unauthorized("unknown kid")
            return found
        else:
            url = issuer.jwks_url or (issuer.jku[0] if len(issuer.jku) == 1 else None)
        if url is None:
            raise Unauthorized("no JWKS for the issuer")
        found = _find(self.jwks.keys(url), kid)
        if found is None:
            found = _find(self.jwks.keys(url, force=True), kid)
        if found is None:
            raise Unauthorized("unknown kid")
        return found

    def _remember(self, iss: str, jti: str, expires: float) -> None:
        key = hashlib.sha256(iss.encode()).hexdigest()[:32] + ":" + jti[:255]
        now = time.time()
        try:
            with self.store.transaction() as tx:
                if now - self._purged > PURGE_EVERY:
                    tx.conn.execute(delete(cds_jti).where(cds_jti.c.expires < now - LEEWAY))
                    self._purged = now
                tx.conn.execute(insert(cds_jti).values(key=key, expires=expires + LEEWAY))
        except IntegrityError:
            raise Unauthorized("jti replayed") from None
