"""Signed, expiring patient links (`/q/<token>`) naming the patient, the questionnaire(s), language and variant.

A token is `<payload>.<signature>`: the payload is base64url JSON, the signature HMAC-SHA256 over it
with the server secret (`LBP_SECRET_KEY`, else one generated once and kept in the database so every
gunicorn worker, and every restart, uses the same one). Made by the clinician pages and the CDS cards,
read by the patient pages.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from flask import current_app, request, url_for
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from app.auth.public import primary_base
from app.conventions import LANGUAGES, variant_codes
from app.store.schema import link_revocations, web_secrets

DEFAULT_EXPIRES_IN = 14 * 24 * 3600
IDENTIFIER_SYSTEM = "urn:lbp-pathway:link"

_lock = threading.Lock()


class LinkError(Exception):
    """A link that cannot be used: `tampered` (403) or `expired` (410)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
        self.status = 410 if reason in ("expired", "revoked") else 403


@dataclass(frozen=True)
class PatientLink:
    link_id: str
    patient_id: str
    questionnaire_ids: tuple[str, ...]
    lang: str | None
    variant: str
    expires: float
    start: str | None = None  # start of the pathway (YYYY-MM-DD), for the eight-week calendar
    issuer: str | None = None  # the CDS client (JWT iss) whose call minted the link; None: a clinician's link
    issued: float = 0.0

    def identifier_value(self, questionnaire_id: str) -> str:
        """The QuestionnaireResponse.identifier value: one response per link and questionnaire."""
        return f"{self.link_id}.{questionnaire_id}"


def secret_key() -> bytes:
    """The signing secret: config `SECRET_KEY` / `LBP_SECRET_KEY`, else a generated one stored in the database."""
    app = current_app
    secret_file = app.config.get("LINK_SECRET_FILE")
    configured = (Path(secret_file).read_text(encoding="utf-8").strip() if secret_file else None) or \
        app.config.get("LBP_SECRET_KEY") or app.config.get("SECRET_KEY")
    if configured:
        return configured.encode() if isinstance(configured, str) else bytes(configured)
    cached = app.extensions.get("lbp_web_secret")
    if cached:
        return cached
    with _lock:
        store = app.extensions["lbp"].store
        with store.engine.connect() as conn:
            row = conn.execute(select(web_secrets.c.value).where(web_secrets.c.name == "link-signing")).first()
        if row is None:
            try:
                with store.engine.begin() as conn:
                    conn.execute(insert(web_secrets).values(name="link-signing", value=secrets.token_hex(32),
                                                            created=time.time()))
            except IntegrityError:  # another worker won the race: use its secret
                pass
            with store.engine.connect() as conn:
                row = conn.execute(select(web_secrets.c.value).where(web_secrets.c.name == "link-signing")).first()
        assert row is not None
        key = row[0].encode()
        app.extensions["lbp_web_secret"] = key
        return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(payload: str) -> str:
    return _b64(hmac.new(secret_key(), payload.encode(), hashlib.sha256).digest())


def make_token(patient_id: str, questionnaire_ids: list[str] | tuple[str, ...], *, lang: str | None = None,
               variant: str | None = None, expires_in: float = DEFAULT_EXPIRES_IN,
               start: str | None = None, issuer: str | None = None) -> str:
    """A signed link; `issuer` records the CDS client whose call it was minted for (revocable per issuer)."""
    variant = variant or current_app.config.get("DEFAULT_VARIANT") or "se"
    if variant not in variant_codes():
        raise ValueError(f"unknown variant {variant!r} (one of {', '.join(variant_codes())})")
    if lang is not None and lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r} (one of {', '.join(LANGUAGES)})")
    if not questionnaire_ids:
        raise ValueError("a patient link names at least one questionnaire")
    body: dict[str, Any] = {"jti": uuid.uuid4().hex, "pid": patient_id, "q": list(questionnaire_ids),
                            "var": variant, "exp": int(time.time() + expires_in), "iat": int(time.time())}
    if issuer:
        body["iss"] = issuer
    if lang:
        body["lang"] = lang
    if start:
        body["start"] = str(start)[:10]
    payload = _b64(orjson.dumps(body))
    return f"{payload}.{_sign(payload)}"


def read_token(token: str, *, now: float | None = None) -> PatientLink:
    """The link a token names; LinkError('tampered') on a bad signature, LinkError('expired') after exp."""
    payload, _, signature = token.partition(".")
    if not payload or not signature or not (payload + signature).isascii() or \
            not hmac.compare_digest(_sign(payload), signature):
        raise LinkError("tampered")
    try:
        body = orjson.loads(_unb64(payload))
        link = PatientLink(str(body["jti"]), str(body["pid"]), tuple(str(q) for q in body["q"]),
                           body.get("lang"), str(body.get("var") or "se"), float(body["exp"]), body.get("start"),
                           str(body["iss"]) if body.get("iss") else None, float(body.get("iat") or 0))
    except (ValueError, KeyError, TypeError):
        raise LinkError("tampered") from None
    if (now if now is not None else time.time()) >= link.expires:
        raise LinkError("expired")
    if _revoked(link):
        raise LinkError("revoked")
    return link


def _revoked(link: PatientLink) -> bool:
    keys = [f"jti:{link.link_id}"] + ([f"iss:{link.issuer}"[:300]] if link.issuer else [])
    with current_app.extensions["lbp"].store.engine.connect() as conn:
        rows = conn.execute(select(link_revocations.c.key, link_revocations.c.revoked)
                            .where(link_revocations.c.key.in_(keys))).all()
    # a link is revoked by its own entry, or by its issuer's entry made after the link was minted
    return any(key.startswith("jti:") or link.issued <= revoked for key, revoked in rows)


def revoke(store: Any, *, link_id: str | None = None, issuer: str | None = None) -> None:
    """Revoke one link (its id, the `jti`), or every link minted so far for a CDS issuer."""
    key = f"jti:{link_id}" if link_id else f"iss:{issuer}"[:300]
    with store.transaction() as tx:
        tx.conn.execute(delete(link_revocations).where(link_revocations.c.key == key))
        tx.conn.execute(insert(link_revocations).values(key=key, revoked=time.time()))


def public_base() -> str:
    base = primary_base(current_app.config.get("PUBLIC_BASE_URL"))
    if base:
        return str(base).rstrip("/")
    try:
        return request.host_url.rstrip("/")
    except RuntimeError:  # outside a request: SERVER_NAME must say where the server is
        return ""


def patient_link(patient_id: str, questionnaire_ids: list[str] | tuple[str, ...], *, lang: str | None = None,
                 variant: str | None = None, expires_in: float = DEFAULT_EXPIRES_IN,
                 start: str | None = None) -> str:
    """Absolute URL of a patient's questionnaire link (`/q/<token>`); called by the CDS service and clinicians.

    `start` (YYYY-MM-DD, optional): when the patient's eight weeks in the primary sector began (T5), shown on
    the information page's calendar; without it the calendar counts from the day the page is opened.
    """
    token = make_token(patient_id, questionnaire_ids, lang=lang, variant=variant, expires_in=expires_in,
                       start=start)
    base = public_base()
    if base:
        return f"{base}/q/{token}"
    return url_for("web.questionnaire", token=token, _external=True)
