"""$evaluate-measure over HTTP for every shipped Measure, auth and audit, stored reports, the report page and CLI."""
from __future__ import annotations

import base64
import json

import pytest

from app import create_app
from app.cli import main as cli
from app.measures.demo import demo_cohort, transaction_bundles
from tests.measures.conftest import ROOT

MEASURES = sorted(p.stem.removeprefix("Measure-") for p in (ROOT / "plandefinitions").glob("Measure-*.json"))
PERIOD = "periodStart=2026-01-01&periodEnd=2026-06-30"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from app.auth.local import register_client

    tmp = tmp_path_factory.mktemp("measures")
    clients = tmp / "clients.json"
    register_client(clients, "test-admin", "system/*.cruds", tmp / "keys")
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp / 'm.db'}", "TESTING": True, "CLIENTS_FILE": str(clients)})
    tokens = app.extensions["lbp"].auth.tokens
    admin = tokens.mint("test-admin", "system/*.cruds")
    client = app.test_client()
    for bundle in transaction_bundles(demo_cohort("skane", 40, 3)):
        r = client.post("/fhir", json=bundle, headers={"Authorization": f"Bearer {admin}"})
        assert r.status_code == 200, r.get_data(as_text=True)[:500]
    yield app, client, tokens, admin, tmp
    app.extensions["lbp"].store.dispose()


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("mid", MEASURES)
def test_every_shipped_measure_answers_evaluate_measure(server, mid):
    _, client, _, admin, _ = server
    r = client.get(f"/fhir/Measure/{mid}/$evaluate-measure?{PERIOD}", headers=bearer(admin))
    assert r.status_code == 200, r.get_json()
    report = r.get_json()
    assert report["resourceType"] == "MeasureReport" and report["type"] == "summary"
    assert report["measure"].startswith(f"https://lbp-pathway.org/fhir/Measure/{mid}")
    assert report["period"] == {"start": "2026-01-01", "end": "2026-06-30"}
    group = report["group"][0]
    assert group["population"][0]["code"]["coding"][0]["code"] == "initial-population"
    assert {s["code"][0]["text"] for s in group["stratifier"]} == {"variant", "organization", "sex", "age-band"}


def test_evaluation_needs_a_token_and_patient_read_scope(server):
    _, client, tokens, _, _ = server
    url = f"/fhir/Measure/q2-risk-screening-recorded/$evaluate-measure?{PERIOD}"
    r = client.get(url)
    assert r.status_code == 401 and r.get_json()["resourceType"] == "OperationOutcome"
    r = client.get(url, headers=bearer(tokens.mint("test-admin", "system/Measure.rs")))
    assert r.status_code == 403


def test_subject_report_is_audited_with_the_patient(server):
    _, client, _, admin, _ = server
    r = client.post("/fhir/Measure/q2-risk-screening-recorded/$evaluate-measure", headers=bearer(admin), json={
        "resourceType": "Parameters", "parameter": [
            {"name": "periodStart", "valueDate": "2026-01-01"}, {"name": "periodEnd", "valueDate": "2026-12-31"},
            {"name": "subject", "valueString": "Patient/demo-skane-00001"}]})
    assert r.status_code == 200, r.get_json()
    report = r.get_json()
    assert report["type"] == "individual" and report["subject"] == {"reference": "Patient/demo-skane-00001"}
    assert {"reference": "Patient/demo-skane-00001"} in report["evaluatedResource"]
    events = client.get("/fhir/AuditEvent?entity=Patient/demo-skane-00001", headers=bearer(admin)).get_json()
    operations = [e["resource"] for e in events.get("entry", [])
                  if any(x.get("what", {}).get("reference") == "Measure/q2-risk-screening-recorded"
                         for x in e["resource"].get("entity", []))]
    assert operations and operations[0]["outcome"] == "0"


def test_subject_list_names_the_patients_of_each_population(server):
    _, client, _, admin, _ = server
    r = client.get(f"/fhir/Measure/q2-risk-screening-recorded/$evaluate-measure?{PERIOD}&reportType=subject-list",
                   headers=bearer(admin))
    report = r.get_json()
    lists = {c["id"]: c for c in report["contained"] if c["resourceType"] == "List"}
    for population in report["group"][0]["population"]:
        listed = lists[population["subjectResults"]["reference"][1:]]
        assert len(listed["entry"]) == population["count"]
        assert all(e["item"]["reference"].startswith("Patient/demo-skane-") for e in listed["entry"])


def test_all_measures_of_a_variant_at_once_and_stored_reports_are_searchable(server):
    _, client, _, admin, _ = server
    r = client.get(f"/fhir/Measure/$evaluate-measure?{PERIOD}&variant=skane&persist=true", headers=bearer(admin))
    assert r.status_code == 200, r.get_json()
    bundle = r.get_json()
    # the 21 of Sweden and Skåne, SE-1 and Q9 influence on treatment
    assert bundle["type"] == "collection" and bundle["total"] == 23
    assert all(e["resource"]["id"] for e in bundle["entry"])
    found = client.get("/fhir/MeasureReport?measure=https://lbp-pathway.org/fhir/Measure/q6-sick-leave-m544-m545",
                       headers=bearer(admin)).get_json()
    assert found["total"] >= 1
    one = client.get(f"/fhir/Measure/$evaluate-measure?{PERIOD}&url=https://lbp-pathway.org/fhir/Measure/"
                     "q4-basic-treatment-gb021", headers=bearer(admin)).get_json()
    assert one["resourceType"] == "MeasureReport"


@pytest.mark.parametrize(("query", "expression"), [
    ("periodStart=2026-13-01&periodEnd=2026-12-31", "Parameters.parameter('periodStart')"),
    ("periodStart=2026-01-01", "Parameters.parameter('periodEnd')"),
    ("periodStart=2026-06-01&periodEnd=2026-01-01", "Parameters.parameter('periodEnd')"),
    (f"{PERIOD}&reportType=subject", "Parameters.parameter('subject')"),
    (f"{PERIOD}&reportType=everything", "Parameters.parameter('reportType')"),
    (f"{PERIOD}&variant=atlantis", "Parameters.parameter('variant')"),
    (f"{PERIOD}&subject=Patient/nobody", "Parameters.parameter('subject')"),
])
def test_bad_parameters_get_an_outcome_with_expression(server, query, expression):
    _, client, _, admin, _ = server
    r = client.get(f"/fhir/Measure/q2-risk-screening-recorded/$evaluate-measure?{query}", headers=bearer(admin))
    assert 400 <= r.status_code < 500
    assert r.get_json()["issue"][0]["expression"] == [expression]


def test_report_page_refuses_without_a_token_and_shows_the_indicators_with_one(server):
    _, client, tokens, admin, _ = server
    assert client.get("/reports/skane?period=2026-01-01/2026-12-31").status_code == 401
    assert client.get("/reports/skane", headers=bearer(tokens.mint("test-admin", "system/Measure.rs"))
                      ).status_code == 403
    r = client.get("/reports/skane?period=2026-01-01/2026-12-31", headers=bearer(admin))
    assert r.status_code == 200 and r.mimetype == "text/html"
    page = r.get_data(as_text=True)
    assert "Improved health and function" in page and "≥ 80 %" in page and "<svg" in page
    assert "Q3" in page and "national patient portal" in page  # not computable, with the reason
    assert r.headers["Cache-Control"] == "no-store"
    swedish = client.get("/reports/skane?period=2026-01-01/2026-12-31&lang=sv", headers=bearer(admin))
    assert "Förbättrad hälsa och funktion" in swedish.get_data(as_text=True)
    assert client.get("/reports/atlantis", headers=bearer(admin)).status_code == 404
    assert client.get("/reports/skane?period=2026-12-31", headers=bearer(admin)).status_code == 400
    events = client.get("/fhir/AuditEvent?entity=Patient/demo-skane-00001", headers=bearer(admin)).get_json()
    queries = [base64.b64decode(x["query"]).decode() for e in events.get("entry", [])
               for x in e["resource"].get("entity", []) if "query" in x]
    assert "/reports/skane?period=2026-01-01/2026-12-31" in queries


def test_report_cli_prints_the_table_and_writes_the_page(server, monkeypatch, capsys):
    app, _, _, _, tmp = server
    monkeypatch.setenv("DATABASE_URL", app.config["DATABASE_URL"])
    monkeypatch.setenv("LBP_CLIENTS_FILE", str(tmp / "clients.json"))
    out = tmp / "report.html"
    assert cli(["report", "--variant", "skane", "--period", "2026-01-01/2026-12-31", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Indicators, variant skane, 2026-01-01 – 2026-12-31" in text
    assert "Q9 Improved health and function" in text and "ID0078" in text
    assert out.read_text(encoding="utf-8").count("<svg") >= 5
    assert cli(["report", "--variant", "skane", "--period", "2026-01-01"]) == 2
    assert cli(["report", "--variant", "midtjylland", "--period", "2026-01-01/2026-12-31", "-o", str(out)]) == 0
    danish = capsys.readouterr().out
    assert "No Measure applies to this variant" not in danish
    assert "T5 RD1 Ikke-akutte henvisninger til hospital" in danish or "Non-urgent hospital referrals" in danish


def test_demo_cli_writes_a_loadable_bundle(tmp_path, capsys):
    out = tmp_path / "demo.json"
    assert cli(["demo", "--variant", "midtjylland", "--patients", "5", "--seed", "2", "-o", str(out)]) == 0
    bundle = json.loads(out.read_text(encoding="utf-8"))
    assert bundle["type"] == "transaction"
    assert all(e["request"]["method"] == "PUT" for e in bundle["entry"])
    assert {e["resource"]["resourceType"] for e in bundle["entry"]} >= {"Patient", "Condition", "Observation"}
