"""Measure evaluation: population criteria (FHIRPath over the case features) per patient, then MeasureReports.

One pass per patient evaluates the case features every selected Measure reads (once), then each Measure's
population criteria. A criterion that cannot be decided (empty, or reading a feature that failed) is
*unknown*: the patient leaves that population and the ones below it, and the report counts them in the
population's `measure-population-unknown` extension, so missing data never passes for a negative finding.
For a proportion, a patient in the denominator whose numerator is unknown is left out of the score's
denominator as well (docs/measures.md).

The measurement period selects patients by each Measure's index date (extension `measure-index-date`: the
name of a date feature); the record is read as it stood at the period's end (resources dated later are
left out) and the features are evaluated with %today = the period's end (or the evaluation day, if earlier).
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from app.errors import FHIRError, Issue
from app.reasoning import (
    CompiledExpression,
    FeatureValues,
    compile_expression,
    evaluate_features,
    patient_context,
    to_json,
)
from app.reasoning.features import needed_features

BASE = "https://lbp-pathway.org/fhir"
LIBRARY = f"{BASE}/Library/lbp-case-features"
INDEX_DATE = f"{BASE}/StructureDefinition/measure-index-date"
TARGET = f"{BASE}/StructureDefinition/measure-target"
UNKNOWN = f"{BASE}/StructureDefinition/measure-population-unknown"
REPORT_VARIANT = f"{BASE}/StructureDefinition/measure-report-variant"
REPORT_AS_OF = f"{BASE}/StructureDefinition/measure-report-as-of"
REPORT_ISSUES = f"{BASE}/StructureDefinition/measure-report-outcome"
AGGREGATE = "http://hl7.org/fhir/us/cqfmeasures/StructureDefinition/cqfm-aggregateMethod"
POPULATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-population"
PATHWAY_PREFIX = f"{BASE}/PlanDefinition/lbp-pathway-"
RESIDENCE_FEATURE = "residenceAtNewVisit"
UNKNOWN_STRATUM = "unknown"

# Evaluation order: each population is a subset of the one it follows (FHIR Measure population semantics).
PROPORTION = ("initial-population", "denominator", "denominator-exclusion", "denominator-exception", "numerator",
              "numerator-exclusion")
CONTINUOUS = ("initial-population", "measure-population", "measure-population-exclusion")
COHORT = ("initial-population",)
SCORINGS = {"proportion": PROPORTION, "continuous-variable": CONTINUOUS, "cohort": COHORT, "ratio": PROPORTION}
# Country names an Address may carry instead of the ISO 3166 code of a pathway's jurisdiction.
COUNTRY_NAMES = {"se": {"se", "swe", "sweden", "sverige"}, "dk": {"dk", "dnk", "denmark", "danmark"}}


@dataclass(frozen=True)
class Period:
    start: date
    end: date

    def contains(self, day: str | None) -> bool:
        return bool(day) and self.start.isoformat() <= day[:10] <= self.end.isoformat()  # type: ignore[index]

    def as_fhir(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


@dataclass
class CompiledGroup:
    id: str
    description: str
    code: dict[str, Any] | None
    populations: dict[str, CompiledExpression]
    observation: CompiledExpression | None
    stratifiers: list[tuple[str, dict[str, Any], CompiledExpression | None]]
    target: float | None


@dataclass
class CompiledMeasure:
    resource: dict[str, Any]
    id: str
    url: str
    title: str
    scoring: str
    index_feature: str
    aggregate: str
    groups: list[CompiledGroup]
    jurisdiction: str | None  # ISO 3166 code (SE) or subdivision (SE-M)
    rules: list[str]

    @property
    def features(self) -> set[str]:
        names = {self.index_feature, RESIDENCE_FEATURE}
        for g in self.groups:
            for compiled in [*g.populations.values(), g.observation, *(s[2] for s in g.stratifiers)]:
                if compiled is not None:
                    names |= set(compiled.variables)
        return names


def _ext(resource: Mapping[str, Any], url: str) -> Any:
    for e in resource.get("extension") or []:
        if e.get("url") == url:
            return next((v for k, v in e.items() if k.startswith("value")), None)
    return None


def compile_measure(measure: Mapping[str, Any]) -> CompiledMeasure:
    """Compile a Measure's criteria; FHIRError('invalid') naming the element when one is missing or wrong."""
    mid = measure.get("id", "")
    scoring = next((c.get("code") for c in (measure.get("scoring") or {}).get("coding", [])), None)
    if scoring not in SCORINGS:
        raise FHIRError("not-supported", f"Measure/{mid}: scoring {scoring!r} is not supported", "Measure.scoring")
    index_feature = _ext(measure, INDEX_DATE)
    if not isinstance(index_feature, str):
        raise FHIRError("invalid", f"Measure/{mid} names no index date feature (extension {INDEX_DATE})",
                        "Measure.extension")
    groups: list[CompiledGroup] = []
    for gi, group in enumerate(measure.get("group") or []):
        pops: dict[str, CompiledExpression] = {}
        observation = None
        for pi, population in enumerate(group.get("population") or []):
            where = f"Measure.group[{gi}].population[{pi}].criteria"
            code = next((c.get("code") for c in (population.get("code") or {}).get("coding", [])), None)
            criteria = population.get("criteria") or {}
            if criteria.get("language") != "text/fhirpath" or not isinstance(criteria.get("expression"), str):
                raise FHIRError("invalid", f"Measure/{mid}: population criteria must be text/fhirpath", where)
            compiled = compile_expression(criteria["expression"], artifact=f"Measure/{mid}", path=where)
            if code == "measure-observation":
                observation = compiled
            elif code in SCORINGS[scoring]:
                pops[code] = compiled
            else:
                raise FHIRError("invalid", f"Measure/{mid}: population {code!r} does not fit scoring {scoring}",
                                f"Measure.group[{gi}].population[{pi}].code")
        if "initial-population" not in pops:
            raise FHIRError("invalid", f"Measure/{mid}: group {gi} has no initial-population",
                            f"Measure.group[{gi}]")
        stratifiers: list[tuple[str, dict[str, Any], CompiledExpression | None]] = []
        for si, s in enumerate(group.get("stratifier") or []):
            code = (s.get("code") or {}).get("text") or next(
                (c.get("code") for c in (s.get("code") or {}).get("coding", [])), f"stratifier-{si}")
            crit = s.get("criteria")
            criterion = (compile_expression(crit["expression"], artifact=f"Measure/{mid}",
                                            path=f"Measure.group[{gi}].stratifier[{si}].criteria")
                         if crit else None)
            stratifiers.append((code, s.get("code") or {"text": code}, criterion))
        groups.append(CompiledGroup(
            id=group.get("id") or f"group-{gi}", description=group.get("description", ""), code=group.get("code"),
            populations=pops, observation=observation, stratifiers=stratifiers, target=_ext(group, TARGET)))
    jurisdiction = next((c.get("code") for j in measure.get("jurisdiction") or [] for c in j.get("coding", [])), None)
    rules = [c.get("code") for t in measure.get("topic") or [] for c in t.get("coding", [])]
    return CompiledMeasure(
        resource=dict(measure), id=mid, url=measure.get("url", ""), title=measure.get("title", mid),
        scoring=scoring, index_feature=index_feature, aggregate=_ext(measure, AGGREGATE) or "average",
        groups=groups, jurisdiction=jurisdiction, rules=rules)


# -- variants: the pathways' jurisdictions ------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    name: str
    code: str  # ISO 3166 (SE) or ISO 3166-2 (SE-M)
    display: str

    def covers(self, code: str | None) -> bool:
        """This variant's jurisdiction contains `code` (SE contains SE-M)."""
        return bool(code) and (code == self.code or code.startswith(self.code + "-"))  # type: ignore[union-attr]


def pathway_variants(kb: Any) -> dict[str, Variant]:
    """Every loaded pathway PlanDefinition (lbp-pathway-<variant>) with its jurisdiction."""
    out: dict[str, Variant] = {}
    for pd in kb.resources("PlanDefinition"):
        url = pd.get("url", "")
        if not url.startswith(PATHWAY_PREFIX):
            continue
        coding = next((c for j in pd.get("jurisdiction") or [] for c in j.get("coding", [])), None)
        if coding and coding.get("code"):
            name = url.removeprefix(PATHWAY_PREFIX)
            out[name] = Variant(name, coding["code"], coding.get("display", ""))
    return out


def _norm(text: Any) -> str:
    return str(text or "").strip().lower()


def residence_variant(address: Mapping[str, Any] | None, variants: Mapping[str, Variant]) -> Variant | None:
    """The most specific variant whose jurisdiction holds the address (a region before its country)."""
    if not address:
        return None
    country, state = _norm(address.get("country")), _norm(address.get("state"))
    best: Variant | None = None
    for v in variants.values():
        cc = v.code[:2].lower()
        in_country = country in COUNTRY_NAMES.get(cc, {cc}) if country else None
        if "-" in v.code:
            display = _norm(v.display)
            names = {v.code.lower(), display, display.removesuffix(" län"), display.removeprefix("region ")}
            if state and state in names and in_country is not False:
                return v
        elif in_country and best is None:
            best = v
    return best


# -- the record as it stood at a date -------------------------------------------------------------------------


def _clinical_date(r: Mapping[str, Any]) -> str | None:
    t = r.get("resourceType")
    if t == "Patient":
        return None
    # When the fact entered the record: a Condition's recordedDate before its onset.
    for key in ("recordedDate", "effectiveDateTime", "performedDateTime", "onsetDateTime", "authoredOn", "authored",
                "started", "issued", "created", "dateAsserted"):
        value = r.get(key)
        if isinstance(value, str):
            return value[:10]
    for key in ("effectivePeriod", "performedPeriod", "onsetPeriod", "period"):
        value = r.get(key)
        if isinstance(value, Mapping) and isinstance(value.get("start"), str):
            return value["start"][:10]
    return None


def record_as_of(resources: Iterable[dict[str, Any]], day: date) -> list[dict[str, Any]]:
    """Resources dated on or before `day` (undated ones, like the Patient, are kept)."""
    limit = day.isoformat()
    out = []
    for r in resources:
        d = _clinical_date(r)
        if d is None or d <= limit:
            out.append(r)
    return out


# -- per patient ----------------------------------------------------------------------------------------------


@dataclass
class GroupResult:
    populations: dict[str, bool | None]  # None: could not be decided
    observation: float | None
    strata: dict[str, str]


@dataclass
class SubjectResult:
    patient_id: str
    variant: str | None
    index_date: str
    groups: dict[str, GroupResult]
    resources: list[str]  # Type/id of the record read


@dataclass
class IssueTally:
    """Issues met while evaluating, counted by message (no patient data in the messages)."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, severity: str, message: str) -> None:
        self.counts[(severity, message)] = self.counts.get((severity, message), 0) + 1

    def issues(self) -> list[Issue]:
        return [Issue(sev, "processing", f"{msg} ({n} patient{'s' if n != 1 else ''})")
                for (sev, msg), n in sorted(self.counts.items())]


class MeasureEvaluator:
    """Evaluates a set of compiled Measures for one period over patients' records, one patient at a time."""

    def __init__(self, kb: Any, measures: list[CompiledMeasure], period: Period, *, variant: str | None = None,
                 as_of: date | None = None, practitioner: str | None = None, eager_features: bool = False):
        if period.end < period.start:
            raise FHIRError("invalid", "periodEnd is before periodStart", "Parameters.parameter('periodEnd')")
        self.kb = kb
        self.measures = measures
        self.period = period
        self.as_of = min(period.end, as_of or datetime.now(UTC).date())
        self.variants = pathway_variants(kb)
        if variant is not None and variant not in self.variants:
            raise FHIRError("not-found", f"No pathway variant {variant!r} is loaded",
                            "Parameters.parameter('variant')")
        self.variant = self.variants.get(variant) if variant else None
        self.practitioner = practitioner
        library = kb.artifact(LIBRARY, "Library")
        if library is None:
            raise FHIRError("processing", "Library lbp-case-features is not loaded", "Measure.library")
        self.library = library
        wanted: set[str] = set()
        placing: set[str] = {RESIDENCE_FEATURE}
        for m in measures:
            wanted |= m.features
            placing.add(m.index_feature)
            for g in m.groups:
                placing |= set(g.populations["initial-population"].variables)
                placing |= {v for _, _, c in g.stratifiers if c is not None for v in c.variables}
        # every feature some patient may need; each is computed only when a criterion reads it (`evaluate`)
        self.only = frozenset(needed_features(library, wanted | placing))
        # what places a patient (index dates, residence, initial populations, strata): read for every patient
        self.placing = needed_features(library, placing)
        self.eager_features = eager_features
        self.features_evaluated = 0  # case features computed, over every patient evaluated
        self.tally = IssueTally()
        self.skipped_unplaced = 0  # patients whose residence places them in no variant (variant reports)

    def _truth(self, fv: Any, compiled: CompiledExpression, label: str, *, report: bool = True) -> bool | None:
        traced = fv.trace(compiled)
        if traced.failed:  # read a case feature that failed: unknown, never negative
            return None
        if traced.error is not None:  # a criterion that fails is unknown and reported, never negative
            if report:
                self.tally.add("error", f"{label}: {compiled.text} could not be evaluated "
                                        f"({type(traced.error).__name__})")
            return None
        values = to_json(traced.value)
        if not values:
            return None
        if len(values) == 1 and isinstance(values[0], bool):
            return values[0]
        if report:
            self.tally.add("error", f"{label}: {compiled.text} is not a single boolean")
        return None

    def _value(self, fv: Any, compiled: CompiledExpression, label: str) -> Any:
        traced = fv.trace(compiled)
        if traced.failed:
            return None
        if traced.error is not None:
            self.tally.add("error", f"{label}: {compiled.text} could not be evaluated ({type(traced.error).__name__})")
            return None
        values = to_json(traced.value)
        return values[0] if len(values) == 1 else None

    def _populations(self, fv: Any, scoring: str, g: CompiledGroup, label: str) -> dict[str, bool | None]:
        """The criteria after the initial population, each only when the ones before it leave the patient
        where it matters (FHIR Measure population semantics, as `Tally.add` counts them): a numerator is
        not evaluated for a patient outside the denominator, so neither are the features only it reads."""
        criteria = g.populations
        pops: dict[str, bool | None] = {}

        def truth(code: str, absent: bool | None = None) -> bool | None:
            if code not in criteria:
                return absent
            pops[code] = self._truth(fv, criteria[code], label)
            return pops[code]

        if scoring == "continuous-variable":
            if truth("measure-population", True):
                truth("measure-population-exclusion")
        elif scoring in ("proportion", "ratio"):
            if not truth("denominator", True) or truth("denominator-exclusion"):
                return pops
            numerator = truth("numerator")
            if numerator:
                truth("numerator-exclusion")
            else:
                truth("denominator-exception")
        return pops

    def _tally_feature_issues(self, fv: FeatureValues) -> None:
        for issue in fv.issues:
            if issue.severity in ("error", "fatal"):
                # The message up to the exception text: the names of Library and feature, never record values.
                self.tally.add("error", issue.text.split(" (")[0])

    def evaluate(self, record: list[dict[str, Any]]) -> dict[str, SubjectResult]:
        """measure id -> the patient's result, for the Measures whose period and variant hold the patient."""
        resources = record_as_of(record, self.as_of)
        patient = next((r for r in resources if r.get("resourceType") == "Patient"), None)
        if patient is None:
            return {}
        if self.practitioner and not any(
                (ref.get("reference") or "").endswith(self.practitioner)
                for ref in patient.get("generalPractitioner") or []):
            return {}
        # one context per patient for every Measure; each case feature computed when a criterion first reads it
        context = patient_context(resources, subject=patient, today=self.as_of, terminology=self.kb.terminology)
        fv = evaluate_features(self.kb, self.library, context, only=self.only, lazy=not self.eager_features)
        residence = fv.value(RESIDENCE_FEATURE)
        placed = residence_variant(residence[0] if residence else None, self.variants)
        if self.variant is not None and (placed is None or not self.variant.covers(placed.code)):
            if placed is None:
                self.skipped_unplaced += 1
            self._tally_feature_issues(fv)
            self.features_evaluated += fv.evaluated_count
            return {}
        chosen: list[tuple[CompiledMeasure, str]] = []
        for m in self.measures:
            if placed is not None and m.jurisdiction and not Variant("", m.jurisdiction, "").covers(placed.code):
                continue
            index = fv.value(m.index_feature)
            index_date = index[0] if index and isinstance(index[0], str) else None
            if self.period.contains(index_date):
                chosen.append((m, index_date))  # type: ignore[arg-type]
        out: dict[str, SubjectResult] = {}
        refs = [f"{r['resourceType']}/{r.get('id', '')}" for r in resources]
        for m, index_date in chosen:
            label = f"Measure/{m.id}"
            groups: dict[str, GroupResult] = {}
            for g in m.groups:
                initial = self._truth(fv, g.populations["initial-population"], label)
                pops: dict[str, bool | None] = {"initial-population": initial}
                if initial:
                    pops.update(self._populations(fv, m.scoring, g, label))
                obs = None
                if (g.observation is not None and pops.get("measure-population")
                        and not pops.get("measure-population-exclusion")):
                    value = self._value(fv, g.observation, label)
                    obs = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
                strata = {}
                for code, _, criterion in g.stratifiers:
                    if criterion is None:
                        strata[code] = placed.name if placed else UNKNOWN_STRATUM
                    else:
                        value = self._value(fv, criterion, label)
                        strata[code] = str(value) if value not in (None, "") else UNKNOWN_STRATUM
                groups[g.id] = GroupResult(pops, obs, strata)
            out[m.id] = SubjectResult(str(patient.get("id")), placed.name if placed else None, index_date,
                                      groups, refs)
        self._tally_feature_issues(fv)  # after every criterion: the features are computed as they are read
        self.features_evaluated += fv.evaluated_count
        return out


# -- counting -------------------------------------------------------------------------------------------------


@dataclass
class Tally:
    """Population counts of one group (or one stratum, or one month)."""

    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    unknown: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    members: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    observations: list[float] = field(default_factory=list)
    numerator_unknown: int = 0

    def add(self, scoring: str, result: GroupResult, patient_id: str, keep_members: bool) -> None:
        pops = result.populations
        order = SCORINGS[scoring]

        def put(code: str) -> None:
            self.counts[code] += 1
            if keep_members:
                self.members[code].append(patient_id)

        ip = pops.get("initial-population")
        if ip is None:
            self.unknown["initial-population"] += 1
            return
        if not ip:
            return
        put("initial-population")
        if scoring == "cohort":
            return
        if scoring == "continuous-variable":
            mp = pops.get("measure-population", True)
            if mp is None:
                self.unknown["measure-population"] += 1
                return
            if not mp:
                return
            excluded = pops.get("measure-population-exclusion")
            if excluded:
                put("measure-population-exclusion")
                return
            put("measure-population")
            if result.observation is None:
                self.unknown["measure-observation"] += 1
            else:
                self.observations.append(result.observation)
            return
        denominator = pops.get("denominator", True) if "denominator" in order else True
        if denominator is None:
            self.unknown["denominator"] += 1
            return
        if not denominator:
            return
        put("denominator")
        if pops.get("denominator-exclusion"):
            put("denominator-exclusion")
            return
        numerator = pops.get("numerator")
        if numerator is None:
            # Not decidable: neither counted as meeting nor as failing the indicator (docs/measures.md).
            if pops.get("denominator-exception"):
                put("denominator-exception")
            else:
                self.unknown["numerator"] += 1
                self.numerator_unknown += 1
            return
        if numerator:
            if pops.get("numerator-exclusion"):
                put("numerator-exclusion")
                return
            put("numerator")
        elif pops.get("denominator-exception"):
            put("denominator-exception")

    def score(self, scoring: str, aggregate: str) -> float | None:
        if scoring in ("proportion", "ratio"):
            base = (self.counts["denominator"] - self.counts["denominator-exclusion"]
                    - self.counts["denominator-exception"] - self.numerator_unknown)
            return (self.counts["numerator"] - self.counts["numerator-exclusion"]) / base if base > 0 else None
        if scoring == "continuous-variable":
            values = self.observations
            if not values:
                return None
            if aggregate == "median":
                return float(statistics.median(values))
            if aggregate == "sum":
                return float(sum(values))
            if aggregate == "count":
                return float(len(values))
            return float(sum(values) / len(values))
        return float(self.counts["initial-population"])


@dataclass
class GroupTally:
    overall: Tally = field(default_factory=Tally)
    strata: dict[str, dict[str, Tally]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(Tally)))
    months: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))


class MeasureAccumulator:
    """Counts one Measure's populations over patients, overall, per stratum and per month of the index date."""

    def __init__(self, measure: CompiledMeasure, *, keep_members: bool = False):
        self.measure = measure
        self.keep_members = keep_members
        self.groups = {g.id: GroupTally() for g in measure.groups}
        self.subjects: list[str] = []

    def add(self, result: SubjectResult) -> None:
        scoring = self.measure.scoring
        self.subjects.append(result.patient_id)
        for gid, gr in result.groups.items():
            t = self.groups[gid]
            t.overall.add(scoring, gr, result.patient_id, self.keep_members)
            for code, value in gr.strata.items():
                t.strata[code][value].add(scoring, gr, result.patient_id, False)
            t.months[result.index_date[:7]].add(scoring, gr, result.patient_id, False)


# -- MeasureReport --------------------------------------------------------------------------------------------


def _population_json(code: str, tally: Tally, lists: dict[str, str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"code": {"coding": [{"system": POPULATION_SYSTEM, "code": code}]},
                           "count": tally.counts.get(code, 0)}
    if tally.unknown.get(code):
        out["extension"] = [{"url": UNKNOWN, "valueInteger": tally.unknown[code]}]
    if lists and code in lists:
        out["subjectResults"] = {"reference": f"#{lists[code]}"}
    return out


def _codes(measure: CompiledMeasure, group: CompiledGroup) -> list[str]:
    codes = [c for c in SCORINGS[measure.scoring] if c in group.populations]
    if measure.scoring == "proportion" and "denominator" not in codes:
        codes.insert(1, "denominator")
    return codes


def _score_json(value: float | None) -> dict[str, Any] | None:
    return None if value is None else {"value": round(value, 6)}


def measure_report(acc: MeasureAccumulator, evaluator: MeasureEvaluator, *, report_type: str,
                   subject: str | None = None, evaluated: list[str] | None = None) -> dict[str, Any]:
    """An R4 MeasureReport (individual, subject-list or summary) of the accumulated results."""
    m = acc.measure
    fhir_type = {"subject": "individual", "subject-list": "subject-list", "population": "summary"}[report_type]
    report: dict[str, Any] = {
        "resourceType": "MeasureReport",
        "extension": [{"url": REPORT_AS_OF, "valueDate": evaluator.as_of.isoformat()}],
        "status": "complete",
        "type": fhir_type,
        "measure": m.url + (f"|{m.resource['version']}" if m.resource.get("version") else ""),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "period": evaluator.period.as_fhir(),
    }
    if evaluator.variant is not None:
        report["extension"].append({"url": REPORT_VARIANT, "valueCode": evaluator.variant.name})
    if subject:
        report["subject"] = {"reference": subject}
    if m.resource.get("improvementNotation"):
        report["improvementNotation"] = m.resource["improvementNotation"]
    contained: list[dict[str, Any]] = []
    groups = []
    for g in m.groups:
        t = acc.groups[g.id]
        lists: dict[str, str] = {}
        if report_type == "subject-list":
            for code in _codes(m, g):
                list_id = f"{g.id}-{code}"
                lists[code] = list_id
                contained.append({"resourceType": "List", "id": list_id, "status": "current", "mode": "snapshot",
                                  "title": f"{g.id} {code}",
                                  "entry": [{"item": {"reference": f"Patient/{pid}"}}
                                            for pid in t.overall.members.get(code, [])]})
        group: dict[str, Any] = {"id": g.id}
        if g.code:
            group["code"] = g.code
        ext = []
        if g.target is not None:
            ext.append({"url": TARGET, "valueDecimal": g.target})
        if ext:
            group["extension"] = ext
        group["population"] = [_population_json(c, t.overall, lists) for c in _codes(m, g)]
        score = _score_json(t.overall.score(m.scoring, m.aggregate))
        if score:
            group["measureScore"] = score
        stratifiers = []
        for code, code_json, _ in g.stratifiers:
            strata = []
            for value, st in sorted(t.strata.get(code, {}).items()):
                stratum: dict[str, Any] = {"value": {"text": value},
                                           "population": [_population_json(c, st) for c in _codes(m, g)]}
                s = _score_json(st.score(m.scoring, m.aggregate))
                if s:
                    stratum["measureScore"] = s
                strata.append(stratum)
            stratifiers.append({"code": [code_json], **({"stratum": strata} if strata else {})})
        if stratifiers:
            group["stratifier"] = stratifiers
        groups.append(group)
    report["group"] = groups
    issues = evaluator.tally.issues()
    if evaluator.variant is not None and evaluator.skipped_unplaced:
        issues.append(Issue("information", "informational",
                            f"{evaluator.skipped_unplaced} patients have no address that places them in a region "
                            "and are in no variant's report"))
    if issues:
        from app.errors import operation_outcome

        oo = operation_outcome(issues)
        oo["id"] = "evaluation-outcome"
        contained.append(oo)
        report["extension"].append({"url": REPORT_ISSUES, "valueReference": {"reference": "#evaluation-outcome"}})
    if contained:
        report["contained"] = contained
    if evaluated:
        report["evaluatedResource"] = [{"reference": ref} for ref in evaluated]
    return report


def monthly_scores(acc: MeasureAccumulator, group_id: str) -> list[tuple[str, float | None, int]]:
    """(YYYY-MM, score, denominator or initial population) per month of the index date."""
    m = acc.measure
    t = acc.groups[group_id]
    out = []
    for month, tally in sorted(t.months.items()):
        base = tally.counts.get("denominator" if m.scoring == "proportion" else "measure-population"
                                if m.scoring == "continuous-variable" else "initial-population", 0)
        out.append((month, tally.score(m.scoring, m.aggregate), base))
    return out


def measures_for_variant(kb: Any, variant: str) -> list[dict[str, Any]]:
    """The active Measures whose jurisdiction contains the variant's (the national ones apply in a region)."""
    variants = pathway_variants(kb)
    if variant not in variants:
        raise FHIRError("not-found", f"No pathway variant {variant!r} is loaded", "variant")
    code = variants[variant].code
    out = []
    for m in kb.resources("Measure"):
        if m.get("status") != "active":
            continue
        jur = next((c.get("code") for j in m.get("jurisdiction") or [] for c in j.get("coding", [])), None)
        if jur and Variant("", jur, "").covers(code):
            out.append(m)
    return sorted(out, key=lambda r: r.get("id", ""))


def evaluate_measures(kb: Any, measures: Sequence[Mapping[str, Any]], records: Iterable[list[dict[str, Any]]],
                      period: Period, *, variant: str | None = None, as_of: date | None = None,
                      practitioner: str | None = None, keep_members: bool = False, eager_features: bool = False
                      ) -> tuple[MeasureEvaluator, list[MeasureAccumulator]]:
    """Evaluate every Measure over every record (an iterable of per-patient resource lists), in one pass.

    `eager_features`: compute every case feature a Measure may read for each patient up front (the same
    counts; the baseline the benchmark compares the on-demand evaluation with)."""
    compiled = [compile_measure(m) for m in measures]
    evaluator = MeasureEvaluator(kb, compiled, period, variant=variant, as_of=as_of, practitioner=practitioner,
                                 eager_features=eager_features)
    accs = {m.id: MeasureAccumulator(m, keep_members=keep_members) for m in compiled}
    for record in records:
        for mid, result in evaluator.evaluate(record).items():
            accs[mid].add(result)
    return evaluator, list(accs.values())
