"""One CDS service call: check the request, pick the variant, gather the record, $apply the pathway, make cards.

https://cds-hooks.hl7.org/2.0/#calling-a-cds-service — hooks patient-view, order-select, order-sign
(https://cds-hooks.hl7.org/hooks/). order-select advises on `selections` with every draft order in view
(`%draftOrders`); order-sign advises on every draft order (re-signing: any status).
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Mapping
from datetime import date
from typing import Any

from flask import current_app
from sqlalchemy import insert

from app.cds.cards import EVALUATION_EXTENSION, RULES, CardContext, cards_from, response_evaluation
from app.cds.prefetch import resolve
from app.cds.registry import Registry, Service
from app.cds.tables import cds_card
from app.errors import FHIRError, Issue
from app.translation import translated

log = logging.getLogger("lbp.cds")

ORDER_TYPES = ("ServiceRequest", "MedicationRequest")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def bad(text: str, expression: str) -> FHIRError:
    return FHIRError("invalid", text, expression)


def check_request(body: Any, service: Service) -> None:
    """400 with an OperationOutcome for anything the spec requires that is missing or malformed."""
    if not isinstance(body, Mapping):
        raise bad("the request body must be a JSON object", "$this")
    issues: list[Issue] = []

    def problem(text: str, where: str) -> None:
        issues.append(Issue("error", "invalid", text, [where]))

    hook = body.get("hook")
    if not isinstance(hook, str) or not hook:
        problem("hook is required", "hook")
    elif hook != service.hook:
        problem(f"this service answers {service.hook}, not {hook}", "hook")
    if not isinstance(body.get("hookInstance"), str) or not body.get("hookInstance"):
        problem("hookInstance is required", "hookInstance")
    context = body.get("context")
    if not isinstance(context, Mapping):
        problem("context is required", "context")
        context = {}
    if "fhirAuthorization" in body and body["fhirAuthorization"] is not None:
        auth = body["fhirAuthorization"]
        if not body.get("fhirServer"):
            problem("fhirAuthorization was sent without fhirServer", "fhirAuthorization")
        if not isinstance(auth, Mapping) or not isinstance(auth.get("access_token"), str):
            problem("fhirAuthorization.access_token is required", "fhirAuthorization.access_token")
        elif str(auth.get("token_type", "Bearer")).lower() != "bearer":
            problem("fhirAuthorization.token_type must be Bearer", "fhirAuthorization.token_type")
    server = body.get("fhirServer")
    if server is not None and (not isinstance(server, str) or not re.match(r"^https?://", server)):
        problem("fhirServer must be an absolute http(s) URL", "fhirServer")
    prefetch = body.get("prefetch")
    if prefetch is not None and not isinstance(prefetch, Mapping):
        problem("prefetch must be an object", "prefetch")
    patient_id = context.get("patientId")
    if not isinstance(patient_id, str) or not _ID.match(patient_id):
        problem("context.patientId is required (a FHIR id)", "context.patientId")
    if not isinstance(context.get("userId"), str) or not context.get("userId"):
        problem("context.userId is required", "context.userId")
    if service.hook in ("order-select", "order-sign"):
        drafts = context.get("draftOrders")
        refs = _check_draft_orders(drafts, problem)
        if service.hook == "order-select":
            selections = context.get("selections")
            if not isinstance(selections, list) or not all(isinstance(s, str) for s in selections):
                problem("context.selections must be a list of references to draftOrders", "context.selections")
            else:
                for i, s in enumerate(selections):
                    if refs is not None and s not in refs:
                        problem(f"selection {s} is not in draftOrders", f"context.selections[{i}]")
    if issues:
        raise FHIRError("invalid", issues[0].text, issues=issues)


def _check_draft_orders(drafts: Any, problem) -> set[str] | None:
    if not isinstance(drafts, Mapping) or drafts.get("resourceType") != "Bundle":
        problem("context.draftOrders must be a Bundle", "context.draftOrders")
        return None
    entries = drafts.get("entry", [])
    if not isinstance(entries, list):
        problem("context.draftOrders.entry must be a list", "context.draftOrders.entry")
        return None
    refs: set[str] = set()
    for i, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, Mapping) else None
        where = f"context.draftOrders.entry[{i}].resource"
        if not isinstance(resource, Mapping) or not isinstance(resource.get("resourceType"), str):
            problem("each draft order entry needs a resource with a resourceType", where)
            continue
        if not isinstance(resource.get("id"), str) or not _ID.match(resource["id"]):
            problem("each draft order needs an id (suggestions name it in resourceId)", f"{where}.id")
            continue
        if resource["resourceType"] == "ServiceRequest" and not isinstance(resource.get("code"), Mapping):
            problem("a ServiceRequest draft order needs code", f"{where}.code")
        if resource["resourceType"] == "MedicationRequest" and not (
            isinstance(resource.get("medicationCodeableConcept"), Mapping) or "medicationReference" in resource
        ):
            problem("a MedicationRequest draft order needs medication[x]", f"{where}.medication")
        refs.add(f"{resource['resourceType']}/{resource['id']}")
    return refs


def choose_variant(service: Service, caller: Any, registry: Registry) -> str:
    if service.variant:
        return service.variant
    config = current_app.config
    if caller is not None:
        issuer = current_app.extensions["lbp_cds"].issuers.get(caller.iss)
        if issuer is not None:
            if caller.tenant and caller.tenant in issuer.tenants:
                return issuer.tenants[caller.tenant]
            if issuer.variant:
                return issuer.variant
        mapped = (config.get("CDS_CLIENT_VARIANTS") or {})
        key = f"{caller.iss}|{caller.tenant}" if caller.tenant else caller.iss
        if key in mapped:
            return mapped[key]
        if caller.iss in mapped:
            return mapped[caller.iss]
    variant = config.get("DEFAULT_VARIANT") or "se"
    return variant if variant in registry.variants else "se"


def run(service: Service, body: Mapping[str, Any], caller: Any, links: Any) -> dict[str, Any]:
    from app.reasoning.apply import apply_plan_definition

    lbp = current_app.extensions["lbp"]
    cds = current_app.extensions["lbp_cds"]
    registry: Registry = cds.registry
    kb = lbp.knowledge.base
    variant_code = choose_variant(service, caller, registry)
    variant = registry.variants[variant_code]
    context = body["context"]
    patient_id = context["patientId"]
    templates = service.prefetch
    if service.variant is None:
        own = registry.services(kb, variant_code).get(f"{service.id}-{variant_code}")
        templates = own.prefetch if own is not None else templates
    timeout = (float(current_app.config.get("CDS_FETCH_CONNECT_TIMEOUT", 1.0)),
               float(current_app.config.get("CDS_FETCH_TIMEOUT", 3.0)))
    record = resolve(templates, body, timeout, batch=bool(current_app.config.get("CDS_FETCH_BATCH", True)),
                     deadline=float(current_app.config["CDS_PREFETCH_DEADLINE"]))
    patient = record.get("patient")
    if isinstance(patient, Mapping) and patient.get("resourceType") == "Patient":
        if patient.get("id") != patient_id:
            raise FHIRError("invalid", "prefetch patient is not context.patientId", "prefetch.patient")
        subject: Any = patient
    else:
        subject = f"Patient/{patient_id}"
    drafts = [e["resource"] for e in (context.get("draftOrders") or {}).get("entry", []) or []
              if e.get("resource", {}).get("resourceType") in ORDER_TYPES]
    if service.hook == "order-select":
        selections: list[Any] = list(context.get("selections") or [])
    elif service.hook == "order-sign":
        selections = list(drafts)
    else:
        selections = []
    today = current_app.config.get("CDS_TODAY")  # tests pin the clock
    if isinstance(today, str):
        today = date.fromisoformat(today)
    if kb is None or kb.resolve(variant.pathway, "PlanDefinition") is None:
        raise FHIRError("not-found", f"the pathway of variant {variant_code} is not loaded", "variant", status=404)
    started = time.perf_counter()
    care_plan, issues = apply_plan_definition(
        kb, variant.pathway, subject=subject, record=list(record.values()), trigger=service.hook,
        draft_orders=drafts, selections=selections, today=today,
        # fault injection for tests: case features forced to fail (docs/fail-safe.md); empty in service
        fail_features=tuple(current_app.config.get("REASONING_FAIL_FEATURES") or ()),
        practitioner=context.get("userId") if str(context.get("userId", "")).startswith("Practitioner/") else None,
    )
    errors = [i for i in issues if i.severity in ("error", "fatal")]
    if errors:
        # counts only: issue texts name rules and expressions, and may quote the patient's values
        log.warning("service %s: %d rule part(s) with errors", service.id, len(errors))
    contained = {f"#{r['id']}": r for r in care_plan.get("contained", []) if r.get("id")}
    group: dict[str, Any] = next(
        (r for r in care_plan.get("contained", []) if r.get("resourceType") == "RequestGroup"), {})
    ctx = CardContext(
        language=variant.language,
        source_label=variant.label,
        patient_id=patient_id,
        rule_display=cds.rule_displays(kb, variant.language),
        rule_link=links.rule,
        questionnaire_link=lambda canonical: links.questionnaire(patient_id, canonical, variant.language, variant_code),
        pathway_link=links.pathway(patient_id, variant_code),
        smart_link=links.smart(patient_id),
        contained=contained,
        plan_language=cds.plan_languages(kb, variant.pathway),
        missing_fields=lambda canonical: _missing_fields(kb, canonical, record, subject, today, variant.language),
        questionnaire_title=lambda canonical: _questionnaire_title(kb, canonical, variant.language),
        override_display=lambda system, code: _concept_display(kb, system, code, variant.language),
        clinician_form=lambda canonical: _clinician_form(kb, canonical),
        clinician_link=lambda canonical: links.clinician_form(patient_id, canonical, variant_code),
    )
    cards, _ = cards_from(group, ctx)
    evaluation = response_evaluation(cards)
    if evaluation is not None:
        # artifact ids, rule ids and feature names only, never patient data
        log.warning("service %s: evaluation incomplete: rules %s; failed features %s of %s", service.id,
                    ",".join(evaluation["failedRules"]), ",".join(evaluation["failedFeatures"]), variant.pathway)
    log.debug("service %s: %d cards in %.1f ms", service.id, len(cards), (time.perf_counter() - started) * 1000)
    if cards and current_app.config.get("CDS_RECORD_CARDS", True):
        remember_cards(service, variant_code, cards)
    if evaluation is not None:
        return {"cards": cards, "extension": {EVALUATION_EXTENSION: evaluation}}
    return {"cards": cards}


_PREFILLS: dict[str, tuple[Any, bool]] = {}


def _questionnaire_title(kb: Any, canonical: str, language: str) -> str | None:
    """A questionnaire's title in the card's language (link labels name the form, not its id)."""
    questionnaire = kb.resolve(canonical.split("|", 1)[0], "Questionnaire")
    if not questionnaire or not questionnaire.get("title"):
        return None
    return translated(questionnaire, "title", language, questionnaire.get("language"))


FILLED_BY = "https://lbp-pathway.org/fhir/StructureDefinition/filled-by"


def _clinician_form(kb: Any, canonical: str) -> bool:
    """A form the clinician fills (the Questionnaire says filled-by clinician): linked to the clinician context."""
    questionnaire = kb.resolve(canonical.split("|", 1)[0], "Questionnaire") or {}
    return any(e.get("url") == FILLED_BY and e.get("valueCode") == "clinician"
               for e in questionnaire.get("extension", []) or [])


def _concept_display(kb: Any, system: str | None, code: str | None, language: str) -> str | None:
    """A CodeSystem concept's display in `language` (its designation), e.g. an override reason."""
    cs = kb.resolve(system, "CodeSystem") if system else None
    for concept in (cs or {}).get("concept", []) or []:
        if concept.get("code") == code:
            for d in concept.get("designation", []) or []:
                if d.get("language") == language and d.get("value"):
                    return str(d["value"])
            return str(concept.get("display")) if concept.get("display") else None
    return None


def _missing_fields(kb: Any, canonical: str, record: dict, subject: Any, today: Any, language: str) -> list[str] | None:
    """For a questionnaire that pre-fills from the record (SDC initialExpression), what it cannot fill."""
    from app.reasoning.populate import populate

    from .cards import missing_items

    questionnaire = kb.resolve(canonical, "Questionnaire")
    if questionnaire is None:
        return None
    # whether it pre-fills depends on the knowledge only: decided once per Questionnaire object (the object is
    # kept and compared, so the id of one from replaced knowledge never answers for another)
    hit = _PREFILLS.get(canonical)
    if hit is None or hit[0] is not questionnaire:
        hit = (questionnaire, "initialExpression" in json.dumps(questionnaire))
        _PREFILLS[canonical] = hit
    if not hit[1]:
        return None
    try:
        response = populate(questionnaire, list(record.values()), subject=subject, today=today,
                            terminology=kb.terminology)
    except FHIRError:
        return None
    return missing_items(questionnaire, response, language)


def remember_cards(service: Service, variant: str, cards: list[dict[str, Any]]) -> None:
    """Which rule and indicator each card uuid stood for, so feedback can be counted per rule.

    Queued and written in batches by a background thread (one write per ~0.2 s instead of one per
    call); feedback flushes the queue of its process first.
    """
    now = time.time()
    rows = []
    for card in cards:
        topic = (card.get("source") or {}).get("topic") or {}
        more = [c["code"] for c in (card.get("extension") or {}).get("org.lbp-pathway.rules", [])
                if c.get("system") == RULES]
        rows.append({"uuid": card["uuid"], "service": service.id, "variant": variant, "rule": topic.get("code"),
                     "rules": " ".join([topic.get("code", ""), *more]).strip() or None,
                     "indicator": card["indicator"], "issued": now})
    current_app.extensions["lbp_cds"].card_log.add(rows)


class CardLog:
    """The issued-card rows of this process, written in batches."""

    FLUSH_SECONDS = 0.2
    IDLE_SECONDS = 30.0

    def __init__(self, store: Any):
        self.store = store
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            self._rows.extend(rows)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True, name="cds-card-log")
                self._thread.start()

    def _run(self) -> None:
        idle_since = time.monotonic()
        while True:
            self._wake.wait(self.FLUSH_SECONDS)
            self._wake.clear()
            if self.flush():
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > self.IDLE_SECONDS:
                # a writer lives on through short pauses between calls: starting a thread per call costs the
                # call more than the batch it writes
                with self._lock:
                    if not self._rows:
                        self._thread = None
                        return

    def flush(self) -> bool:
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return False
        try:
            with self.store.transaction() as tx:
                tx.conn.execute(insert(cds_card), rows)
        except Exception as exc:  # feedback statistics must never cost the clinician the cards
            log.error("%d issued cards not recorded: %s", len(rows), type(exc).__name__)
        return True


def endpoint_url(path: str) -> list[str]:
    """The URLs a client may have called (the JWT's `aud`): under the configured public bases, never the Host."""
    from app.auth.public import public_bases

    return [base + path for base in public_bases(cds=True)]
