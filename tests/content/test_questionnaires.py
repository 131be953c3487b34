"""Structural checks of the project's questionnaires, answer CodeSystems/ValueSets and scoring fixtures.

These tests read only the artifacts in the repository (questionnaires/, valuesets/, tests/data/scoring/);
they do not need the application's engine. Conventions: docs/artifact-conventions.md.
"""
from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parents[2]
BASE = "https://lbp-pathway.org/fhir"
RULES = f"{BASE}/CodeSystem/lbp-rules"
OBSERVATION_CS = f"{BASE}/CodeSystem/lbp-observation"
LOINC = "http://loinc.org"
LANGS = {"sv", "da", "en"}

TRANSLATION = "http://hl7.org/fhir/StructureDefinition/translation"
ITEM_WEIGHT = "http://hl7.org/fhir/StructureDefinition/itemWeight"
CALCULATED = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-calculatedExpression"
OBSERVATION_EXTRACT = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-observationExtract"
ASSUMPTION = "https://lbp-pathway.org/fhir/StructureDefinition/assumption"
RELATED_ARTIFACT = "http://hl7.org/fhir/StructureDefinition/artifact-relatedArtifact"
CITATION_EN = "https://lbp-pathway.org/fhir/StructureDefinition/citation-en"

QUESTIONNAIRE_IDS = [
    "lbp-red-flags", "lbp-intake", "start-back", "ompsq-sf", "nrs-pain", "rmdq", "eq5d-index",
    "orthopaedic-referral", "discharge-letter", "rehabilitation-plan", "referral-midtjylland",
]
# Project CodeSystems this suite owns (the answer sets of the questionnaires and the shared code lists).
CODESYSTEM_IDS = [
    "lbp-rules", "lbp-card-text", "lbp-observation", "lbp-risk-category", "lbp-sbt-agreement", "lbp-sbt-bothersomeness",
    "lbp-ompsq-duration", "lbp-scale-0-10", "lbp-yes-no", "lbp-work-situation", "lbp-work-factor",
    "lbp-treatment-tried", "lbp-mr-contraindication", "lbp-measurement-occasion", "lbp-eq5d-version",
    "lbp-mri-type", "lbp-care-recipient", "lbp-surgery-decision", "lbp-municipal-offer", "lbp-municipal-effort",
]
VALUESET_IDS = [c for c in CODESYSTEM_IDS if c != "lbp-rules"] + [
    "lbp-ompsq-risk", "lbp-referral-indication", "lbp-rehab-intervention",
]

# Every rule id of the clinical specification (pathway digest).
def _ids(prefix: str, first: int, last: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(first, last + 1)]


RULE_IDS = (
    _ids("S", 1, 5) + _ids("T", 1, 7) + _ids("RF", 1, 9) + _ids("YF", 1, 6) + ["BF1"] + _ids("A", 1, 4)
    + _ids("I", 0, 6) + _ids("B", 1, 5) + _ids("M", 1, 6) + ["B6", "B7", "R0"] + _ids("RA", 1, 4)
    + _ids("RN", 1, 7) + ["RR1", "RR2", "RD1", "RC1"] + _ids("Q", 1, 10) + _ids("P", 1, 3)
)

# R4 (4.0.1) element names, for the parts of the resources the suite writes.
QUESTIONNAIRE_KEYS = {
    "resourceType", "id", "meta", "implicitRules", "language", "text", "contained", "extension",
    "modifierExtension", "url", "identifier", "version", "name", "title", "derivedFrom", "status",
    "experimental", "subjectType", "date", "publisher", "contact", "description", "useContext",
    "jurisdiction", "purpose", "copyright", "approvalDate", "lastReviewDate", "effectivePeriod", "code",
    "item",
}
ITEM_KEYS = {
    "id", "extension", "modifierExtension", "linkId", "definition", "code", "prefix", "text", "type",
    "enableWhen", "enableBehavior", "required", "repeats", "readOnly", "maxLength", "answerValueSet",
    "answerOption", "initial", "item",
}
ITEM_TYPES = {
    "group", "display", "boolean", "decimal", "integer", "date", "dateTime", "time", "string", "text", "url",
    "choice", "open-choice", "attachment", "reference", "quantity",
}
ENABLE_WHEN_OPERATORS = {"exists", "=", "!=", ">", "<", ">=", "<="}
ENABLE_WHEN_ANSWERS = {
    "answerBoolean", "answerDecimal", "answerInteger", "answerDate", "answerDateTime", "answerTime",
    "answerString", "answerCoding", "answerQuantity", "answerReference",
}
ANSWER_OPTION_VALUES = {
    "valueInteger", "valueDate", "valueTime", "valueString", "valueCoding", "valueReference",
}

MAX_LENGTH_TYPES = {"boolean", "decimal", "integer", "string", "text", "url", "open-choice"}

RISK_CODES = {"low", "medium", "high"}
# Items whose weights run against the marked number (published ÖMPSQ short form: items 3, 4 and 8).
OMPSQ_REVERSED = {"ompsq-3", "ompsq-4", "ompsq-8"}
OMPSQ_FORWARD = {"ompsq-2", "ompsq-5", "ompsq-6", "ompsq-7", "ompsq-9", "ompsq-10"}

# Fields of the Region Skåne referral template (Bilaga 2) and the second opinion (RR2), by linkId.
REFERRAL_FIELDS = {
    "date": "Datum", "personal-identity-number": "Personnummer", "name": "Namn", "diagnosis": "Diagnos",
    "question": "Frågeställning/önskemål", "mri-type": "Aktuell MRT ländryggsöversikt/konventionell MRT",
    "mri-date": "ej äldre än 1 år", "mri-report-attached": "Svarskopia",
    "other-diseases-medication": "Övriga sjukdomar och aktuell medicinering",
    "pain-character": "Smärta/karaktär",
    "radiation": "utstrålning", "location": "lokalisation", "duration": "duration",
    "previous-back-surgery": "tidigare ryggopererad", "previous-pain-clinic": "tidigare smärtklinik",
    "heredity": "hereditet", "other-diseases-cancer": "andra sjukdomar (cancer)", "trauma": "trauma",
    "inflammation": "inflammation/t.ex. RA", "psychosocial": "Psykosocialt av intresse",
    "surgery-willing": "Är patienten beredd att genomgå ryggoperation?", "status": "Status",
    "smoking": "Rökning", "overweight": "Övervikt",
    "treatment-given": "Vilken typ av behandling har patienten fått?",
    "has-exercised": "Har patienten tränat?", "exercise-frequency-duration": "Hur ofta/hur länge?",
    "referring-physician": "Remitterande läkare", "signature": "Signatur", "workplace": "Arbetsplats",
    "second-opinion": "second opinion (RR2)",
}

# The linked items the engine's case features read (docs/artifact-conventions.md), with answer types.
LINKED_ITEMS = {
    "lbp-red-flags": {link_id: "boolean" for link_id in _ids("RF", 1, 9) + _ids("RA", 1, 4)},
    "lbp-intake": {
        "onset-date": "date", "pain-duration-weeks": "integer", "leg-pain-dominant": "boolean",
        "radiation-below-knee": "boolean", "previous-episodes": "boolean", "sick-leave": "boolean",
        "sick-leave-weeks": "integer", "work-situation": "choice", "work-factors": "choice",
        "tried-treatments": "choice", "mr-contraindication": "boolean",
    },
    "nrs-pain": {"nrs": "integer"},
}
REPEATING_LINKED_ITEMS = {("lbp-intake", "work-factors"), ("lbp-intake", "tried-treatments")}

# Items extracted as Observations and the code each must carry.
EXTRACTED = {
    "start-back": {code: (OBSERVATION_CS, code) for code in ("sbt-total", "sbt-psychosocial", "sbt-risk")},
    "ompsq-sf": {code: (OBSERVATION_CS, code) for code in ("ompsq-sf-total", "ompsq-sf-risk")},
    "rmdq": {"rmdq-total": (OBSERVATION_CS, "rmdq-total")},
    "eq5d-index": {code: (OBSERVATION_CS, code) for code in ("eq5d-index", "eq-vas")},
    "nrs-pain": {"nrs": (LOINC, "72514-3")},
}
# External codes the questionnaires may use, and nothing else outside the project's CodeSystems.
KNOWN_EXTERNAL_CODES = {(LOINC, "72514-3")}


# ---------------------------------------------------------------------------------------------- helpers
def load(relpath: str) -> dict[str, Any]:
    return json.loads((ROOT / relpath).read_text(encoding="utf-8"))


def questionnaire(qid: str) -> dict[str, Any]:
    return load(f"questionnaires/Questionnaire-{qid}.json")


def codesystem(cs_id: str) -> dict[str, Any]:
    return load(f"valuesets/CodeSystem-{cs_id}.json")


def valueset(vs_id: str) -> dict[str, Any]:
    return load(f"valuesets/ValueSet-{vs_id}.json")


def items(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for it in node.get("item", []):
        yield it
        yield from items(it)


def ext_values(element: dict[str, Any], url: str) -> list[Any]:
    out = []
    for e in element.get("extension", []):
        if e.get("url") == url:
            out.extend(v for k, v in e.items() if k.startswith("value"))
    return out


def translations(element: dict[str, Any], field: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in element.get("_" + field, {}).get("extension", []):
        if e.get("url") != TRANSLATION:
            continue
        parts = {p["url"]: p for p in e.get("extension", [])}
        lang = parts.get("lang", {}).get("valueCode")
        assert lang not in out, f"duplicate translation {lang} of {field}"
        out[lang] = parts.get("content", {}).get("valueString", "")
    return out


def translatable_texts(q: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], str]]:
    """(where, element, field) for every text shown to people."""
    yield "title", q, "title"
    yield "description", q, "description"
    for it in items(q):
        yield f"item {it['linkId']}", it, "text"
        for i, opt in enumerate(it.get("answerOption", [])):
            if "valueCoding" in opt:
                yield f"item {it['linkId']} answerOption[{i}]", opt["valueCoding"], "display"


def coding_key(c: dict[str, Any]) -> tuple[str, str]:
    return c["system"], c["code"]


def offered_codings(it: dict[str, Any]) -> set[tuple[str, str]]:
    return {coding_key(o["valueCoding"]) for o in it.get("answerOption", []) if "valueCoding" in o}


def calculated_expression(it: dict[str, Any]) -> str | None:
    values = ext_values(it, CALCULATED)
    return values[0]["expression"] if values else None


def codings(q: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for c in q.get("code", []):
        yield "root code", c
    for it in items(q):
        for c in it.get("code", []):
            yield f"item {it['linkId']} code", c
        for opt in it.get("answerOption", []):
            if "valueCoding" in opt:
                yield f"item {it['linkId']} answerOption", opt["valueCoding"]
        for ew in it.get("enableWhen", []):
            if "answerCoding" in ew:
                yield f"item {it['linkId']} enableWhen", ew["answerCoding"]


def concepts_by_system() -> dict[str, dict[str, dict[str, Any]]]:
    out = {}
    for path in sorted((ROOT / "valuesets").glob("CodeSystem-*.json")):
        cs = json.loads(path.read_text(encoding="utf-8"))

        def walk(concepts: list[dict[str, Any]], into: dict[str, dict[str, Any]]) -> None:
            for c in concepts:
                into[c["code"]] = c
                walk(c.get("concept", []), into)

        table: dict[str, dict[str, Any]] = {}
        walk(cs.get("concept", []), table)
        out[cs["url"]] = table
    return out


def fixtures() -> list[Path]:
    return sorted((ROOT / "tests/data/scoring").glob("*.json"))


# ------------------------------------------------------------------------------------ identity and shape
ALL_ARTIFACTS = (
    [f"questionnaires/Questionnaire-{q}.json" for q in QUESTIONNAIRE_IDS]
    + [f"valuesets/CodeSystem-{c}.json" for c in CODESYSTEM_IDS]
    + [f"valuesets/ValueSet-{v}.json" for v in VALUESET_IDS]
)


@pytest.mark.parametrize("relpath", ALL_ARTIFACTS)
def test_artifact_identity_follows_the_conventions(relpath: str) -> None:
    raw = (ROOT / relpath).read_text(encoding="utf-8")
    res = json.loads(raw)
    rtype, rid = Path(relpath).stem.split("-", 1)
    assert res["resourceType"] == rtype and res["id"] == rid
    assert res["url"] == f"{BASE}/{rtype}/{rid}"
    assert res["version"] == "0.1.0"
    assert res["status"] in ("active", "draft")
    assert res["publisher"] == "LBP Pathway project"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", res["date"])
    assert res["language"] in LANGS
    assert raw == json.dumps(res, ensure_ascii=False, indent=2) + "\n", "2-space indented UTF-8 JSON"


@pytest.mark.parametrize("qid", QUESTIONNAIRE_IDS)
def test_questionnaire_uses_r4_elements_and_invariants(qid: str) -> None:
    q = questionnaire(qid)
    assert {k.lstrip("_") for k in q} <= QUESTIONNAIRE_KEYS
    assert q["subjectType"] == ["Patient"]
    for it in items(q):
        where = f"{qid} {it['linkId']}"
        keys = {k.lstrip("_") for k in it}
        assert keys <= ITEM_KEYS, f"{where}: {keys - ITEM_KEYS}"
        assert it["type"] in ITEM_TYPES, where
        if it["type"] == "group":  # que-1
            assert it.get("item"), f"{where}: group without items"
        if it["type"] == "display":  # que-6, que-9, display items carry no answers or children
            assert not {"required", "repeats", "readOnly", "item", "answerOption"} & set(it), where
        if "answerOption" in it:  # que-4, que-5
            assert it["type"] in ("choice", "open-choice") and "answerValueSet" not in it, where
            for opt in it["answerOption"]:
                assert len(set(opt) & ANSWER_OPTION_VALUES) == 1, where
                assert set(opt) <= ANSWER_OPTION_VALUES | {"extension", "initialSelected"}, where
        if "maxLength" in it:  # que-10
            assert it["type"] in MAX_LENGTH_TYPES, where
        for ew in it.get("enableWhen", []):
            assert set(ew) == {"question", "operator"} | (set(ew) & ENABLE_WHEN_ANSWERS), where
            assert len(set(ew) & ENABLE_WHEN_ANSWERS) == 1, where
            assert ew["operator"] in ENABLE_WHEN_OPERATORS, where
            if ew["operator"] == "exists":  # que-7
                assert "answerBoolean" in ew, where
        if len(it.get("enableWhen", [])) > 1:  # que-12
            assert it.get("enableBehavior") in ("all", "any"), where
        assert it.get("enableBehavior") is None or it.get("enableWhen"), where


@pytest.mark.parametrize("qid", QUESTIONNAIRE_IDS)
def test_linkids_are_unique(qid: str) -> None:
    link_ids = [it["linkId"] for it in items(questionnaire(qid))]
    assert len(link_ids) == len(set(link_ids))


@pytest.mark.parametrize("qid", QUESTIONNAIRE_IDS)
def test_every_enable_when_points_at_an_existing_question_with_that_answer(qid: str) -> None:
    by_id = {it["linkId"]: it for it in items(questionnaire(qid))}
    for it in by_id.values():
        for ew in it.get("enableWhen", []):
            target = by_id.get(ew["question"])
            assert target is not None, f"{it['linkId']} -> {ew['question']}"
            assert target["linkId"] != it["linkId"]
            assert target["type"] not in ("group", "display")
            if "answerBoolean" in ew and ew["operator"] != "exists":
                assert target["type"] == "boolean", it["linkId"]
            if "answerCoding" in ew:
                assert coding_key(ew["answerCoding"]) in offered_codings(target), it["linkId"]


@pytest.mark.parametrize("qid", QUESTIONNAIRE_IDS)
def test_every_text_has_swedish_danish_and_english(qid: str) -> None:
    q = questionnaire(qid)
    primary = q["language"]
    for where, element, field in translatable_texts(q):
        text = element.get(field)
        assert text and text.strip(), f"{where}: no {field}"
        if not any(ch.isalpha() for ch in text):
            continue  # language-neutral (digits), no translation needed
        got = translations(element, field)
        assert set(got) == LANGS - {primary}, f"{where}: translations {sorted(got)}"
        assert all(v.strip() for v in got.values()), where


@pytest.mark.parametrize("cs_id", CODESYSTEM_IDS)
def test_codesystem_concepts_have_designations(cs_id: str) -> None:
    cs = codesystem(cs_id)
    assert cs["caseSensitive"] is True and cs["content"] == "complete"
    assert cs["count"] == len(cs["concept"])
    if "valueSet" in cs:
        assert (ROOT / f"valuesets/ValueSet-{cs['valueSet'].rsplit('/', 1)[1]}.json").exists(), cs["valueSet"]
    assert set(translations(cs, "title")) == LANGS - {cs["language"]}
    assert set(translations(cs, "description")) == LANGS - {cs["language"]}
    for c in cs["concept"]:
        langs = {d["language"] for d in c.get("designation", [])}
        if any(ch.isalpha() for ch in c["display"]):
            assert "sv" in langs, c["code"]
            if cs_id != "lbp-rules":
                assert "da" in langs, c["code"]


# ------------------------------------------------------------------------------------------ rule ids
def test_rule_codesystem_has_every_digest_rule_with_its_properties() -> None:
    cs = codesystem("lbp-rules")
    codes = [c["code"] for c in cs["concept"]]
    assert codes == RULE_IDS
    declared = {p["code"]: p["type"] for p in cs["property"]}
    assert declared == {
        "source": "string", "computable": "boolean", "not-computable-reason": "string", "flag-type": "code",
        "role": "code",
    }
    flag_types = {c["code"] for c in codesystem("lbp-flag-type")["concept"]}
    for c in cs["concept"]:
        assert c["display"] and c["definition"], c["code"]
        props = {p["code"]: p for p in c["property"]}
        assert set(props["source"]["valueString"].split(",")) <= {"SE", "SK", "BU", "DK"}, c["code"]
        computable = props["computable"]["valueBoolean"]
        assert ("not-computable-reason" in props) == (not computable), c["code"]
        if "flag-type" in props:
            assert props["flag-type"]["valueCode"] in flag_types, c["code"]
        # safety rules (red flags, acute signs, imaging, medication cautions) are data, not code
        assert ("role" in props) == (c["code"][:2] in ("RF", "RA") or c["code"][0] in "IM"), c["code"]
        if "role" in props:
            assert props["role"]["valueCode"] == "safety", c["code"]
    not_computable = {c["code"] for c in cs["concept"]
                      if not next(p for p in c["property"] if p["code"] == "computable")["valueBoolean"]}
    assert {"Q3"} <= not_computable


@pytest.mark.parametrize("qid", QUESTIONNAIRE_IDS)
def test_questionnaire_names_its_rules_and_sources(qid: str) -> None:
    q = questionnaire(qid)
    rules = {c["code"] for c in codesystem("lbp-rules")["concept"]}
    assert q["code"], "rule ids on the root code"
    assert all(c["system"] == RULES and c["code"] in rules for c in q["code"])
    cited = [v for v in ext_values(q, RELATED_ARTIFACT) if v["type"] == "citation"]
    assert cited, "at least one citation of a seed document"
    root_rules = {c["code"] for c in q["code"]}
    for ra in cited:
        assert ra["label"] in root_rules, f"citation of {ra['label']}, a rule the questionnaire does not name"
        assert ra["display"] and ra["citation"]
        assert ext_values(ra.get("_citation", {}), CITATION_EN), "English rendering of the cited sentence"
    assert q["jurisdiction"]


@pytest.mark.parametrize("qid", QUESTIONNAIRE_IDS)
def test_codes_used_exist_in_the_shipped_codesystems(qid: str) -> None:
    systems = concepts_by_system()
    for where, c in codings(questionnaire(qid)):
        key = (c["system"], c["code"])
        if c["system"].startswith(BASE):
            concept = systems.get(c["system"], {}).get(c["code"])
            assert concept is not None, f"{where}: {key} not in a shipped CodeSystem"
            if "display" in c:
                allowed = {concept["display"]} | {d["value"] for d in concept.get("designation", [])}
                assert c["display"] in allowed, f"{where}: display {c['display']!r}"
        else:
            assert key in KNOWN_EXTERNAL_CODES, f"{where}: external code {key}"


# ------------------------------------------------------------------------------------------ scoring
def weights(it: dict[str, Any]) -> dict[str, Decimal]:
    out = {}
    for opt in it.get("answerOption", []):
        w = ext_values(opt, ITEM_WEIGHT)
        assert len(w) == 1, f"{it['linkId']}: option {opt['valueCoding']['code']} has no single itemWeight"
        out[opt["valueCoding"]["code"]] = Decimal(str(w[0]))
    return out


def scored_link_ids(q: dict[str, Any]) -> set[str]:
    """Items whose answers a calculatedExpression sums through weight()."""
    out = set()
    for it in items(q):
        expression = calculated_expression(it)
        if expression and "weight()" in expression:
            out |= set(re.findall(r"'([^']+)'", expression)) - RISK_CODES
    return out


@pytest.mark.parametrize("qid", QUESTIONNAIRE_IDS)
def test_every_scored_choice_item_has_weights_on_every_option(qid: str) -> None:
    q = questionnaire(qid)
    by_id = {it["linkId"]: it for it in items(q)}
    for link_id in scored_link_ids(q):
        it = by_id[link_id]
        if it.get("readOnly"):
            continue
        assert it["type"] == "choice" and it.get("required") is True, link_id
        assert len(weights(it)) == len(it["answerOption"]), link_id


def test_start_back_weights_follow_the_published_scoring() -> None:
    by_id = {it["linkId"]: it for it in items(questionnaire("start-back"))}
    for i in range(1, 9):
        assert weights(by_id[f"sbt-{i}"]) == {"disagree": 0, "agree": 1}
    assert weights(by_id["sbt-9"]) == {
        "not-at-all": 0, "slightly": 0, "moderately": 0, "very-much": 1, "extremely": 1}


def test_ompsq_reversed_items_really_are_reversed() -> None:
    by_id = {it["linkId"]: it for it in items(questionnaire("ompsq-sf"))}
    assert list(weights(by_id["ompsq-1"]).values()) == list(range(1, 11)), "duration scores 1-10 in order"
    for link_id in OMPSQ_FORWARD | OMPSQ_REVERSED:
        w = weights(by_id[link_id])
        assert set(w) == {str(n) for n in range(11)}, link_id
        for code, weight in w.items():
            expected = 10 - int(code) if link_id in OMPSQ_REVERSED else int(code)
            assert weight == expected, f"{link_id}: answer {code} weighs {weight}"
    minimum = sum(min(weights(by_id[f"ompsq-{n}"]).values()) for n in range(1, 11))
    maximum = sum(max(weights(by_id[f"ompsq-{n}"]).values()) for n in range(1, 11))
    assert (minimum, maximum) == (1, 100)


def test_rmdq_has_24_yes_no_items_scoring_yes() -> None:
    q = questionnaire("rmdq")
    scored = [it for it in items(q) if re.fullmatch(r"rmdq-\d+", it["linkId"])]
    assert [it["linkId"] for it in scored] == [f"rmdq-{i}" for i in range(1, 25)]
    assert all(weights(it) == {"yes": 1, "no": 0} for it in scored)


@pytest.mark.parametrize("qid", QUESTIONNAIRE_IDS)
def test_calculated_items_are_read_only_and_referenced_items_exist(qid: str) -> None:
    q = questionnaire(qid)
    link_ids = {it["linkId"] for it in items(q)}
    for it in items(q):
        expression = calculated_expression(it)
        if expression is None:
            continue
        assert it.get("readOnly") is True, it["linkId"]
        assert ext_values(it, CALCULATED)[0]["language"] == "text/fhirpath"
        assert set(re.findall(r"linkId in \(([^)]*)\)", expression)), it["linkId"]
        referenced = set(re.findall(r"'([^']+)'", expression)) - RISK_CODES
        assert referenced <= link_ids, f"{it['linkId']}: {referenced - link_ids}"
        if it["type"] == "choice":  # a risk category: every code it can yield is an option
            yielded = set(re.findall(r"'(low|medium|high)'", expression))
            offered = {o["valueCoding"]["code"] for o in it["answerOption"]}
            assert yielded == offered, it["linkId"]


@pytest.mark.parametrize("qid", sorted(EXTRACTED))
def test_extracted_items_carry_their_observation_code(qid: str) -> None:
    q = questionnaire(qid)
    extracted = {it["linkId"]: it for it in items(q) if True in ext_values(it, OBSERVATION_EXTRACT)}
    assert set(extracted) == set(EXTRACTED[qid])
    for link_id, (system, code) in EXTRACTED[qid].items():
        assert [(c["system"], c["code"]) for c in extracted[link_id]["code"]] == [(system, code)]


@pytest.mark.parametrize("qid", sorted(LINKED_ITEMS))
def test_linked_items_the_case_features_read_exist_with_their_types(qid: str) -> None:
    by_id = {it["linkId"]: it for it in items(questionnaire(qid))}
    for link_id, answer_type in LINKED_ITEMS[qid].items():
        assert by_id[link_id]["type"] == answer_type, link_id
        assert by_id[link_id].get("repeats", False) == ((qid, link_id) in REPEATING_LINKED_ITEMS), link_id


def test_nrs_is_bounded_0_to_10() -> None:
    nrs = next(it for it in items(questionnaire("nrs-pain")) if it["linkId"] == "nrs")
    assert ext_values(nrs, "http://hl7.org/fhir/StructureDefinition/minValue") == [0]
    assert ext_values(nrs, "http://hl7.org/fhir/StructureDefinition/maxValue") == [10]


# ------------------------------------------------------------------------------------- instruments
@pytest.mark.parametrize("qid,holder", [("start-back", "Keele University"), ("ompsq-sf", "Linton"),
                                         ("rmdq", "Roland"), ("eq5d-index", "EuroQol")])
def test_copyright_notice_names_the_rights_holder(qid: str, holder: str) -> None:
    assert holder in questionnaire(qid).get("copyright", "")


@pytest.mark.parametrize("qid", ["start-back", "ompsq-sf", "rmdq"])
def test_translated_instruments_say_the_wording_must_be_checked(qid: str) -> None:
    q = questionnaire(qid)
    english = q["description"] if q["language"] == "en" else translations(q, "description")["en"]
    assert "must be checked" in english


def test_eq5d_records_only_the_index_and_vas_and_embeds_no_instrument_questions() -> None:
    q = questionnaire("eq5d-index")
    assert {it["linkId"] for it in items(q)} == {
        "occasion", "instructions", "eq5d-version", "eq5d-value-set", "eq5d-index", "eq-vas"}
    by_id = {it["linkId"]: it for it in items(q)}
    assert by_id["eq5d-index"]["type"] == "decimal" and by_id["eq-vas"]["type"] == "integer"
    dimension_words = [
        "mobility", "self-care", "usual activities", "pain / discomfort", "pain/discomfort",
        "anxiety / depression", "anxiety/depression", "rörlighet", "hygien", "huvudsakliga aktiviteter",
        "smärtor/besvär", "oro/nedstämdhet", "bevægelighed", "personlig pleje", "sædvanlige aktiviteter",
        "smerter/ubehag", "angst/depression", "best health you can imagine", "bästa tänkbara hälsotillstånd",
        "bedst tænkelige helbred", "your health today",
    ]
    texts = [it.get("text", "") for it in items(q)]
    texts += [v for it in items(q) for v in translations(it, "text").values()]
    texts += [o["valueCoding"].get("display", "") for it in items(q) for o in it.get("answerOption", [])]
    for text in texts:
        assert not any(w in text.lower() for w in dimension_words), text
    assert "not reproduced" in translations(q, "description")["en"]


def test_referral_has_every_field_of_the_skane_template() -> None:
    q = questionnaire("orthopaedic-referral")
    link_ids = {it["linkId"] for it in items(q)}
    assert set(REFERRAL_FIELDS) <= link_ids, set(REFERRAL_FIELDS) - link_ids
    by_id = {it["linkId"]: it for it in items(q)}
    assert [c["code"] for c in by_id["second-opinion"]["code"]] == ["RR2"]
    assert {c["code"] for c in q["code"]} >= {"RC1", "RR2"}


@pytest.mark.parametrize("qid", QUESTIONNAIRE_IDS)
def test_assumptions_say_what_was_chosen(qid: str) -> None:
    q = questionnaire(qid)
    for element in [q, *items(q)]:
        for text in ext_values(element, ASSUMPTION):
            assert isinstance(text, str) and len(text) > 40


# -------------------------------------------------------------------------------------- valuesets
@pytest.mark.parametrize("vs_id", VALUESET_IDS)
def test_valueset_expansion_matches_its_compose(vs_id: str) -> None:
    vs = valueset(vs_id)
    systems = concepts_by_system()
    members = []
    for inc in vs["compose"]["include"]:
        table = systems[inc["system"]]
        codes = [c["code"] for c in inc["concept"]] if "concept" in inc else list(table)
        members += [(inc["system"], code) for code in codes]
        for c in inc.get("concept", []):
            assert c["display"] == table[c["code"]]["display"]
    contains = vs["expansion"]["contains"]
    assert [(c["system"], c["code"]) for c in contains] == members
    assert vs["expansion"]["total"] == len(contains)
    uuid_pattern = r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    assert re.fullmatch(uuid_pattern, vs["expansion"]["identifier"])
    for c in contains:
        concept = systems[c["system"]][c["code"]]
        assert c["display"] == concept["display"]
        assert c.get("designation", []) == concept.get("designation", [])


# -------------------------------------------------------------------------------- scoring fixtures
@pytest.mark.parametrize("path", fixtures(), ids=lambda p: p.stem)
def test_scoring_fixture_answers_exist_in_its_questionnaire(path: Path) -> None:
    fx = json.loads(path.read_text(encoding="utf-8"))
    assert set(fx) == {"questionnaire", "description", "response", "expected"}
    q = questionnaire(fx["questionnaire"])
    assert fx["response"]["resourceType"] == "QuestionnaireResponse"
    assert fx["response"]["questionnaire"] == q["url"]
    by_id = {it["linkId"]: it for it in items(q)}
    for answered in items(fx["response"]):
        it = by_id[answered["linkId"]]
        assert not it.get("readOnly"), "fixtures leave calculated items to the engine"
        for answer in answered.get("answer", []):
            if "valueCoding" in answer:
                assert coding_key(answer["valueCoding"]) in offered_codings(it)
    assert set(fx["expected"]) <= set(by_id)


def test_scoring_fixtures_cover_the_boundaries() -> None:
    loaded = [json.loads(p.read_text(encoding="utf-8")) for p in fixtures()]
    seen = {(f["questionnaire"], k, json.dumps(v)) for f in loaded for k, v in f["expected"].items()}
    for q, k, v in [("start-back", "sbt-total", 3), ("start-back", "sbt-total", 4),
                    ("start-back", "sbt-psychosocial", 3), ("start-back", "sbt-psychosocial", 4),
                    ("start-back", "sbt-risk", "low"), ("start-back", "sbt-risk", "medium"),
                    ("start-back", "sbt-risk", "high"), ("ompsq-sf", "ompsq-sf-total", 49),
                    ("ompsq-sf", "ompsq-sf-total", 50), ("rmdq", "rmdq-total", 0), ("rmdq", "rmdq-total", 24),
                    ("nrs-pain", "nrs", 0), ("nrs-pain", "nrs", 10)]:
        assert (q, k, json.dumps(v)) in seen, (q, k, v)


def _with_answer_weights(q: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """Copy of the response whose answer codings carry the itemWeight of their item's answerOption (SDC)."""
    by_id = {it["linkId"]: it for it in items(q)}
    out = copy.deepcopy(response)
    for answered in items(out):
        options = {o["valueCoding"]["code"]: o for o in by_id[answered["linkId"]].get("answerOption", [])
                   if "valueCoding" in o}
        for answer in answered.get("answer", []):
            coding = answer.get("valueCoding")
            if coding and coding["code"] in options:
                for w in ext_values(options[coding["code"]], ITEM_WEIGHT):
                    coding.setdefault("extension", []).append({"url": ITEM_WEIGHT, "valueDecimal": w})
    return out


def _weight(codings: list[Any]) -> list[Any]:
    return [w for c in codings if isinstance(c, dict) for w in ext_values(c, ITEM_WEIGHT)]


@pytest.mark.parametrize("path", fixtures(), ids=lambda p: p.stem)
def test_calculated_expressions_reproduce_the_hand_computed_values(path: Path) -> None:
    import fhirpathpy as fhirpath
    from fhirpathpy.models import models

    fx = json.loads(path.read_text(encoding="utf-8"))
    q = questionnaire(fx["questionnaire"])
    response = _with_answer_weights(q, fx["response"])
    by_id = {it["linkId"]: it for it in items(q)}
    options = {"userInvocationTable": {"weight": {"fn": _weight, "arity": {0: []}}}}
    for link_id, expected in fx["expected"].items():
        expression = calculated_expression(by_id[link_id])
        if expression is None:  # an entered value, e.g. NRS: the answer is what gets extracted
            got = [a for it in items(fx["response"]) if it["linkId"] == link_id for a in it["answer"]]
            assert [a.get("valueInteger", a.get("valueDecimal")) for a in got] == [expected]
            continue
        result = fhirpath.evaluate(response, expression, {"resource": response}, models["r4"], options)
        if expected is None:
            assert result == [], link_id
        else:
            assert len(result) == 1 and result[0] == expected, f"{link_id}: {result} != {expected}"


# ------------------------------------------------------------------------------ project validation
@pytest.mark.parametrize("relpath", ALL_ARTIFACTS)
def test_artifact_passes_the_project_validator(relpath: str) -> None:
    from app.validation import validate_resource

    issues = validate_resource(load(relpath))

    def severity(issue: Any) -> str:
        value = issue.get("severity") if isinstance(issue, dict) else getattr(issue, "severity", "")
        return str(value).lower()

    errors = [i for i in issues if severity(i).endswith(("error", "fatal"))]
    assert errors == [], errors
