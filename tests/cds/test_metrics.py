"""/metrics in Prometheus format: route patterns (never ids), hook calls, cards by rule, fail-safe counters, epoch;
JSON logs when configured."""
from __future__ import annotations

import json
import logging

from prometheus_client.parser import text_string_to_metric_families

from tests.cds.conftest import hook_request


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_requests_by_route_pattern_without_ids(cds_app, cds):
    client = cds_app.test_client()
    client.get("/fhir/Patient/some-patient-id-123")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.mimetype == "text/plain"
    text = r.get_data(as_text=True)
    samples = _samples(text)
    assert any(name == "lbp_http_requests_total" and dict(labels).get("route") == "/fhir/<rtype>/<rid>"
               for name, labels in samples)
    assert "some-patient-id-123" not in text
    assert any(name == "lbp_http_request_duration_seconds_bucket" for name, _ in samples)
    assert any(name == "lbp_knowledge_epoch" for name, _ in samples)


def test_metrics_count_hook_calls_and_cards_by_rule(cds_app, cds):
    r = cds.post("/cds-services/lbp-patient-view-se", hook_request("patient-view", "cancer"))
    assert r.status_code == 200
    samples = _samples(cds_app.test_client().get("/metrics").get_data(as_text=True))
    calls = [v for (name, labels), v in samples.items() if name == "lbp_cds_hook_calls_total"
             and dict(labels) == {"service": "lbp-patient-view-se", "status": "200"}]
    assert calls and calls[0] >= 1
    assert any(name == "lbp_cds_cards_total" and dict(labels).get("rule") == "RF4" for name, labels in samples)
    text = cds_app.test_client().get("/metrics").get_data(as_text=True)
    assert "cancer" not in text  # the test patient's id never appears


def test_metrics_carry_the_fail_safe_counters(cds_app):
    from app.reasoning.failures import FAILURES

    FAILURES.feature_failed("Library/lbp-case-features", "redFlagRf4")
    try:
        samples = _samples(cds_app.test_client().get("/metrics").get_data(as_text=True))
    finally:
        FAILURES.reset()
    assert samples[("lbp_case_feature_failures_total", (("feature", "redFlagRf4"),
                                                          ("library", "Library/lbp-case-features")))] >= 1


def test_json_logs_when_configured():
    from app.metrics import JSONFormatter

    record = logging.LogRecord("lbp", logging.INFO, __file__, 1, "%s %s", ("GET", "/fhir/<rtype>"), None)
    record.route, record.status, record.ms = "/fhir/<rtype>", 200, 1.5
    entry = json.loads(JSONFormatter().format(record))
    assert entry["message"] == "GET /fhir/<rtype>" and entry["route"] == "/fhir/<rtype>" and entry["status"] == 200
