"""Signed client JWTs: one verifier, one JWKS cache and one replay table for every flow that accepts them.

Two flows send the server a JWT signed with the client's own key: SMART Backend Services client
assertions (https://hl7.org/fhir/smart-app-launch/backend-services.html) and CDS Hooks calls
(https://cds-hooks.hl7.org/2.0/#trusting-cds-clients). What they share is here: ES384 or RS384 only
(`none` and HMAC are refused before any key is looked at), the key found by the flow, signature, `iss`,
`aud`, `exp` (at most five minutes ahead), `iat` not in the future, and the `jti` remembered in the
database until it expires so that a replay is refused by every gunicorn worker. What differs (which
issuers are trusted, where their keys are, which claims are required) the flow passes in.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import jwt
import requests
from sqlalchemy import delete

from app.store import schema
from app.store.db import Store
from app.store.group_commit import UniqueInserts

log = logging.getLogger("lbp.auth")

ALGORITHMS = ("ES384", "RS384")
LEEWAY = 30
MAX_LIFETIME = 300  # both specifications ask clients for exp at most five minutes ahead
PURGE_EVERY = 60.0
# Claim sizes: a JWT is stored (jti) and logged about (iss); nothing legitimate comes near these bounds.
MAX_TOKEN_BYTES = 16 * 1024
MAX_CLAIM_CHARS = 255
MAX_AUDIENCES = 8


class JWTRefused(Exception):
    """A client JWT that is not accepted; the message says why (for the log or an OAuth error description)."""


class JWKSCache:
    """JWKS documents by URL: cached for `ttl` seconds, refetched (at most every few seconds) on an unknown kid."""

    def __init__(self, timeout: float = 2.0, ttl: float = 3600.0, min_refresh: float = 5.0):
        self.timeout = timeout
        self.ttl = ttl
        self.min_refresh = min_refresh
        self._docs: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def keys(self, url: str, *, force: bool = False) -> list[dict[str, Any]]:
        return list(self._doc(url, force=force)[1].get("keys") or [])

    def _doc(self, url: str, *, force: bool = False) -> tuple[float, dict[str, Any]]:
        """(when it was fetched, the JWKS document) of `url`, from the cache while it is fresh."""
        now = time.monotonic()
        hit = self._docs.get(url)
        if hit is not None and not force and now - hit[0] < self.ttl:
            return hit
        if hit is not None and force and now - hit[0] < self.min_refresh:
            return hit
        try:
            response = requests.get(url, timeout=self.timeout, headers={"Accept": "application/json"})
            response.raise_for_status()
            doc = response.json()
            if not isinstance(doc, dict):
                raise ValueError("not a JWKS")
        except (requests.RequestException, ValueError) as exc:
            log.warning("JWKS %s could not be fetched: %s", url, type(exc).__name__)
            if hit is not None:
                return hit
            raise JWTRefused("the client's JWKS is unavailable") from None
        with self._lock:
            self._docs[url] = (now, doc)
        return now, doc

    def find(self, url: str, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        """The first key of the JWKS at `url` that `match` accepts, refetching once when none does."""
        found = self.find_until(url, match)
        return found[0] if found is not None else None

    def find_until(self, url: str, match: Callable[[dict[str, Any]], bool]) -> tuple[dict[str, Any], float] | None:
        """As `find`, with the monotonic time until which the JWKS it came from is fresh (a parsed key is kept
        no longer: a key the client has withdrawn is refused once its JWKS is refetched)."""
        for force in (False, True):
            fetched, doc = self._doc(url, force=force)
            found = next((k for k in doc.get("keys") or [] if isinstance(k, dict) and match(k)), None)
            if found is not None:
                return found, fetched + self.ttl
        return None


class ReplayCache:
    """The `jti` of every client JWT accepted, until it expires, in one table shared by all workers and flows.

    Each jti is a unique insert, committed before the call is answered; the inserts of concurrent calls
    share one transaction (`app.store.group_commit`), so the hot path pays a few milliseconds of waiting at
    most instead of a commit of its own.
    """

    def __init__(self, store: Store):
        self.store = store
        table = schema.client_jti
        self.inserts = UniqueInserts(
            store, table, "key",
            housekeeping=lambda conn: conn.execute(delete(table).where(table.c.expires < time.time() - LEEWAY)),
            housekeeping_every=PURGE_EVERY,
        )

    def remember(self, issuer: str, jti: str, expires: float) -> None:
        """Record the jti; JWTRefused when this issuer used it before."""
        key = hashlib.sha256(issuer.encode()).hexdigest()[:32] + ":" + jti[:255]
        if not self.inserts.insert({"key": key, "expires": expires + LEEWAY}):
            raise JWTRefused("jti was already used")


# (unverified claims, JOSE header, alg) -> the verification key; raises JWTRefused when the flow knows no such
# key. The claims are not yet verified: the finder may refuse on them, never trust them.
KeyFinder = Callable[[dict[str, Any], dict[str, Any], str], Any]


class ClientJWTVerifier:
    def __init__(self, replay: ReplayCache):
        self.replay = replay

    def verify(self, token: str, *, find_key: KeyFinder, audience: str | Sequence[str],
               require: Sequence[str] = ("iss", "aud", "exp", "jti")) -> dict[str, Any]:
        """The claims of a valid, first-seen client JWT; JWTRefused otherwise."""
        if len(token) > MAX_TOKEN_BYTES:
            raise JWTRefused(f"the JWT is longer than {MAX_TOKEN_BYTES} bytes")
        try:
            # header and claims from one parse; the verifying decode below parses the token once more
            parsed = jwt.decode_complete(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise JWTRefused("not a JWT") from None
        header, unverified = parsed["header"], parsed["payload"]
        if not isinstance(unverified, dict):
            raise JWTRefused("not a JWT")
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise JWTRefused(f"alg {alg} is not accepted; use ES384 or RS384")
        iss = unverified.get("iss")
        if not isinstance(iss, str) or not iss:
            raise JWTRefused("iss is missing")
        check_claim_sizes(unverified)
        key = find_key(unverified, header, alg)
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=[alg], audience=list(audience) if not isinstance(audience, str) else audience,
                issuer=iss, leeway=LEEWAY, options={"require": list(dict.fromkeys([*require, "iat"]))},
            )
        except jwt.PyJWTError as exc:
            raise JWTRefused(f"rejected: {type(exc).__name__}") from None
        now = time.time()
        if float(claims["exp"]) > now + MAX_LIFETIME + LEEWAY:
            raise JWTRefused("exp is more than 5 minutes ahead")
        if float(claims["iat"]) > now + LEEWAY:
            raise JWTRefused("iat is in the future")
        if float(claims["exp"]) - float(claims["iat"]) > MAX_LIFETIME:
            raise JWTRefused("the JWT's lifetime (exp - iat) is over 5 minutes")
        self.replay.remember(iss, str(claims["jti"]), float(claims["exp"]))
        return claims


def check_claim_sizes(claims: dict[str, Any]) -> None:
    """Refuse oversized identifying claims before anything is looked up or stored."""
    for name in ("iss", "sub", "jti", "kid", "tenant"):
        value = claims.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > MAX_CLAIM_CHARS):
            raise JWTRefused(f"{name} must be a string of at most {MAX_CLAIM_CHARS} characters")
    aud = claims.get("aud")
    auds = aud if isinstance(aud, list) else [aud]
    if len(auds) > MAX_AUDIENCES or any(not isinstance(a, str) or len(a) > 2048 for a in auds if a is not None):
        raise JWTRefused("aud is too large")


def jwk_key(jwk: dict[str, Any], alg: str) -> Any:
    """The verification key of a JWK for `alg`; JWTRefused when the key does not suit it."""
    try:
        return jwt.PyJWK(jwk, algorithm=alg).key
    except (jwt.PyJWTError, ValueError, KeyError, TypeError):
        raise JWTRefused("the key does not suit alg") from None
