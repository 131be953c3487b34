"""Rule catalogue: every rule id, the artifacts implementing it, its source sentence, and every assumption."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.conventions import BASE, RULES_SYSTEM

ASSUMPTION = f"{BASE}/StructureDefinition/assumption"
CITATION_EN = f"{BASE}/StructureDefinition/citation-en"
ARTIFACT_FOLDERS = ("valuesets", "questionnaires", "plandefinitions")
RULES_FILE = Path("valuesets") / "CodeSystem-lbp-rules.json"
OUTPUT = Path("docs") / "catalogue.md"


def _artifacts(root: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for folder in ARTIFACT_FOLDERS:
        for path in sorted((root / folder).glob("*.json")):
            resource = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(resource, dict) and "resourceType" in resource:
                yield f"{resource['resourceType']}/{resource.get('id', path.stem)}", resource


def _walk(node: Any, path: str, action: str | None) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
    """Every object in a resource with its element path and the id of the PlanDefinition action holding it."""
    if isinstance(node, dict):
        yield path, action, node
        for key, value in node.items():
            element = key[1:] if key.startswith("_") else key
            yield from _walk(value, f"{path}.{element}", action)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            inner = action
            if path.endswith(".action") and isinstance(value, dict) and value.get("id"):
                inner = f"{action}/{value['id']}" if action else value["id"]
            yield from _walk(value, f"{path}[{i}]", inner)


def _rule_definitions(root: Path) -> list[dict[str, Any]]:
    """Rule concepts from the lbp-rules CodeSystem: code, display, source, computable, reason."""
    path = root / RULES_FILE
    if not path.exists():
        return []
    cs = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for concept in cs.get("concept", []):
        props: dict[str, Any] = {}
        for prop in concept.get("property", []):
            value = next((v for k, v in prop.items() if k.startswith("value")), None)
            props[prop.get("code")] = value
        out.append(
            {
                "code": concept["code"],
                "display": concept.get("display", ""),
                "source": props.get("source", ""),
                "computable": props.get("computable", True) is not False,
                "reason": props.get("not-computable-reason", ""),
            }
        )
    return out


def collect(root: Path) -> dict[str, Any]:
    """What the catalogue shows, as data: implementers and citations per rule, and every assumption."""
    implementers: dict[str, set[str]] = {}
    sources: dict[str, list[tuple[str, str, str]]] = {}
    assumptions: list[tuple[str, str, str]] = []
    rules_file_key = None
    for key, resource in _artifacts(root):
        if resource.get("url") == RULES_SYSTEM:
            rules_file_key = key
            continue
        rtype = resource["resourceType"]
        for path, action, obj in _walk(resource, rtype, None):
            if obj.get("system") == RULES_SYSTEM and obj.get("code"):
                implementers.setdefault(obj["code"], set()).add(f"{key}#{action}" if action else key)
            if obj.get("type") == "citation" and obj.get("label") and obj.get("citation"):
                english = next(
                    (
                        e.get("valueString", "")
                        for e in (obj.get("_citation") or {}).get("extension", [])
                        if e.get("url") == CITATION_EN
                    ),
                    "",
                )
                entry = (obj.get("display", ""), obj["citation"], english)
                if entry not in sources.setdefault(obj["label"], []):
                    sources[obj["label"]].append(entry)
            for ext in obj.get("extension", []) or []:
                if isinstance(ext, dict) and ext.get("url") == ASSUMPTION:
                    assumptions.append((key, path, ext.get("valueString", "")))
    return {
        "implementers": implementers,
        "sources": sources,
        "assumptions": assumptions,
        "rules_file": rules_file_key,
    }


def _md(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def knowledge(root: Path) -> Any:
    """The artifacts under `root` compiled into a knowledge base (conditions and features need it)."""
    from app.reasoning.knowledge import KnowledgeBase

    return KnowledgeBase([resource for _, resource in _artifacts(Path(root))])


def _conditions(root: Path) -> dict[str, list[Any]]:
    from app.reasoning.rulemap import rule_conditions

    return {rule: [c for c in found if c.is_condition] for rule, found in rule_conditions(knowledge(root)).items()}


# Elements of the source documents (ids of the seed-coverage audit, docs/coverage.md) that no rule can compute from
# what a journal shares, and why. Data, not prose in the generated file: `make catalogue` renders it.
NOT_COMPUTABLE_ELEMENTS: list[tuple[str, str, str]] = [
    ("SE-9", "The pathway's ICD-10 list (Bilaga 7)",
     "Bilaga 7 is not among the source documents; `lbp-conditions` uses the data contract's list."),
    ("A2", "Symptom-reducing movements indicate a good short-term prognosis",
     "An examination finding with no code in the data contract; stated on the patient information page."),
    ("YF1–3", "Yellow-flag domains (emotional, cognitive, behavioural)",
     "Clinical judgement in conversation; the screening risk (STarT Back, ÖMPSQ-SF) is the computable proxy."),
    ("SK-5", "Standardised physiotherapy examination (MDT, OMI, OMT)",
     "Examination methods of the physiotherapist; no code for them in the data contract."),
    ("SK-6", "Sick leave per the national insurance-medicine guidance (FMB)",
     "Sick-leave certificates and the FMB guidance are outside the data contract and the seeds."),
    ("SK-9", "Emergency departments follow the programme",
     "The ordering unit is not in what the service reads: the prefetch holds no Encounter and a draft order's "
     "encounter reference carries no class, so an emergency visit cannot be told apart; the order-time rules (I6, R0, "
     "RN1–RN7, the referral template) apply to every orderer, the emergency department included."),
    ("Q3", "National patient survey via 1177's form service",
     "Collected outside the journal, by 1177's form service; the answers never reach the record the service reads. "
     "The region's indicator report lists Q3 with this reason."),
    ("Q9e", "Patient and staff satisfaction (target 90 %), influence on the treatment",
     "The patients' part is computed (Measures q9-satisfied-with-care, target 90 %, and q9-influence-on-treatment); "
     "the staff's satisfaction with taking part in the project is an evaluation of the project, not a fact of any "
     "patient's record."),
    ("BU-1", "Actions at set time points of the rehabilitation chain",
     "The BackUpp manual with its flow chart is not among the seeds; only day 28 and six months are stated."),
    ("P2", "Information brochure (Bilaga H) as dialogue support", "Bilaga H is not among the seeds."),
    ("P3b", "Short videos from each sector, exercise videos",
     "Content to be produced (films), not a rule: no video is among the seeds and the project makes none. The app's "
     "other parts are on /info/midtjylland (facts, the course across the sectors, the eight-week calendar)."),
    ("DK-9", "Municipal offers differ between municipalities",
     "An implementation challenge the source observes, not a rule: no list of municipal offers is among the seeds, "
     "and which offers a municipality has is its own catalogue, not a fact of the patient record. What the request "
     "can carry is coded: the offer asked for (individual or group-based, DK-5) with the municipality as recipient."),
    ("SK-13", "Indicators from the Swedish spine register",
     "Register data (the Swedish spine register) outside the journal, and the register's indicators are not named in "
     "the seeds."),
    ("SE-6", "Generic rehabilitation and insurance-medicine model; lifestyle support",
     "The generic model for rehabilitation, habilitation and insurance medicine is other national knowledge support, "
     "not among the seeds; the lifestyle part (smoking cessation for long-lasting complex pain) is a rule."),
    ("S5", "1–4 % need only the initial actions; about 20 % go on to other knowledge support",
     "A population estimate, not a rule about one patient; stated on the information pages."),
    ("SE-3", "What a referral to specialised care should contain (national)",
     "The national referral contents are in an appendix of the pathway document that is not among the seeds; the "
     "Skåne template (Bilaga 2) serves the Skåne variant."),
    ("SE-8", "Uniform information with 1177 and telephone advice",
     "Whether 1177 and telephone advice say the same is not in a patient record; the information pages point to "
     "1177 for the same self-care advice."),
]


# The practitioners' overview of a variant's cross-sector transitions (Region Midtjylland, Spor 1: "pixie-udgave …
# med særligt fokus på de tværsektorielle overgange"), generated from its pathway so it never drifts from the cards.
TRANSITION_PATHWAY = "lbp-pathway-midtjylland"
TRANSITION_RULES = {"T5", "T7", "RD1", "RC1", "S3"}
TRANSITION_STEPS = {"referral-acute", "referral-non-acute", "municipal-rehabilitation", "discharge"}
TRANSLATION = "http://hl7.org/fhir/StructureDefinition/translation"
CALENDAR_DURATION = f"{BASE}/StructureDefinition/calendar-duration"
FILLED_BY = f"{BASE}/StructureDefinition/filled-by"
_HOOK_WORDS = {"patient-view": "når patienten åbnes", "order-select": "ved ordination", "order-sign": "ved ordination"}
_UNIT_WORDS = {"d": "dage", "wk": "uger", "mo": "måneder"}


def _in_language(resource: dict[str, Any], node: dict[str, Any], element: str, lang: str) -> str:
    """The element's text in `lang`: the value when the resource is written in it, else its translation."""
    value = node.get(element) or ""
    if resource.get("language") == lang:
        return value
    for ext in (node.get(f"_{element}") or {}).get("extension", []):
        if ext.get("url") == TRANSLATION:
            parts = {e.get("url"): next((v for k, v in e.items() if k.startswith("value")), None)
                     for e in ext.get("extension", [])}
            if parts.get("lang") == lang and parts.get("content"):
                return str(parts["content"])
    return value


def _duration_words(duration: dict[str, Any] | None) -> str:
    if not duration:
        return ""
    value, unit = duration.get("value"), str(duration.get("code") or duration.get("unit") or "")
    if unit == "d" and isinstance(value, int | float) and value % 7 == 0:
        return f"{int(value) // 7} uger"
    return f"{value:g} {_UNIT_WORDS.get(unit, unit)}" if isinstance(value, int | float) else ""


def transitions(root: Path, pathway_id: str = TRANSITION_PATHWAY) -> list[dict[str, Any]]:
    """The pathway's transitions between sectors: each card that hands the patient over, holds a referral to the
    course's time limits, or asks for a standardised referral or discharge letter."""
    by_url = {resource.get("url"): resource for _, resource in _artifacts(Path(root)) if resource.get("url")}
    pathway = by_url.get(f"{BASE}/PlanDefinition/{pathway_id}")
    if pathway is None:
        return []
    imaging = by_url.get(f"{BASE}/ValueSet/lumbar-imaging") or {}
    imaging_codes = {(c.get("system"), c.get("code")) for c in (imaging.get("expansion") or {}).get("contains", [])}
    out: list[dict[str, Any]] = []

    def codes(action: dict[str, Any]) -> tuple[set[str], set[str]]:
        rules, steps = set(), set()
        for concept in action.get("code", []):
            for c in concept.get("coding", []):
                if c.get("system") == RULES_SYSTEM:
                    rules.add(c["code"])
                elif c.get("system", "").endswith("/CodeSystem/lbp-pathway-step"):
                    steps.add(c["code"])
        return rules, steps

    def suggestion(sub: dict[str, Any]) -> tuple[str, str] | None:
        target = by_url.get(sub.get("definitionCanonical", ""))
        if target is None or target.get("resourceType") != "ActivityDefinition":
            return None
        form = next((e.get("valueCanonical") for e in target.get("extension", [])
                     if e.get("url", "").endswith("cpg-collectWith")), None)
        questionnaire = by_url.get(form or "")
        clinician_form = questionnaire is not None and any(
            e.get("url") == FILLED_BY for e in questionnaire.get("extension", []))
        ordered = {(c.get("system"), c.get("code")) for c in (target.get("code") or {}).get("coding", [])}
        hand_over = target.get("kind") == "ServiceRequest" and not ordered & imaging_codes  # imaging stays put
        if not hand_over and not clinician_form:
            return None
        when = _duration_words(target.get("timingDuration"))
        return _in_language(target, target, "title", "da"), when

    def walk(actions: list[dict[str, Any]], owner: dict[str, Any], hooks: list[str]) -> None:
        for action in actions:
            own_hooks = [t.get("name") for t in action.get("trigger", []) if t.get("name")] or hooks
            nested = by_url.get(action.get("definitionCanonical", ""))
            if nested is not None and nested.get("resourceType") == "PlanDefinition":
                walk(nested.get("action", []), nested, own_hooks)
                continue
            rules, steps = codes(action)
            offered = [s for s in (suggestion(sub) for sub in action.get("action", [])) if s]
            if not (offered or rules & TRANSITION_RULES or steps & TRANSITION_STEPS & {"municipal-rehabilitation"}):
                continue
            limit = _duration_words(action.get("timingDuration")) or _duration_words(next(
                (e.get("valueDuration") for e in action.get("extension", []) if e.get("url") == CALENDAR_DURATION),
                None))
            out.append({
                "action": f"{owner.get('id')}#{action.get('id')}",
                "title": _in_language(owner, action, "title", "da"),
                "when": ", ".join(dict.fromkeys(_HOOK_WORDS.get(h, h) for h in own_hooks)) or "forløbets frist",
                "limit": limit or "; ".join(w for _, w in offered if w),
                "offers": [title for title, _ in offered],
                "rules": sorted(rules),
                "sources": list(dict.fromkeys(d.get("display", "") for d in action.get("documentation", [])
                                              if d.get("display"))),
            })

    walk(pathway.get("action", []), pathway, [])
    return out


def _transition_lines(root: Path) -> list[str]:
    rows = transitions(root)
    if not rows:
        return []
    lines = ["", "## Region Midtjylland: overblik over de tværsektorielle overgange (pixie)", "",
             "Kort udgave til praktiserende læger, fysioterapeuter, kiropraktorer, kommuner og hospital, genereret fra "
             "`PlanDefinition/lbp-pathway-midtjylland`: hvert kort, der overdrager patienten til en anden sektor, "
             "holder en henvisning op mod forløbets frister eller beder om den standardiserede henvisning eller "
             "epikrise. Patientmaterialet (forløbet, risikoen for kroniske lænderygsmerter, træning og kalenderen "
             "for de otte uger) er siden `/info/midtjylland`; kroniske lænderygsmerter følger et andet forløb "
             "(Sundhedsstyrelsens anbefalinger), se kortet med regel S3.", "",
             "| Overgang (kortets titel) | Hvornår | Frist | Forslag på kortet | Regler | Kilde |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {_md(row['title'])} | {_md(row['when'])} | {_md(row['limit']) or '—'} | "
                     f"{_md('; '.join(row['offers'])) or '—'} | {', '.join(row['rules']) or '—'} | "
                     f"{_md('; '.join(row['sources'])) or '—'} |")
    return lines


def build_catalogue(root: Path) -> str:
    """The Markdown catalogue of the artifacts under `root` (the project directory)."""
    root = Path(root)
    data = collect(root)
    conditions = _conditions(root)
    rules = _rule_definitions(root)
    if not rules:  # no rule CodeSystem yet: list the ids the artifacts cite
        rules = [
            {"code": c, "display": "", "source": "", "computable": True, "reason": ""}
            for c in sorted(set(data["implementers"]) | set(data["sources"]))
        ]
    lines = [
        "# Rule catalogue",
        "",
        "Generated by `python -m app.knowledge.catalogue` from `valuesets/`, `questionnaires/` and "
        "`plandefinitions/`; do not edit by hand. For every rule id of the CodeSystem `lbp-rules`: the "
        "artifacts that cite it (`Type/id`, with `#action` for PlanDefinition actions), the applicability "
        "conditions that decide its cards with the case features each reads (the Library declares the "
        "reverse on each feature: `serves-rule`), and the source sentences the artifacts quote. Then every "
        "`assumption` extension, and the rules that are deliberately not computable.",
        "",
        "## Rules",
        "",
    ]
    for rule in rules:
        code = rule["code"]
        head = f"### {code}"
        if rule["display"]:
            head += f" — {_md(rule['display'])}"
        if rule["source"]:
            head += f" ({rule['source']})"
        lines += [head, ""]
        if not rule["computable"]:
            lines += [f"Not computable: {_md(rule['reason'])}", ""]
        found = sorted(data["implementers"].get(code, ()))
        if found:
            lines.append("Implemented by:")
            lines += [f"- `{item}`" for item in found]
        else:
            lines.append("Implemented by: —")
        lines.append("")
        decided = conditions.get(code, [])
        if decided:
            lines.append("Conditions:")
            for entry in decided:
                reads = ", ".join(f"`{name}`" for name in entry.reads) or "—"
                lines.append(f"- `{entry.plan}#{entry.action}`: `{_md(entry.expression)}` — features: {reads}")
            lines.append("")
        for display, original, english in data["sources"].get(code, []):
            lines.append(f"> {_md(original)}")
            if english:
                lines.append(">")
                lines.append(f"> *{_md(english)}*")
            lines.append(">")
            lines.append(f"> — {_md(display)}")
            lines.append("")
    lines += ["## Assumptions", "", "| Artifact | Element | Assumption |", "| --- | --- | --- |"]
    for key, path, text in sorted(data["assumptions"]):
        lines.append(f"| `{key}` | `{path}` | {_md(text)} |")
    lines += ["", "## Rules not computable", "", "| Rule | Reason |", "| --- | --- |"]
    for rule in rules:
        if not rule["computable"]:
            lines.append(f"| {rule['code']} | {_md(rule['reason'])} |")
    lines += ["", "## Audit elements not computable", "",
              "Elements of the source documents (ids as in `docs/coverage.md`) that no rule computes, and why.", "",
              "| Element | What the source asks | Why not computable |", "| --- | --- | --- |"]
    for element, asked, reason in NOT_COMPUTABLE_ELEMENTS:
        lines.append(f"| {element} | {_md(asked)} | {_md(reason)} |")
    lines += _transition_lines(root)
    lines.append("")
    return "\n".join(lines)


def write_served_rules(root: Path) -> list[Path]:
    """Declare on each `Library.parameter` entry the rules its feature serves (derived; one line per rule)."""
    from app.reasoning.rulemap import RULES_SYSTEM, SERVES_RULE, derived_served_rules

    kb = knowledge(root)
    written = []
    for path in sorted((Path(root) / "plandefinitions").glob("Library-*.json")):
        raw = path.read_text(encoding="utf-8")
        resource = json.loads(raw)
        library = kb.artifact(resource, "Library")
        if library is None or not library.features:
            continue
        served = derived_served_rules(kb, library)
        for parameter in resource.get("parameter", []) or []:
            if parameter.get("use") != "out":
                continue
            kept = [e for e in parameter.get("extension", []) or [] if e.get("url") != SERVES_RULE]
            kept += [
                {"url": SERVES_RULE, "valueCoding": {"system": RULES_SYSTEM, "code": rule}}
                for rule in served.get(parameter.get("name", ""), [])
            ]
            if kept:
                parameter["extension"] = kept
            else:
                parameter.pop("extension", None)
        text = json.dumps(resource, ensure_ascii=False, indent=2)
        # one declaration per line: the lists are long and read as a table
        text = re.sub(
            r'\{\n\s*"url": "' + re.escape(SERVES_RULE) + r'",\n\s*"valueCoding": \{\n\s*"system": "([^"]+)",'
            r'\n\s*"code": "([^"]+)"\n\s*\}\n\s*\}',
            lambda m: '{"url": "' + SERVES_RULE + '", "valueCoding": {"system": "' + m.group(1)
            + '", "code": "' + m.group(2) + '"}}',
            text,
        )
        text += "\n" if raw.endswith("\n") else ""
        if text != raw:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    root = Path(argv[0]) if argv else Path(__file__).resolve().parents[2]
    for path in write_served_rules(root):
        print(f"wrote {path}")
    (root / OUTPUT).write_text(build_catalogue(root), encoding="utf-8")
    print(f"wrote {root / OUTPUT}")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
