"""The typed result of `pathway_status`: one dataclass per part, each with `to_dict()` giving its JSON shape.

The whole result (and each part) can also be read as a mapping (`status["flags"]`,
`status.get("step")`), which returns the JSON shape, so callers written against the dict keep working.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class JSONShape:
    """Mapping-style read access to a result part through its `to_dict()`."""

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.to_dict()


@dataclass(frozen=True)
class PathwayRef(JSONShape):
    url: str | None
    version: str | None
    title: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "version": self.version, "title": self.title}


@dataclass(frozen=True)
class CurrentStep(JSONShape):
    """The step of the most urgent applicable recommendation, and that recommendation's action id."""

    system: str
    code: str
    display: str | None
    because: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"system": self.system, "code": self.code, "display": self.display, "because": self.because}


@dataclass(frozen=True)
class StepAction(JSONShape):
    id: str | None
    title: str | None
    priority: str | None
    rules: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "priority": self.priority, "rules": list(self.rules)}


@dataclass(frozen=True)
class StepGroup(JSONShape):
    """One pathway step with the applicable actions coded with it."""

    code: str
    display: str | None
    actions: list[StepAction]

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "display": self.display, "actions": [a.to_dict() for a in self.actions]}


@dataclass(frozen=True)
class Flag(JSONShape):
    """A flag found for the patient: the rule, its type, and the record entries it rests on."""

    rule: str
    type: str
    display: str | None
    feature: str | None
    features: list[str]
    evidence: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "type": self.type,
            "display": self.display,
            "feature": self.feature,
            "features": list(self.features),
            "evidence": list(self.evidence),
        }


@dataclass(frozen=True)
class Screening(JSONShape):
    risk: dict[str, Any]  # Coding
    feature: str
    evidence: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"risk": dict(self.risk), "feature": self.feature, "evidence": list(self.evidence)}


@dataclass(frozen=True)
class PainRatings(JSONShape):
    """NRS ratings: the item's code, the first and the latest rating ({value, date, reference}), and how many."""

    code: dict[str, Any] | None
    first: dict[str, Any] | None
    latest: dict[str, Any] | None
    count: int

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "first": self.first, "latest": self.latest, "count": self.count}


@dataclass(frozen=True)
class Deadline(JSONShape):
    action: str | None
    title: str | None
    rules: list[str]
    duration: dict[str, Any]
    from_date: str  # ISO date the deadline counts from
    from_source: str  # what that date is: a CarePlan, a QuestionnaireResponse, or "today"
    due: str
    overdue: bool
    met_on: str | None = None  # ISO date of the record event that met the deadline, if one did

    def to_dict(self) -> dict[str, Any]:
        out = {
            "action": self.action,
            "title": self.title,
            "rules": list(self.rules),
            "duration": self.duration,
            "from": self.from_date,
            "fromSource": self.from_source,
            "due": self.due,
            "overdue": self.overdue,
        }
        if self.met_on:
            out["metOn"] = self.met_on
        return out


@dataclass
class MissingFact(JSONShape):
    """A case feature an undecided condition needs and the record does not give, and what it blocks."""

    feature: str
    description: str | None
    blocks: list[dict[str, Any]] = field(default_factory=list)  # {action, rules}

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "description": self.description, "blocks": list(self.blocks)}


@dataclass
class Collect(JSONShape):
    """A questionnaire an applicable action offers to collect, and the actions that offer it."""

    questionnaire: str
    title: str | None
    because: list[str | None] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"questionnaire": self.questionnaire, "title": self.title, "because": list(self.because)}


@dataclass(frozen=True)
class NotEvaluated(JSONShape):
    """An action whose conditions could not be evaluated because a case feature failed (docs/fail-safe.md)."""

    action: str | None
    plan: str
    rules: list[str]
    features: list[str]  # the case features that failed behind it
    problem: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "plan": self.plan,
            "rules": list(self.rules),
            "features": list(self.features),
            "problem": self.problem,
        }


@dataclass(frozen=True)
class PathwayStatus(JSONShape):
    """Where a patient is on a pathway (see app.reasoning.status for how each part is found)."""

    pathway: PathwayRef
    date: str
    subject: dict[str, Any] | None
    step: CurrentStep | None
    steps: list[StepGroup]
    flags: list[Flag]
    screening: Screening | None
    nrs: PainRatings | None
    deadlines: list[Deadline]
    missing: list[MissingFact]
    collect: list[Collect]
    issues: list[dict[str, Any]]  # OperationOutcome.issue
    not_evaluated: list[NotEvaluated] = field(default_factory=list)
    failed_features: list[dict[str, str]] = field(default_factory=list)  # FeatureFailure.to_dict()
    # the case features the status was computed from, for callers that show them (not part of the JSON shape)
    features: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pathway": self.pathway.to_dict(),
            "date": self.date,
            "subject": self.subject,
            "step": self.step.to_dict() if self.step else None,
            "steps": [s.to_dict() for s in self.steps],
            "flags": [f.to_dict() for f in self.flags],
            "screening": self.screening.to_dict() if self.screening else None,
            "nrs": self.nrs.to_dict() if self.nrs else None,
            "deadlines": [d.to_dict() for d in self.deadlines],
            "missing": [m.to_dict() for m in self.missing],
            "collect": [c.to_dict() for c in self.collect],
            "issues": list(self.issues),
            "notEvaluated": [n.to_dict() for n in self.not_evaluated],
            "failedFeatures": list(self.failed_features),
        }
