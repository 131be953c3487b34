"""Clinician browser sessions: a working day long, renewed while in use, revocable.

A clinician signs in once with a SMART access token (minutes long). The server keeps a session row (the client
and scope the token proved, never the token) and the browser an HttpOnly cookie holding a random secret whose
SHA-256 is the row's key. A session ends after `CLINICIAN_SESSION_IDLE_MINUTES` without a page view (sliding:
each view renews it), after `CLINICIAN_SESSION_HOURS` in all, or when revoked (sign-out, or every session of a
client at once with `revoke_client`).
"""
from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

from sqlalchemy import Boolean, Column, Float, String, Table, Text, select, update

from app.auth.tokens import Principal
from app.store.schema import metadata

IDLE_MINUTES = 30
SESSION_HOURS = 10
# a page view renews the session; the row is written at most this often, not on every view
RENEW_EVERY_SECONDS = 60

clinician_session = Table(
    "clinician_session",
    metadata,
    Column("key", String(64), primary_key=True),  # sha256 of the cookie's secret
    Column("client_id", String(300), nullable=False),
    Column("scope", Text, nullable=False),
    Column("created", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
)

# The Practitioner a clinician named at sign-in: the author of the forms they fill in. A table of its own, so a
# database made before it existed gains it by create_all (no column added to an existing table).
session_practitioner = Table(
    "clinician_session_practitioner",
    metadata,
    Column("key", String(64), primary_key=True),  # the session's key
    Column("practitioner", String(300), nullable=False),  # Practitioner/<id>
)


def create_tables(engine: Any) -> None:
    metadata.create_all(engine, tables=[clinician_session, session_practitioner])


def _key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _limits(config: Any) -> tuple[float, float]:
    idle = float(config.get("CLINICIAN_SESSION_IDLE_MINUTES", IDLE_MINUTES)) * 60
    total = float(config.get("CLINICIAN_SESSION_HOURS", SESSION_HOURS)) * 3600
    return idle, total


def start(store: Any, principal: Principal, practitioner: str | None = None) -> str:
    """A new session for the principal (and the Practitioner who signed in, if named); returns the cookie's secret."""
    secret = secrets.token_urlsafe(32)
    now = time.time()
    with store.engine.begin() as conn:
        conn.execute(clinician_session.insert().values(key=_key(secret), client_id=principal.client_id,
                                                       scope=principal.scope, created=now, last_seen=now,
                                                       revoked=False))
        if practitioner:
            conn.execute(session_practitioner.insert().values(key=_key(secret), practitioner=practitioner))
    return secret


def practitioner(store: Any, secret: str) -> str | None:
    """The Practitioner reference named when the session began, if any (read after `principal` accepted it)."""
    with store.engine.connect() as conn:
        row = conn.execute(select(session_practitioner.c.practitioner)
                           .where(session_practitioner.c.key == _key(secret))).first()
    return row.practitioner if row is not None else None


def principal(store: Any, secret: str, config: Any) -> Principal | None:
    """The session's principal, renewed; None if unknown, idle too long, too old or revoked."""
    idle, total = _limits(config)
    now = time.time()
    with store.engine.connect() as conn:
        row = conn.execute(select(clinician_session).where(clinician_session.c.key == _key(secret))).first()
    if row is None or row.revoked or now - row.last_seen > idle or now - row.created > total:
        return None
    if now - row.last_seen > RENEW_EVERY_SECONDS:
        with store.engine.begin() as conn:
            conn.execute(update(clinician_session).where(clinician_session.c.key == row.key).values(last_seen=now))
    return Principal(row.client_id, row.scope, min(now + idle, row.created + total))


def revoke(store: Any, secret: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(update(clinician_session).where(clinician_session.c.key == _key(secret)).values(revoked=True))


def revoke_client(store: Any, client_id: str) -> int:
    """Ends every session a client's token opened (a lost device, a withdrawn client); returns how many."""
    with store.engine.begin() as conn:
        result = conn.execute(update(clinician_session).where(clinician_session.c.client_id == client_id,
                                                              clinician_session.c.revoked.is_(False))
                              .values(revoked=True))
    return int(result.rowcount or 0)
