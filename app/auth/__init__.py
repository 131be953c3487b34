"""Access control for the FHIR API: bearer tokens, SMART scopes per interaction, and the audit trail.

On by default. Knowledge artifacts may be read and searched without a token when the deployment allows
it (`LBP_PUBLIC_KNOWLEDGE`, default on); patient data never. `LBP_AUTH_DISABLED=true` switches checks
off for development; it is logged at every start and stated in the CapabilityStatement.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask, current_app, g, request

from app.errors import FHIRError
from app.store.db import KNOWLEDGE_TYPES

from .client_jwt import MAX_TOKEN_BYTES, ClientJWTVerifier, ReplayCache
from .clients import ClientRegistry
from .scopes import PERMISSION, Scopes
from .tokens import AuthError, Principal, TokenService

log = logging.getLogger("lbp")


@dataclass
class AuditNote:
    """What the current request touched, for its AuditEvent."""

    interaction: str = ""
    action: str = "E"
    resource_type: str | None = None
    entities: list[str] = field(default_factory=list)  # references: Type/id
    query: str | None = None
    sensitive: bool = False  # touches patient data (or was refused)
    queries: list[tuple[str, str]] = field(default_factory=list)  # conditional lookups: (type, query)
    audited_in_write: bool = False  # the request's AuditEvent was committed with its write
    person: str | None = None  # Practitioner/<id> a clinician session was opened for (declared at sign-in)


class Auth:
    def __init__(self, app: Flask, store: Any, client_jwt: ClientJWTVerifier):
        self.disabled = bool(app.config["AUTH_DISABLED"])
        self.public_knowledge = bool(app.config["PUBLIC_KNOWLEDGE"])
        self.clients = ClientRegistry(app.config["CLIENTS_FILE"])
        self.client_jwt = client_jwt  # SMART client assertions and CDS Hooks calls share it
        self.tokens = TokenService(store, self.clients, issuer=app.config.get("AUTH_ISSUER") or "lbp-pathway",
                                   verifier=client_jwt, key_pem=_secret(app, "SIGNING_KEY"))
        if self.disabled:
            log.warning("AUTHENTICATION IS DISABLED (LBP_AUTH_DISABLED=true): anyone can read and write "
                        "patient data. Development only.")


def _secret(app: Flask, name: str) -> str | None:
    """A secret from `LBP_<name>_FILE` (a file) or `LBP_<name>` (the environment), not from the database."""
    path = app.config.get(f"{name}_FILE")
    if path:
        return Path(path).read_text(encoding="utf-8").strip()
    value = app.config.get(name)
    return str(value) if value else None


def auth() -> Auth:
    return current_app.extensions["lbp"].auth


def note() -> AuditNote:
    if "audit" not in g:
        g.audit = AuditNote()
    return g.audit


def authenticate() -> Principal | None:
    """Reads the bearer token, if any. A token that is present but not valid is refused (401)."""
    header = request.headers.get("Authorization", "")
    if not header:
        g.principal = None
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise unauthorized("invalid_request", "Authorization must be a Bearer token")
    if len(token) > MAX_TOKEN_BYTES:
        raise unauthorized("invalid_token", "The access token is too long")
    try:
        g.principal = auth().tokens.principal(token.strip())
    except AuthError as err:
        raise unauthorized(err.error, err.description) from None
    return g.principal


def unauthorized(error: str, description: str) -> FHIRError:
    note().sensitive = True
    return FHIRError("login", description, "Authorization", status=401, headers={
        "WWW-Authenticate": f'Bearer realm="lbp-pathway", error="{error}", '
                            f'error_description="{description.replace(chr(34), chr(39))}"'})


def allowed(resource_type: str, permission: str) -> bool:
    a = auth()
    if a.disabled:
        return True
    if permission in ("r", "s") and resource_type in KNOWLEDGE_TYPES and a.public_knowledge:
        return True
    principal: Principal | None = g.get("principal")
    return principal is not None and Scopes(principal.scope).allows(resource_type, permission)


def require(resource_type: str, permission: str, where: str | None = None) -> None:
    """Refuse (401 without a token, 403 without the scope) unless `permission` holds on `resource_type`."""
    n = note()
    if resource_type not in KNOWLEDGE_TYPES:
        n.sensitive = True
    if resource_type == "AuditEvent" and permission in ("c", "u", "d"):
        # The audit trail is append-only: only the server writes it, whatever a client's (wildcard) scope.
        n.sensitive = True
        raise FHIRError("forbidden", "AuditEvents are written by this server only; they cannot be created, "
                        "changed or deleted through the API", where or resource_type, status=403)
    if allowed(resource_type, permission):
        return
    if g.get("principal") is None and not auth().disabled:
        raise unauthorized("invalid_token", "An access token is required for this request")
    n.sensitive = True
    raise FHIRError("forbidden", f"The access token's scopes do not allow '{permission}' on {resource_type}",
                    where or resource_type, status=403)


def require_interaction(interaction: str, resource_type: str, where: str | None = None) -> None:
    n = note()
    n.interaction = interaction
    n.resource_type = resource_type
    n.action = {"c": "C", "r": "R", "s": "R", "u": "U", "d": "D"}[PERMISSION[interaction]]
    require(resource_type, PERMISSION[interaction], where)


def client_id() -> str:
    principal: Principal | None = g.get("principal")
    if principal is not None:
        return principal.client_id
    return "anonymous (authentication disabled)" if auth().disabled else "anonymous"


__all__ = ["Auth", "AuthError", "ClientJWTVerifier", "ReplayCache", "allowed", "authenticate", "note", "require",
           "require_interaction"]
