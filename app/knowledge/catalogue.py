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
    ("Q3", "National patient survey via 1177's form service", "Collected outside the journal, by 1177."),
    ("Q9e", "Patient and staff satisfaction (target 90 %)", "BackUpp names no instrument for satisfaction."),
    ("BU-1", "Actions at set time points of the rehabilitation chain",
     "The BackUpp manual with its flow chart is not among the seeds; only day 28 and six months are stated."),
    ("P2", "Information brochure (Bilaga H) as dialogue support", "Bilaga H is not among the seeds."),
    ("P3b", "Short videos from each sector, exercise videos", "No video content in the seeds; the project makes none."),
    ("DK-9", "Municipal offers differ between municipalities",
     "No list of municipal offers in the seeds; the municipal request carries the hand-over code only."),
    ("SK-13", "Indicators from the Swedish spine register", "Register data outside the journal and the seeds."),
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
