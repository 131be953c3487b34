"""SMART Backend Services: client assertions in, short-lived access tokens out (PyJWT + cryptography).

https://hl7.org/fhir/smart-app-launch/backend-services.html
"""
from __future__ import annotations

import hashlib
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from app.store import schema
from app.store.db import Store

from .client_jwt import ALGORITHMS, ClientJWTVerifier, JWKSCache, JWTRefused, ReplayCache
from .clients import ClientRegistry
from .scopes import granted, granular

ASSERTION_ALGORITHMS = ALGORITHMS
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ACCESS_TOKEN_SECONDS = 300
# The longest lifetime this server issues (the operator's local token, `lbp` CLI); a token claiming more is refused.
MAX_ACCESS_TOKEN_SECONDS = 3600
JWKS_CACHE_SECONDS = 300.0


class AuthError(Exception):
    """Token endpoint or bearer token problem; `error` is the OAuth error code."""

    def __init__(self, error: str, description: str, status: int = 400):
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass
class Principal:
    client_id: str
    scope: str
    expires: float


class TokenService:
    def __init__(self, store: Store, clients: ClientRegistry, issuer: str,
                 verifier: ClientJWTVerifier | None = None, key_pem: str | None = None):
        """`key_pem`: the signing key from a key file or the environment; without it, one kept in the database."""
        self.store = store
        self._key_pem = key_pem
        self.clients = clients
        self.issuer = issuer
        self.verifier = verifier or ClientJWTVerifier(ReplayCache(store))
        self.jwks_cache = JWKSCache(timeout=3.0, ttl=JWKS_CACHE_SECONDS)
        self._key: ec.EllipticCurvePrivateKey | None = None
        self._kid = ""
        self._verified: dict[str, Principal] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ the server's key
    def _signing_key(self) -> tuple[ec.EllipticCurvePrivateKey, str]:
        if self._key is None and self._key_pem:
            loaded_key = serialization.load_pem_private_key(self._key_pem.encode(), password=None)
            if not isinstance(loaded_key, ec.EllipticCurvePrivateKey):
                raise ValueError("the signing key must be an EC P-384 private key (ES384)")
            der = loaded_key.public_key().public_bytes(serialization.Encoding.DER,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)
            self._key, self._kid = loaded_key, hashlib.sha256(der).hexdigest()[:32]
        if self._key is None:
            k = schema.auth_keys.c
            with self.store.engine.connect() as conn:
                row = conn.execute(select(k.kid, k.private_pem).order_by(k.created.desc())).first()
            if row is None:
                key = ec.generate_private_key(ec.SECP384R1())
                pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode()
                kid = uuid.uuid4().hex
                try:
                    with self.store.transaction() as tx:
                        tx.conn.execute(insert(schema.auth_keys).values(kid=kid, private_pem=pem, created=time.time()))
                except IntegrityError:
                    pass
                with self.store.engine.connect() as conn:
                    row = conn.execute(select(k.kid, k.private_pem).order_by(k.created.desc())).first()
            assert row is not None
            loaded = serialization.load_pem_private_key(row[1].encode(), password=None)
            assert isinstance(loaded, ec.EllipticCurvePrivateKey)
            self._key, self._kid = loaded, row[0]
        return self._key, self._kid

    # ------------------------------------------------------------ token endpoint
    def exchange(self, form: dict[str, str], token_url: str | list[str]) -> dict[str, Any]:
        if form.get("grant_type") != "client_credentials":
            raise AuthError("unsupported_grant_type", "grant_type must be client_credentials")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise AuthError("invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
        assertion = form.get("client_assertion") or ""
        client_id = self.verify_assertion(assertion, token_url)
        client = self.clients.get(client_id)
        assert client is not None
        requested = form.get("scope") or ""
        if granular(requested):
            raise AuthError("invalid_scope", "granular scopes (Type.rs?param=value) are not supported by this server")
        scope = granted(requested, client.scope) if requested else client.scope
        if not scope:
            raise AuthError("invalid_scope", "None of the requested scopes is allowed for this client")
        token = self.mint(client_id, scope)
        return {"access_token": token, "token_type": "bearer", "expires_in": ACCESS_TOKEN_SECONDS, "scope": scope}

    def mint(self, client_id: str, scope: str, seconds: int = ACCESS_TOKEN_SECONDS) -> str:
        """An access token signed with the server's key (the token endpoint, and local operator tools)."""
        if seconds > MAX_ACCESS_TOKEN_SECONDS:
            raise ValueError(f"access tokens live at most {MAX_ACCESS_TOKEN_SECONDS} s")
        key, kid = self._signing_key()
        now = int(time.time())
        return jwt.encode(
            {"iss": self.issuer, "sub": client_id, "aud": self.issuer, "scope": scope, "iat": now,
             "exp": now + seconds, "jti": uuid.uuid4().hex},
            key, algorithm="ES384", headers={"kid": kid},
        )

    def verify_assertion(self, assertion: str, token_url: str | list[str]) -> str:
        """The client_id of a valid client assertion; AuthError(invalid_client, 401) otherwise."""
        try:
            claims = self.verifier.verify(assertion, find_key=self._client_key, audience=token_url,
                                          require=("iss", "sub", "aud", "exp", "iat", "jti"))
        except JWTRefused as exc:
            raise AuthError("invalid_client", f"client_assertion: {exc}", 401) from None
        return str(claims["iss"])

    def _client_key(self, unverified: dict[str, Any], header: dict[str, Any], alg: str) -> Any:
        """SMART's own checks: sub is the client_id too, the client is registered, a registered key matches."""
        client_id = unverified["iss"]
        if unverified.get("sub") != client_id:
            raise JWTRefused("iss and sub must both be the client_id")
        client = self.clients.get(client_id)
        if client is None:
            raise JWTRefused("unknown client")
        key = client.key_for(header.get("kid"), alg, self.jwks_cache)
        if key is None:
            raise JWTRefused("no registered key matches kid and alg")
        return key

    # ------------------------------------------------------------ bearer tokens
    def principal(self, token: str) -> Principal:
        """The verified access token's client and scope; verified once, then cached until it expires."""
        cache_key = hashlib.sha256(token.encode()).hexdigest()
        hit = self._verified.get(cache_key)
        now = time.time()
        if hit is not None and hit.expires > now:
            return hit
        key, _ = self._signing_key()
        try:
            claims = jwt.decode(token, key.public_key(), algorithms=["ES384"], audience=self.issuer,
                                issuer=self.issuer, options={"require": ["exp", "iat", "sub", "scope"]})
        except jwt.PyJWTError as exc:
            raise AuthError("invalid_token", f"access token rejected: {type(exc).__name__}", 401) from None
        if float(claims["exp"]) - float(claims["iat"]) > MAX_ACCESS_TOKEN_SECONDS:
            raise AuthError("invalid_token", "access token rejected: lifetime over the issued maximum", 401)
        p = Principal(claims["sub"], claims["scope"], float(claims["exp"]))
        with self._lock:
            if len(self._verified) > 10_000:
                self._verified = {k: v for k, v in self._verified.items() if v.expires > now}
            self._verified[cache_key] = p
        return p

    def jwks(self) -> dict[str, Any]:
        key, kid = self._signing_key()
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        jwk.update({"kid": kid, "alg": "ES384", "use": "sig"})
        return {"keys": [jwk]}
