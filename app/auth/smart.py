"""SMART discovery and the token endpoint — https://hl7.org/fhir/smart-app-launch/backend-services.html"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from . import auth
from .audit import record_token_refusal
from .public import primary_base, public_bases
from .tokens import ASSERTION_ALGORITHMS, AuthError

bp = Blueprint("smart", __name__)


def token_url() -> str:
    """The token endpoint as advertised (discovery): the first configured public base, else as requested."""
    base = primary_base(current_app.config.get("PUBLIC_BASE_URL")) or request.host_url
    return base.rstrip("/") + "/auth/token"


def token_audiences() -> list[str]:
    """What a client assertion's `aud` may be: the token endpoint under a configured public base, never the Host."""
    return [base + "/auth/token" for base in public_bases()]


def smart_configuration() -> dict:
    base = (primary_base(current_app.config.get("PUBLIC_BASE_URL")) or request.host_url).rstrip("/")
    return {
        "token_endpoint": token_url(),
        "jwks_uri": base + "/auth/jwks",
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "scopes_supported": ["system/*.cruds", "system/*.rs", "system/*.read", "system/*.write"],
        "capabilities": ["client-confidential-asymmetric", "permission-v2", "permission-v1"],
    }


@bp.get("/.well-known/smart-configuration")
def well_known():
    return jsonify(smart_configuration())


@bp.get("/auth/jwks")
def jwks():
    return jsonify(auth().tokens.jwks())


@bp.post("/auth/token")
def token():
    try:
        body = auth().tokens.exchange(request.form.to_dict(), token_audiences())
    except AuthError as err:
        record_token_refusal(err.error, err.status)
        resp = jsonify({"error": err.error, "error_description": err.description})
        resp.status_code = err.status
        if err.status == 401:
            resp.headers["WWW-Authenticate"] = 'Bearer realm="lbp-pathway"'
        resp.headers["Cache-Control"] = "no-store"
        return resp
    resp = jsonify(body)
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Pragma"] = "no-cache"
    return resp
