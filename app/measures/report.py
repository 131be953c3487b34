"""A region's indicator report: the table (numbers, targets, met or not) and an HTML page with monthly SVG plots.

Targets come from the Measures (group extension `measure-target`, improvementNotation); a Measure of type
`structure` (Q10's planning funnel) is compared with its expected share and marked when it differs by more
than half of it. Rules the sources make indicators of but that cannot be computed from a record (Q3) are
listed with the reason recorded in the rule CodeSystem.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from app.charts import line_chart

from . import engine

RULES = f"{engine.BASE}/CodeSystem/lbp-rules"
TEMPLATES = Path(__file__).parent / "templates"


@dataclass
class IndicatorRow:
    measure_id: str
    group_id: str
    rules: list[str]
    identifier: str | None
    title: str
    scoring: str
    numerator: int | None
    denominator: int | None
    unknown: int
    score: float | None
    unit: str  # "%" for shares, else the observation's unit
    target: float | None
    comparison: str  # "at-least", "at-most", "expected", ""
    met: bool | None
    monthly: list[tuple[str, float | None, int]] = field(default_factory=list)

    def score_text(self) -> str:
        if self.score is None:
            return "no data"
        return f"{self.score * 100:.1f} %" if self.unit == "%" else f"{self.score:.2f}{self.unit}"

    def target_text(self) -> str:
        if self.target is None:
            return "—"
        value = f"{self.target * 100:g} %" if self.unit == "%" else f"{self.target:g}"
        return {"at-least": f"≥ {value}", "at-most": f"≤ {value}", "expected": f"expected {value}"}.get(
            self.comparison, value)

    def met_text(self) -> str:
        if self.target is None:
            return "no target"
        if self.met is None:
            return "cannot tell"
        if self.comparison == "expected":
            return "as expected" if self.met else "differs"
        return "met" if self.met else "not met"

    def counts_text(self) -> str:
        if self.scoring == "proportion":
            return f"{self.numerator} / {self.denominator}"
        return f"n = {self.denominator}"


def _population(group: dict[str, Any], code: str) -> dict[str, Any] | None:
    return next((p for p in group.get("population", []) if p["code"]["coding"][0]["code"] == code), None)


def _unknown(group: dict[str, Any]) -> int:
    return sum(e.get("valueInteger", 0) for p in group.get("population", []) for e in p.get("extension", [])
               if e.get("url") == engine.UNKNOWN)


TRANSLATION = "http://hl7.org/fhir/StructureDefinition/translation"


def translated(resource: dict[str, Any], element: str, lang: str) -> str:
    """The element's text in `lang` (the resource's own language, or its translation extension)."""
    text = resource.get(element, "")
    if resource.get("language", "en") == lang:
        return text
    for ext in (resource.get(f"_{element}") or {}).get("extension", []):
        if ext.get("url") == TRANSLATION:
            parts = {e.get("url"): next((v for k, v in e.items() if k.startswith("value")), None)
                     for e in ext.get("extension", [])}
            if parts.get("lang") == lang and parts.get("content"):
                return parts["content"]
    return text


def indicator_rows(accs: list[engine.MeasureAccumulator], evaluator: engine.MeasureEvaluator, *,
                   lang: str = "en") -> list[IndicatorRow]:
    rows = []
    for acc in accs:
        m = acc.measure
        report = engine.measure_report(acc, evaluator, report_type="population")
        notation = next((c.get("code") for c in (m.resource.get("improvementNotation") or {}).get("coding", [])), "")
        mtype = next((c.get("code") for t in m.resource.get("type") or [] for c in t.get("coding", [])), "")
        identifier = next((i.get("value") for i in m.resource.get("identifier") or []), None)
        for g, rg in zip(m.groups, report["group"], strict=True):
            score = (rg.get("measureScore") or {}).get("value")
            unknown = _unknown(rg)
            if m.scoring == "proportion":
                num = (_population(rg, "numerator") or {}).get("count", 0)
                numerator_unknown = sum(e.get("valueInteger", 0) for e in
                                        (_population(rg, "numerator") or {}).get("extension", []))
                den = ((_population(rg, "denominator") or {}).get("count", 0)
                       - ((_population(rg, "denominator-exclusion") or {}).get("count", 0))
                       - ((_population(rg, "denominator-exception") or {}).get("count", 0)) - numerator_unknown)
            else:
                num = None
                ip = (_population(rg, "initial-population") or {}).get("count", 0)
                den = (_population(rg, "measure-population") or _population(rg, "initial-population") or {}).get(
                    "count", 0)
                unknown += ip - den  # in the initial population without the data the observation needs
            comparison = ("expected" if mtype == "structure" else "at-most" if notation == "decrease"
                          else "at-least") if g.target is not None else ""
            met = None
            if g.target is not None and score is not None:
                if comparison == "expected":
                    met = abs(score - g.target) <= g.target / 2
                elif comparison == "at-most":
                    met = score <= g.target
                else:
                    met = score >= g.target
            unit = "%" if m.scoring == "proportion" else (" days" if "days" in (g.description or "").lower() else "")
            name = translated(m.resource, "title", lang)
            title = name if len(m.groups) == 1 else f"{name}: {g.description}"
            rows.append(IndicatorRow(
                measure_id=m.id, group_id=g.id, rules=[r for r in m.rules if r], identifier=identifier, title=title,
                scoring=m.scoring, numerator=num, denominator=den, unknown=unknown, score=score, unit=unit,
                target=g.target, comparison=comparison, met=met, monthly=engine.monthly_scores(acc, g.id)))
    return rows


def not_computable(kb: Any) -> list[tuple[str, str, str]]:
    """(rule id, display, reason) of the indicator rules (Q*) the rule CodeSystem marks not computable."""
    cs = kb.resolve(RULES)
    out = []
    for concept in (cs or {}).get("concept", []):
        props = {p["code"]: next((v for k, v in p.items() if k.startswith("value")), None)
                 for p in concept.get("property", [])}
        if concept["code"].startswith("Q") and props.get("computable") is False:
            out.append((concept["code"], concept.get("display", ""), props.get("not-computable-reason") or ""))
    return out


def table_text(rows: list[IndicatorRow], *, variant: str, period: engine.Period, as_of: date) -> str:
    """The indicator table for a terminal."""
    head = ("indicator", "result", "count", "unknown", "target", "status")
    body = [(f"{' '.join(r.rules[:2])} {r.title}"[:70],
             r.score_text(), r.counts_text(), str(r.unknown), r.target_text(), r.met_text()) for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    lines = [f"Indicators, variant {variant}, {period.start} – {period.end} (record as of {as_of})", ""]
    if not rows:
        return "\n".join([*lines, "No Measure applies to this variant: its sources name no indicators."])
    lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in body]
    return "\n".join(lines)


def _chart(row: IndicatorRow, index: int):
    points = [(date.fromisoformat(month + "-01"), score) for month, score, _ in row.monthly if score is not None]
    if not points:
        return None
    if row.unit == "%":
        series = [("share, %", 100.0, [(d, v * 100) for d, v in points])]
        if row.target is not None:
            series.append((f"target {row.target_text()}", 100.0, [(points[0][0], row.target * 100),
                                                                   (points[-1][0], row.target * 100)]))
    else:
        top = max(max(v for _, v in points), row.target or 0, 1.0) * 1.2
        series = [(row.unit.strip() or "value", round(top, 1), points)]
    return line_chart(series, title=f"{row.title} per month",
                      description=f"{row.title}: the result per month of the index date", chart_id=f"chart-{index}")


def render_html(rows: list[IndicatorRow], *, variant: str, period: engine.Period, as_of: date,
                not_computable_rules: list[tuple[str, str, str]], issues: list[str], lang: str = "en") -> str:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    charts = [_chart(row, i) for i, row in enumerate(rows)]
    return env.get_template("report.html").render(
        rows=list(zip(rows, charts, strict=True)), variant=variant, period=period, as_of=as_of,
        not_computable=not_computable_rules, issues=issues, lang=lang)


@dataclass
class VariantReport:
    rows: list[IndicatorRow]
    evaluator: engine.MeasureEvaluator
    patients: list[str]  # ids of the patients counted in any indicator (for the audit trail)
    lang: str = "en"  # language of the indicator titles

    def issues(self) -> list[str]:
        return [i.message for i in self.evaluator.tally.issues()]


def build_report(kb: Any, records, *, variant: str, period: engine.Period, as_of: date | None = None,
                 lang: str = "en") -> VariantReport:
    """Evaluate every Measure of the variant over the records (one pass); titles in `lang` where translated."""
    measures = engine.measures_for_variant(kb, variant)
    evaluator, accs = engine.evaluate_measures(kb, measures, records, period, variant=variant, as_of=as_of)
    patients = sorted({pid for acc in accs for pid in acc.subjects})
    return VariantReport(indicator_rows(accs, evaluator, lang=lang), evaluator, patients, lang)


def render_report(kb: Any, result: VariantReport, *, variant: str, period: engine.Period) -> str:
    issues = result.issues()
    if result.evaluator.skipped_unplaced:
        issues.append(f"{result.evaluator.skipped_unplaced} patients have no address that places them in a "
                      "region and are in no variant's report")
    return render_html(result.rows, variant=variant, period=period, as_of=result.evaluator.as_of,
                       not_computable_rules=not_computable(kb), issues=issues, lang=result.lang)


def parse_period(text: str) -> engine.Period:
    """'2026-01-01/2026-12-31' -> Period; ValueError with a message otherwise."""
    start, sep, end = text.partition("/")
    if not sep:
        raise ValueError("the period is START/END, e.g. 2026-01-01/2026-12-31")
    period = engine.Period(date.fromisoformat(start.strip()), date.fromisoformat(end.strip()))
    if period.end < period.start:
        raise ValueError("the period ends before it starts")
    return period
