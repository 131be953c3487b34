"""Generated bad input over every interaction: no request may answer 5xx (hypothesis, in-process).

Valid requests of each interaction (FHIR REST, bundles, operations, the token endpoint, CDS Hooks calls
and feedback, the patient and clinician pages) are mutated: a value anywhere in the body is replaced by
junk of another JSON type, a key is dropped or added, a query parameter or header takes a generated
value. The counts are printed; the suite fails on the first 5xx, with the request that caused it.
"""
from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import create_app
from app.auth.local import register_client, token_request

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FHIR = "application/fhir+json"
EXAMPLES = 200  # per interaction family; 11 families (two send two requests each) -> about 2,400 requests
COUNTS: Counter[str] = Counter()
SERVER_ERRORS: Counter[str] = Counter()  # answers >= 500, by interaction family
ISSUER = "https://ehr.generated.test"
CDS_KEY = ec.generate_private_key(ec.SECP384R1())


def _jwks() -> dict:
    jwk = jwt.algorithms.ECAlgorithm.to_jwk(CDS_KEY.public_key(), as_dict=True)
    jwk.update(kid="gen-1", alg="ES384", use="sig")
    return {"keys": [jwk]}


@pytest.fixture(scope="module")
def generated_app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("generated")
    clients = tmp / "clients.json"
    register_client(clients, "fuzz-admin", "system/*.cruds system/cds-feedback.read", tmp / "keys")
    register_client(clients, "fuzz-narrow", "system/Observation.rs", tmp / "keys")
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp / 'generated.db'}", "TESTING": True,
                      "CLIENTS_FILE": str(clients), "CDS_TRUSTED_ISSUERS": [{"iss": ISSUER, "jwks": _jwks()}],
                      "CDS_TRUSTED_ISSUERS_FILE": None, "CDS_ALLOW_LOCAL_FHIR_SERVER": False,
                      "CDS_PREFETCH_DEADLINE": 1.0})
    app.config["KEY_DIR"] = str(tmp / "keys")
    c = app.test_client()
    r = c.post("/auth/token", data=token_request("fuzz-admin", tmp / "keys" / "fuzz-admin.pem",
                                                 "http://localhost/auth/token", "system/*.cruds"))
    assert r.status_code == 200
    token = app.extensions["lbp"].auth.tokens.mint("fuzz-admin", "system/*.cruds system/cds-feedback.read", 3600)
    app.config["ADMIN_TOKEN"] = token
    headers = {"Authorization": f"Bearer {token}"}
    patient = c.post("/fhir/Patient", json={"resourceType": "Patient", "id": "x", "gender": "female",
                                            "birthDate": "1970-01-01"}, content_type=FHIR, headers=headers)
    app.config["PATIENT_ID"] = patient.get_json()["id"]
    obs = c.post("/fhir/Observation", json=_clean(_observation(app.config["PATIENT_ID"])), content_type=FHIR,
                 headers=headers)
    app.config["OBSERVATION_ID"] = obs.get_json()["id"]
    yield app
    print(f"\ngenerated requests: {sum(COUNTS.values())} "
          f"({', '.join(f'{k} {v}' for k, v in sorted(COUNTS.items()))})")
    app.extensions["lbp"].store.dispose()


# ------------------------------------------------------------------ valid templates

def _observation(pid: str) -> dict:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": "2026-01-02",
            "valueInteger": 7, "valueQuantity": None}


def _clean(resource: dict) -> dict:
    return {k: v for k, v in resource.items() if v is not None}


def _bundle(pid: str, kind: str) -> dict:
    return {"resourceType": "Bundle", "type": kind, "entry": [
        {"fullUrl": "urn:uuid:0b0c0d0e-0000-0000-0000-000000000001",
         "resource": {"resourceType": "Patient", "gender": "male"},
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:x|1"}},
        {"resource": _clean(_observation(pid)), "request": {"method": "POST", "url": "Observation"}},
        {"resource": _clean({**_observation(pid), "id": "o-1"}), "request": {"method": "PUT", "url": "Observation/o-1",
                                                                            "ifMatch": 'W/"1"'}},
        {"request": {"method": "GET", "url": f"Observation?subject=Patient/{pid}"}},
        {"request": {"method": "DELETE", "url": "Observation?code=123"}},
    ]}


def _hook(pid: str, hook: str) -> dict:
    context: dict[str, Any] = {"patientId": pid, "userId": "Practitioner/dr-1"}
    order = {"resourceType": "ServiceRequest", "id": "sr-1", "status": "draft", "intent": "proposal",
             "subject": {"reference": f"Patient/{pid}"},
             "code": {"coding": [{"system": "http://loinc.org", "code": "24968-0"}]}}
    if hook != "patient-view":
        context["draftOrders"] = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": order}]}
    if hook == "order-select":
        context["selections"] = ["ServiceRequest/sr-1"]
    return {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context,
            "prefetch": {"patient": {"resourceType": "Patient", "id": pid, "gender": "female",
                                     "birthDate": "1970-01-01"},
                         "condition": {"resourceType": "Bundle", "type": "searchset", "entry": []}},
            "fhirServer": "https://ehr.example/fhir",
            "fhirAuthorization": {"access_token": "t", "token_type": "Bearer", "expires_in": 300,
                                  "scope": "patient/*.read", "subject": "cds"}}


# ------------------------------------------------------------------ mutation

JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**63, max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
    st.sampled_from(["", "Patient?", "?x=1", "urn:uuid:", "Patient/../x", "W/\"x\"", "1.50", "9" * 30, "\u0000",
                     "http://127.0.0.1:1/", "Patient?family=a", "$apply", "*", "Observation/", "DELETE"]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(_paths(v, (*path, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(_paths(v, (*path, i)))
    return out


def _replace(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


def _drop(value: Any, path: tuple) -> Any:
    if not path:
        return value
    if len(path) == 1:
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if k != path[0]}
        return [v for i, v in enumerate(value) if i != path[0]]
    head = path[0]
    if isinstance(value, dict):
        return {**value, head: _drop(value[head], path[1:])}
    copy = list(value)
    copy[head] = _drop(copy[head], path[1:])
    return copy


@st.composite
def mutated(draw, template: Any) -> Any:
    value = template
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(value)
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "replace", "drop", "add"]))
        if action == "replace":
            value = _replace(value, path, draw(JUNK))
        elif action == "drop":
            value = _drop(value, path)
        else:
            target_paths = [p for p in paths if isinstance(_get(value, p), dict)]
            if target_paths:
                p = draw(st.sampled_from(target_paths))
                value = _replace(value, p, {**_get(value, p), draw(st.sampled_from(
                    ["id", "meta", "resourceType", "extension", "reference", "valueDecimal", "contained", "x"])):
                    draw(JUNK)})
    return value


def _get(value: Any, path: tuple) -> Any:
    for p in path:
        value = value[p]
    return value


def _send(app, family: str, method: str, path: str, *, body: Any = None, raw: bytes | None = None,
          headers: dict | None = None, data: dict | None = None, token: bool = True):
    c = app.test_client()
    h = dict(headers or {})
    if token and "Authorization" not in h:
        h["Authorization"] = f"Bearer {app.config['ADMIN_TOKEN']}"
    kwargs: dict[str, Any] = {"headers": h}
    if data is not None:
        kwargs["data"] = data
    elif raw is not None:
        kwargs.update(data=raw, content_type=FHIR)
    elif body is not None:
        kwargs.update(data=json.dumps(body), content_type=FHIR)
    r = c.open(path, method=method, **kwargs)
    COUNTS[family] += 1
    if r.status_code >= 500:
        SERVER_ERRORS[family] += 1
    assert r.status_code < 500, (family, method, path, body if raw is None else raw[:200], r.get_data()[:500])
    return r


SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


# ------------------------------------------------------------------ the families

@SETTINGS
@given(data=st.data())
def test_generated_creates_and_updates_never_answer_5xx(generated_app, data):
    app = generated_app
    pid, oid = app.config["PATIENT_ID"], app.config["OBSERVATION_ID"]
    body = data.draw(mutated(_clean({**_observation(pid), "id": oid})))
    kind = data.draw(st.sampled_from(["create", "update", "conditional-update", "conditional-create"]))
    if kind == "create":
        _send(app, "create", "POST", "/fhir/Observation", body=body)
    elif kind == "update":
        _send(app, "update", "PUT", f"/fhir/Observation/{oid}", body=body,
              headers={"If-Match": data.draw(st.sampled_from(['W/"1"', "x", "", '"9999999999999999999999"']))})
    elif kind == "conditional-update":
        _send(app, "update", "PUT", f"/fhir/Observation?{data.draw(st.sampled_from(['code=1', '_id=' + oid, 'x=1']))}",
              body=body)
    else:
        _send(app, "create", "POST", "/fhir/Observation", body=body,
              headers={"If-None-Exist": data.draw(st.sampled_from(["code=1", "", "?", "bogus=1", "_id=" + oid]))})


@SETTINGS
@given(data=st.data())
def test_generated_transactions_never_answer_5xx(generated_app, data):
    app = generated_app
    body = data.draw(mutated(_bundle(app.config["PATIENT_ID"], "transaction")))
    _send(app, "transaction", "POST", "/fhir", body=body)


@SETTINGS
@given(data=st.data())
def test_generated_batches_never_answer_5xx(generated_app, data):
    app = generated_app
    body = data.draw(mutated(_bundle(app.config["PATIENT_ID"], "batch")))
    _send(app, "batch", "POST", "/fhir", body=body)


SEARCH_PARAMS = ["_id", "subject", "patient", "code", "date", "value-quantity", "_include", "_revinclude", "_count",
                 "_offset", "_sort", "_summary", "_elements", "_total", "category", "status", "name:contains",
                 "code:in", "birthdate", "identifier", "_lastUpdated", "x", "_has:Observation:subject:code"]
TYPES = ["Patient", "Observation", "Condition", "QuestionnaireResponse", "AuditEvent", "PlanDefinition",
         "ValueSet", "Bogus", "patient"]


@SETTINGS
@given(rtype=st.sampled_from(TYPES), params=st.lists(st.tuples(st.sampled_from(SEARCH_PARAMS), JUNK), max_size=4),
       via=st.sampled_from(["get", "post", "history", "narrow"]))
def test_generated_searches_and_history_never_answer_5xx(generated_app, rtype, params, via):
    from urllib.parse import urlencode

    app = generated_app
    query = urlencode([(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in params])
    if via == "get":
        _send(app, "search", "GET", f"/fhir/{rtype}?{query}")
    elif via == "post":
        _send(app, "search", "POST", f"/fhir/{rtype}/_search",
              data=dict((k, json.dumps(v) if not isinstance(v, str) else v) for k, v in params))
    elif via == "history":
        _send(app, "search", "GET", f"/fhir/{rtype}/_history?{query}")
    else:
        narrow = app.extensions["lbp"].auth.tokens.mint("fuzz-narrow", "system/Observation.rs")
        _send(app, "search", "GET", f"/fhir/{rtype}?{query}", headers={"Authorization": f"Bearer {narrow}"})


@SETTINGS
@given(rtype=st.sampled_from(TYPES), rid=st.one_of(st.text(max_size=70), st.sampled_from(["x", "$apply", "o-1"])),
       vid=st.text(max_size=5), method=st.sampled_from(["GET", "DELETE", "GET", "HEAD"]),
       auth=st.sampled_from(["admin", "none", "garbage"]))
def test_generated_reads_and_deletes_never_answer_5xx(generated_app, rtype, rid, vid, method, auth):
    from urllib.parse import quote

    app = generated_app
    headers = {} if auth == "admin" else ({"Authorization": "Bearer garbage"} if auth == "garbage" else {})
    path = f"/fhir/{rtype}/{quote(rid, safe='')}" + (f"/_history/{quote(vid, safe='')}" if vid else "")
    _send(app, "read", method, path, headers=headers, token=auth == "admin")


OPERATIONS = [("PlanDefinition", "$apply"), ("Questionnaire", "$populate"), ("QuestionnaireResponse", "$extract"),
              ("ValueSet", "$expand"), ("ValueSet", "$validate-code"), ("CodeSystem", "$lookup"),
              ("CodeSystem", "$validate-code"), ("Observation", "$validate"), ("Patient", "$everything")]
PARAM_NAMES = ["url", "subject", "code", "system", "display", "coding", "codeableConcept", "resource", "mode",
               "profile", "data", "useServerData", "today", "filter", "count", "offset", "questionnaire",
               "questionnaire-response", "canonical", "identifier", "valueSet", "encounter", "practitioner"]


@SETTINGS
@given(op=st.sampled_from(OPERATIONS),
       params=st.lists(st.tuples(st.sampled_from(PARAM_NAMES), st.sampled_from(
           ["valueString", "valueUri", "valueCode", "valueBoolean", "valueInteger", "resource", "valueCoding", "part"]),
           JUNK), max_size=4),
       as_get=st.booleans())
def test_generated_operation_parameters_never_answer_5xx(generated_app, op, params, as_get):
    from urllib.parse import urlencode

    app = generated_app
    rtype, name = op
    if as_get:
        query = urlencode([(n, json.dumps(v) if not isinstance(v, str) else v) for n, _, v in params])
        _send(app, "operation", "GET", f"/fhir/{rtype}/{name}?{query}")
    else:
        body = {"resourceType": "Parameters", "parameter": [{"name": n, kind: v} for n, kind, v in params]}
        _send(app, "operation", "POST", f"/fhir/{rtype}/{name}", body=body)


@SETTINGS
@given(data=st.data())
def test_generated_token_requests_never_answer_5xx(generated_app, data):
    from pathlib import Path

    app = generated_app
    form = token_request("fuzz-admin", Path(app.config["KEY_DIR"]) / "fuzz-admin.pem", "http://localhost/auth/token",
                         "system/*.rs")
    key = data.draw(st.sampled_from(sorted(form)))
    form[key] = data.draw(st.one_of(st.text(max_size=40), st.sampled_from(
        ["", "system/Observation.rs?category=x", "a" * 5000, form["client_assertion"] + "x", "none.e30.", "*"])))
    _send(app, "token", "POST", "/auth/token", data=form, token=False)


@SETTINGS
@given(data=st.data(), hook=st.sampled_from(["patient-view", "order-select", "order-sign"]))
def test_generated_hook_calls_never_answer_5xx(generated_app, data, hook):
    app = generated_app
    body = data.draw(mutated(_hook(app.config["PATIENT_ID"], hook)))
    service = {"patient-view": "lbp-patient-view", "order-select": "lbp-order-select",
               "order-sign": "lbp-order-sign"}[hook] + data.draw(st.sampled_from(["", "-se", "-skane", "-x"]))
    path = f"/cds-services/{service}"
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": "http://localhost" + path, "exp": now + 60, "iat": now, "jti": uuid.uuid4().hex}
    token = jwt.encode(claims, CDS_KEY, algorithm="ES384", headers={"kid": "gen-1"})
    _send(app, "cds", "POST", path, raw=json.dumps(body).encode(), headers={"Authorization": f"Bearer {token}"},
          token=False)


@SETTINGS
@given(data=st.data())
def test_generated_feedback_and_discovery_never_answer_5xx(generated_app, data):
    app = generated_app
    feedback = {"feedback": [{"card": str(uuid.uuid4()), "outcome": "overridden",
                              "outcomeTimestamp": "2026-01-01T00:00:00Z",
                              "overrideReason": {"reason": {"code": "x", "system": "y"}, "userComment": "c"}}]}
    body = data.draw(mutated(feedback))
    path = "/cds-services/lbp-order-sign-se/feedback"
    now = int(time.time())
    token = jwt.encode({"iss": ISSUER, "aud": "http://localhost" + path, "exp": now + 60, "iat": now,
                        "jti": uuid.uuid4().hex}, CDS_KEY, algorithm="ES384", headers={"kid": "gen-1"})
    _send(app, "feedback", "POST", path, raw=json.dumps(body).encode(),
          headers={"Authorization": f"Bearer {token}"}, token=False)
    query = data.draw(st.sampled_from(["", "rule=RF1", "since=x", "service=%00", "outcome=1&outcome=2"]))
    _send(app, "feedback", "GET", f"/cds-feedback?{query}")


@SETTINGS
@given(kind=st.sampled_from(["q", "pathway", "session"]), value=st.text(max_size=80),
       query=st.sampled_from(["", "?lang=xx", "?variant=zz", "?next=//evil", "?start=2026-13-40"]))
def test_generated_web_requests_never_answer_5xx(generated_app, kind, value, query):
    from urllib.parse import quote

    app = generated_app
    if kind == "q":
        _send(app, "web", "GET", f"/q/{quote(value, safe='')}{query}", token=False)
        _send(app, "web", "POST", f"/q/{quote(value, safe='')}", data={"answer": value}, token=False)
    elif kind == "pathway":
        _send(app, "web", "GET", f"/patients/{quote(value, safe='') or 'x'}/pathway{query}")
    else:
        _send(app, "web", "GET", f"/patients/{app.config['PATIENT_ID']}/pathway{query}",
              headers={"Cookie": f"lbp_session={quote(value, safe='')}"}, token=False)


def test_generated_request_count_and_no_5xx(generated_app):
    """Runs last in this module: the families above sent at least 2,000 requests, and none answered 5xx."""
    total = sum(COUNTS.values())
    print(f"\ngenerated requests: {total}, responses >= 500: {sum(SERVER_ERRORS.values())}")
    assert total >= 2000
    assert not SERVER_ERRORS
