"""Card feedback (https://cds-hooks.hl7.org/2.0/#feedback): stored once per card, outcome, timestamp.

Counted by rule and indicator.

Stored in the service's own table rather than as FHIR resources: feedback is operational telemetry of
the decision support (which rule was accepted or overridden, and why), not part of any patient's
record, it carries no patient reference, and it must be counted by rule and indicator, which a join
with the issued-card table does directly.
"""
from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import and_, func, insert, or_, select
from sqlalchemy.exc import IntegrityError

from app.cds.tables import cds_card, cds_feedback
from app.errors import FHIRError, Issue

OUTCOMES = ("accepted", "overridden")


def _check(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, Mapping) or not isinstance(body.get("feedback"), list) or not body["feedback"]:
        raise FHIRError("invalid", "feedback must be a non-empty list", "feedback")
    issues: list[Issue] = []
    rows = []
    for i, item in enumerate(body["feedback"]):
        where = f"feedback[{i}]"
        if not isinstance(item, Mapping):
            issues.append(Issue("error", "invalid", "a feedback item must be an object", [where]))
            continue
        card, outcome, stamp = item.get("card"), item.get("outcome"), item.get("outcomeTimestamp")
        if not isinstance(card, str) or not card:
            issues.append(Issue("error", "invalid", "card (the card's uuid) is required", [f"{where}.card"]))
        if outcome not in OUTCOMES:
            issues.append(Issue("error", "invalid", "outcome must be accepted or overridden", [f"{where}.outcome"]))
        if not isinstance(stamp, str):
            issues.append(Issue("error", "invalid", "outcomeTimestamp is required", [f"{where}.outcomeTimestamp"]))
        else:
            try:
                datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            except ValueError:
                issues.append(Issue("error", "invalid", "outcomeTimestamp must be an ISO 8601 instant",
                                    [f"{where}.outcomeTimestamp"]))
        accepted = item.get("acceptedSuggestions") or []
        if not isinstance(accepted, list) or not all(isinstance(s, Mapping) and isinstance(s.get("id"), str)
                                                      for s in accepted):
            issues.append(Issue("error", "invalid", "acceptedSuggestions must be a list of {id}",
                                [f"{where}.acceptedSuggestions"]))
            accepted = []
        if outcome == "accepted" and item.get("overrideReason"):
            issues.append(Issue("error", "invalid", "an accepted card has no overrideReason",
                                [f"{where}.overrideReason"]))
        override = item.get("overrideReason") or {}
        reason = override.get("reason") if isinstance(override, Mapping) else None
        reason = reason if isinstance(reason, Mapping) else {}
        for name in ("code", "system", "display"):  # a Coding's fields are strings
            if reason.get(name) is not None and not isinstance(reason.get(name), str):
                issues.append(Issue("error", "invalid", f"overrideReason.reason.{name} must be a string",
                                    [f"{where}.overrideReason.reason.{name}"]))
        comment = override.get("userComment") if isinstance(override, Mapping) else None
        rows.append({
            "card": card, "outcome": outcome, "outcome_timestamp": stamp,
            "accepted_suggestions": json.dumps([s["id"] for s in accepted]) if accepted else None,
            "override_code": reason.get("code"), "override_system": reason.get("system"),
            "override_display": reason.get("display"),
            "user_comment": comment if isinstance(comment, str) else None,
        })
    if issues:
        raise FHIRError("invalid", issues[0].text, issues=issues)
    return rows


def store_feedback(service_id: str, body: Any, client: str | None) -> dict[str, Any]:
    rows = _check(body)
    try:
        return _store(service_id, rows, client)
    except IntegrityError:  # the same feedback arrived twice at once: the second look finds the first
        return _store(service_id, rows, client)


def _store(service_id: str, rows: list[dict[str, Any]], client: str | None) -> dict[str, Any]:
    store = current_app.extensions["lbp"].store
    now = time.time()
    stored = duplicates = 0
    f = cds_feedback.c
    with store.transaction() as tx:
        for row in rows:
            exists = tx.conn.execute(
                select(f.id).where(f.card == row["card"], f.outcome == row["outcome"],
                                   f.outcome_timestamp == row["outcome_timestamp"])
            ).first()
            if exists is not None:
                duplicates += 1
                continue
            tx.conn.execute(insert(cds_feedback).values(service=service_id, client=client, received=now, **row))
            stored += 1
    return {"stored": stored, "duplicates": duplicates}


def report(args: Mapping[str, str]) -> dict[str, Any]:
    """Feedback joined with what each card said; filters: rule, indicator, outcome, service, variant, since."""
    store = current_app.extensions["lbp"].store
    f, c = cds_feedback.c, cds_card.c
    query = select(f.card, f.outcome, f.outcome_timestamp, f.accepted_suggestions, f.override_code,
                   f.override_system, f.user_comment, f.service, c.rule, c.rules, c.indicator, c.variant).select_from(
        cds_feedback.outerjoin(cds_card, c.uuid == f.card))
    conditions = []
    if args.get("rule"):
        rule = args["rule"]
        conditions.append(or_(c.rule == rule, c.rules.like(f"% {rule}"), c.rules.like(f"% {rule} %")))
    if args.get("indicator"):
        conditions.append(c.indicator == args["indicator"])
    if args.get("outcome"):
        conditions.append(f.outcome == args["outcome"])
    if args.get("service"):
        conditions.append(f.service == args["service"])
    if args.get("variant"):
        conditions.append(c.variant == args["variant"])
    if args.get("override-reason"):
        conditions.append(f.override_code == args["override-reason"])
    if args.get("since"):
        conditions.append(f.outcome_timestamp >= args["since"])
    if conditions:
        query = query.where(and_(*conditions))
    with store.engine.connect() as conn:
        rows = conn.execute(query.order_by(f.outcome_timestamp).limit(1000)).all()
        total = conn.execute(select(func.count()).select_from(cds_feedback)).scalar_one()
    items = []
    summary: dict[str, dict[str, int]] = {}
    for r in rows:
        items.append({
            "card": r.card, "outcome": r.outcome, "outcomeTimestamp": r.outcome_timestamp,
            "acceptedSuggestions": json.loads(r.accepted_suggestions) if r.accepted_suggestions else [],
            "overrideReason": ({"code": r.override_code, "system": r.override_system} if r.override_code else None),
            "userComment": r.user_comment, "service": r.service, "rule": r.rule,
            "rules": r.rules.split() if r.rules else [], "indicator": r.indicator, "variant": r.variant,
        })
        bucket = summary.setdefault(r.rule or "unknown", {"accepted": 0, "overridden": 0})
        bucket[r.outcome] += 1
    return {"count": len(items), "totalStored": total, "byRule": summary, "feedback": items}
