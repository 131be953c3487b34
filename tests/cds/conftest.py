"""CDS fixtures: client signing keys (ES384, RS384), a trusted-issuer configuration, one application with the
artifacts loaded (shared by the module, since loading takes seconds), and a real HTTP server for it."""
from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from werkzeug.serving import make_server

from app import create_app
from tests.cds.orders import ORDERS, draft_bundle
from tests.cds.patients import DATA, TODAY

ISSUER = "https://ehr.test/cds-client"
DANISH_ISSUER = "https://ehr.dk.test/cds"
JKU_ISSUER = "https://ehr.jku.test"
PREFETCH_TYPES = ["Condition", "Observation", "MedicationStatement", "MedicationRequest", "Procedure",
                  "DiagnosticReport", "ImagingStudy", "QuestionnaireResponse", "CarePlan"]


class Keys:
    def __init__(self):
        self.es = ec.generate_private_key(ec.SECP384R1())
        self.rs = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.es_other = ec.generate_private_key(ec.SECP384R1())

    def jwk(self, which: str, kid: str) -> dict[str, Any]:
        key = getattr(self, which)
        if which.startswith("es"):
            out = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
            out["alg"] = "ES384"
        else:
            out = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            out["alg"] = "RS384"
        out.update(kid=kid, use="sig")
        return out

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.jwk("es", "es-1"), self.jwk("rs", "rs-1")]}


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys()


def mint(keys: Keys, aud: str, *, key: str = "es", iss: str = ISSUER, kid: str | None = None,
         exp_in: int = 120, iat_offset: int = 0, jti: str | None = None, alg: str | None = None,
         extra: dict[str, Any] | None = None, headers: dict[str, Any] | None = None) -> str:
    now = int(time.time())
    claims = {"iss": iss, "sub": "ehr-client", "aud": aud, "exp": now + exp_in, "iat": now + iat_offset,
              "jti": jti or uuid.uuid4().hex, **(extra or {})}
    algorithm = alg or ("ES384" if key.startswith("es") else "RS384")
    hdr = {"kid": kid or ("es-1" if key.startswith("es") else "rs-1"), "typ": "JWT", **(headers or {})}
    return jwt.encode(claims, getattr(keys, key), algorithm=algorithm, headers=hdr)


class JWKSHost:
    """A tiny HTTP server publishing a JWKS (for jku and jwks_url issuers); its keys can change."""

    def __init__(self, jwks: dict[str, Any]):
        self.jwks = jwks
        self.hits = 0

        def wsgi(environ, start_response):
            self.hits += 1
            body = json.dumps(self.jwks).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]

        self.server = make_server("127.0.0.1", 0, wsgi, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def jwks_host(keys):
    host = JWKSHost({"keys": [keys.jwk("es", "es-1")]})
    yield host
    host.close()


def issuers(keys: Keys, jwks_url: str) -> list[dict[str, Any]]:
    return [
        {"iss": ISSUER, "jwks": keys.jwks()},
        {"iss": DANISH_ISSUER, "jwks": keys.jwks(), "variant": "midtjylland", "tenants": {"skane-tenant": "skane"}},
        {"iss": JKU_ISSUER, "jku": [jwks_url]},
    ]


def cds_config(tmp: Path, keys: Keys, jwks_url: str, **more: Any) -> dict[str, Any]:
    from app.auth.local import register_client

    clients = tmp / "clients.json"
    register_client(clients, "test-admin", "system/*.cruds", tmp / "keys")
    return {"DATABASE_URL": f"sqlite:///{tmp / 'cds.db'}", "TESTING": True, "VALIDATE_WRITES": False,
            "CLIENTS_FILE": str(clients), "CDS_TODAY": TODAY.isoformat(),
            # the tests' fhirServer is this machine (the live server): an explicit configuration
            "CDS_ALLOW_LOCAL_FHIR_SERVER": True,
            "CDS_TRUSTED_ISSUERS": issuers(keys, jwks_url), "CDS_TRUSTED_ISSUERS_FILE": None, **more}


@pytest.fixture(scope="session")
def cds_app(tmp_path_factory, keys, jwks_host):
    """SQLite; LBP_TEST_CDS_DATABASE_URL runs the module's application on another database (PostgreSQL)."""
    tmp = tmp_path_factory.mktemp("cds")
    config = cds_config(tmp, keys, jwks_host.url)
    other = os.environ.get("LBP_TEST_CDS_DATABASE_URL")
    if other:
        from sqlalchemy import create_engine

        import app.cds.tables  # noqa: F401  (its tables are on the metadata, dropped too)
        from app.store.schema import metadata

        engine = create_engine(other)
        metadata.drop_all(engine)
        engine.dispose()
        config["DATABASE_URL"] = other
    application = create_app(config)
    yield application
    application.extensions["lbp"].store.dispose()


class Live:
    """The CDS application on a real HTTP server (werkzeug, threaded), with the test patients loaded."""

    def __init__(self, app, keys: Keys):
        self.app = app
        self.keys = keys
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        # the live server's URL is one of the application's public URLs (the accepted JWT audiences)
        bases = app.config.get("PUBLIC_BASE_URL") or []
        app.config["PUBLIC_BASE_URL"] = [*(bases if isinstance(bases, list) else [bases]), self.base]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.http = requests.Session()

    def fhir_token(self, scope: str = "system/*.rs") -> str:
        return self.app.extensions["lbp"].auth.tokens.mint("cds-test", scope)

    def load_patients(self) -> None:
        token = self.fhir_token("system/*.cruds")
        for path in sorted(DATA.glob("Bundle-patient-*.json")):
            r = self.http.post(f"{self.base}/fhir", data=path.read_bytes(), timeout=30,
                               headers={"Content-Type": "application/fhir+json", "Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text[:500]

    def post(self, path: str, body: Any, token: str | None = None, **kwargs: Any) -> requests.Response:
        url = self.base + path
        if token is None:
            token = mint(self.keys, url)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.http.post(url, json=body, headers=headers, timeout=30, **kwargs)

    def get(self, path: str, token: str | None = None) -> requests.Response:
        url = self.base + path
        if token is None:
            token = mint(self.keys, url)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.http.get(url, headers=headers, timeout=30)

    def close(self) -> None:
        self.http.close()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def live(cds_app, keys):
    server = Live(cds_app, keys)
    server.load_patients()
    yield server
    server.close()


# ------------------------------------------------------------------ request builders
def record(name: str) -> list[dict[str, Any]]:
    bundle = json.loads((DATA / f"Bundle-patient-{name}.json").read_text(encoding="utf-8"))
    return [e["resource"] for e in bundle["entry"]]


def full_prefetch(name: str) -> dict[str, Any]:
    resources = record(name)
    out: dict[str, Any] = {"patient": resources[0]}
    for t in PREFETCH_TYPES:
        key = t[0].lower() + t[1:]
        out[key] = {"resourceType": "Bundle", "type": "searchset",
                    "entry": [{"resource": r} for r in resources if r["resourceType"] == t]}
    return out


def hook_request(hook: str, patient: str, orders: list[str] | tuple[str, ...] = (), *, prefetch: Any = "full",
                 selections: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    context: dict[str, Any] = {"patientId": patient, "userId": "Practitioner/dr-1"}
    drafts = [ORDERS[o](patient) for o in orders]
    if hook != "patient-view":
        context["draftOrders"] = draft_bundle(drafts)
    if hook == "order-select":
        context["selections"] = selections if selections is not None else [
            f"{d['resourceType']}/{d['id']}" for d in drafts]
    body: dict[str, Any] = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context}
    if prefetch == "full":
        body["prefetch"] = full_prefetch(patient)
    elif prefetch is not None:
        body["prefetch"] = prefetch
    body.update(extra)
    return body


class Caller:
    """Calls the CDS service through Flask's test client with a fresh signed JWT each time."""

    def __init__(self, app, keys: Keys, iss: str = ISSUER, key: str = "es"):
        self.app = app
        self.client = app.test_client()
        self.keys = keys
        self.iss = iss
        self.key = key

    def token(self, path: str, **kwargs: Any) -> str:
        return mint(self.keys, "http://localhost" + path, iss=kwargs.pop("iss", self.iss),
                    key=kwargs.pop("key", self.key), **kwargs)

    def post(self, path: str, body: Any, **kwargs: Any):
        return self.client.post(path, json=body, headers={"Authorization": f"Bearer {self.token(path, **kwargs)}"})

    def get(self, path: str, **kwargs: Any):
        return self.client.get(path, headers={"Authorization": f"Bearer {self.token(path, **kwargs)}"})


@pytest.fixture(scope="session")
def cds(cds_app, keys) -> Caller:
    return Caller(cds_app, keys)
