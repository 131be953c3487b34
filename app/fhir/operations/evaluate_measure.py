"""Measure/$evaluate-measure — https://hl7.org/fhir/R4/measure-operation-evaluate-measure.html

Instance level (`Measure/[id]/$evaluate-measure`) answers a MeasureReport. Type level evaluates several
Measures in one pass over the records: `url` (repeatable) names them, or `variant` takes every active
Measure whose jurisdiction contains that pathway variant's; one `url` answers a MeasureReport, otherwise a
Bundle (type collection) of MeasureReports, one per Measure (docs/measures.md).

Parameters: periodStart, periodEnd (required), reportType (subject | subject-list | population; default
subject when `subject` is given, else population), subject (Patient/<id>), practitioner (Practitioner/<id>:
that general practitioner's patients). Extensions of this server: `variant` (only the patients the variant's
jurisdiction holds) and `persist=true` (store the reports; `MeasureReport?measure=…` finds them).
Reading the records needs read scope on the patient data; every evaluation is audited.
"""
from __future__ import annotations

from datetime import date
from typing import Any

from flask import current_app, request

from app import auth as access
from app import records
from app.auth import audit
from app.errors import FHIRError
from app.measures import engine
from app.measures.store_cohort import cohort_records
from app.store.record import RECORD_TYPES, patient_record

from ..http import fhir_response
from . import operation
from .parameters import read_parameters, single
from .reasoning_common import knowledge_base, subject_id

REPORT_TYPES = ("subject", "subject-list", "population")


def _date(params: dict[str, list[Any]], name: str) -> date:
    value = single(params, name, required=True)
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise FHIRError("invalid", f"Parameter '{name}' must be a date (YYYY-MM-DD)",
                        f"Parameters.parameter('{name}')") from None


def _measures_by_url(urls: list[Any]) -> list[dict[str, Any]]:
    kb = knowledge_base()
    out = []
    for i, url in enumerate(urls):
        found = kb.resolve(str(url))
        if found is None or found.get("resourceType") != "Measure":
            raise FHIRError("not-found", f"No Measure with url {url}", f"Parameters.parameter('url')[{i}]")
        out.append(found)
    return out


def _evaluate(measures: list[dict[str, Any]], params: dict[str, list[Any]], *, single_report: bool):
    lbp = current_app.extensions["lbp"]
    kb = knowledge_base()
    period = engine.Period(_date(params, "periodStart"), _date(params, "periodEnd"))
    subject = single(params, "subject")
    report_type = single(params, "reportType") or ("subject" if subject else "population")
    if report_type not in REPORT_TYPES:
        raise FHIRError("invalid", f"reportType must be one of {', '.join(REPORT_TYPES)}",
                        "Parameters.parameter('reportType')")
    if report_type == "subject" and not subject:
        raise FHIRError("required", "reportType subject needs the parameter 'subject'",
                        "Parameters.parameter('subject')")
    practitioner = single(params, "practitioner")
    if practitioner is not None and not str(practitioner).startswith("Practitioner/"):
        raise FHIRError("invalid", "Parameter 'practitioner' must be Practitioner/<id>",
                        "Parameters.parameter('practitioner')")
    variant = single(params, "variant")
    persist = str(single(params, "persist") or "false").lower() == "true"
    for t in ("Patient", *RECORD_TYPES):  # the evaluation reads every patient's record
        access.require(t, "r", "Parameters.parameter('subject')" if subject else "Measure")
    if persist:
        access.require("MeasureReport", "c", "Parameters.parameter('persist')")
    access.note().entities.extend(f"Measure/{m.get('id')}" for m in measures)
    if subject:
        pid = subject_id(subject)
        record = patient_record(lbp.store, pid)
        if not record:
            raise FHIRError("not-found", f"Patient/{pid} is not known", "Parameters.parameter('subject')")
        records: Any = [record]
        audit.add_entities(f"Patient/{pid}")
    else:
        records = cohort_records(lbp.store)
    evaluator, accs = engine.evaluate_measures(
        kb, measures, records, period, variant=variant, practitioner=practitioner,
        keep_members=report_type == "subject-list")
    if not subject:
        seen: set[str] = set()
        for acc in accs:
            for pid in acc.subjects:
                if pid not in seen:
                    seen.add(pid)
                    audit.add_entities(f"Patient/{pid}")
    reports = []
    for acc in accs:
        evaluated = None
        if report_type == "subject":
            evaluated = record_refs(records[0]) if acc.subjects else []
        report = engine.measure_report(acc, evaluator, report_type=report_type,
                                       subject=f"Patient/{subject_id(subject)}" if subject else None,
                                       evaluated=evaluated)
        reports.append(report)
    if persist:
        reports = _store(reports)
    if single_report and len(reports) == 1:
        return fhir_response(reports[0])
    return fhir_response({"resourceType": "Bundle", "type": "collection", "total": len(reports),
                          "entry": [{"resource": r} for r in reports]})


def record_refs(record: list[dict[str, Any]]) -> list[str]:
    return [f"{r['resourceType']}/{r['id']}" for r in record if r.get("id")]


def _store(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Store the reports through the records layer, all of them or none."""
    store = current_app.extensions["lbp"].store
    admitted = [records.admit(report, expected_type="MeasureReport") for report in reports]
    with store.transaction() as tx:
        written = [tx.create(report) for report in admitted]
    records.after_write(written)
    return [stored.resource() for stored in written]


@operation("evaluate-measure", types=frozenset({"Measure"}), type_level=True, instance=True, idempotent=True,
           definition="http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure")
def evaluate_measure(res_type: str, res_id: str | None):
    params = read_parameters(None)
    if res_id is not None:
        stored = current_app.extensions["lbp"].store.read("Measure", res_id)
        if stored is None or stored.deleted:
            raise FHIRError("not-found", f"Measure/{res_id} is not known", "Measure.id")
        return _evaluate([stored.resource()], params, single_report=True)
    urls = params.get("url") or []
    variant = single(params, "variant")
    if urls:
        measures = _measures_by_url(urls)
    elif variant:
        measures = engine.measures_for_variant(knowledge_base(), str(variant))
        if not measures:
            raise FHIRError("not-found", f"No active Measure applies to variant {variant!r}",
                            "Parameters.parameter('variant')")
    else:
        raise FHIRError("required", "Type-level $evaluate-measure needs 'url' (one or more) or 'variant'",
                        "Parameters.parameter('url')")
    access.note().query = request.query_string.decode(errors="replace") or None
    return _evaluate(measures, params, single_report=len(urls) == 1)
