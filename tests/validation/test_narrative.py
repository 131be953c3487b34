"""htmlChecks(): the narrative's XHTML rules (txt-1) and non-empty content (txt-2)."""
from __future__ import annotations

import pytest

from app.validation import validate_resource
from app.validation.narrative import html_checks, narrative_problems

XHTML = 'xmlns="http://www.w3.org/1999/xhtml"'


def test_basic_formatting_tables_links_and_images_pass():
    div = (f'<div {XHTML}><h2 title="t">Smärta</h2><p style="color: red">NRS <b>7</b><br/>'
           '<a href="#x" name="y">link</a></p><table border="1"><tr><td colspan="2">c</td></tr></table>'
           '<img src="#pic" alt="chart"/><ul><li>one</li></ul></div>')
    assert narrative_problems(div) == []
    assert html_checks(div)


@pytest.mark.parametrize("div, fragment", [
    (f'<div {XHTML}><script>alert(1)</script>x</div>', "<script>"),
    (f'<div {XHTML}><p onclick="steal()">x</p></div>', "event handler onclick"),
    (f'<div {XHTML}><form><input/></form>x</div>', "<form>"),
    (f'<div {XHTML}><a href="javascript:alert(1)">x</a></div>', "script URL"),
    (f'<div {XHTML}><iframe src="http://example.org"/>x</div>', "<iframe>"),
    (f'<div {XHTML}><font color="red">x</font></div>', "deprecated elements"),
    (f'<div {XHTML}><p data-x="1">x</p></div>', "attribute data-x"),
    ('<div>x</div>', "XHTML namespace"),
    (f'<p {XHTML}>x</p>', "single <div>"),
    (f'<div {XHTML}><p>x</div>', "not well-formed"),
    ('<!DOCTYPE div><div>x</div>', "DOCTYPE"),
])
def test_what_the_narrative_rules_forbid_is_reported_as_txt_1(div, fragment):
    problems = narrative_problems(div)
    assert problems and {key for key, _ in problems} == {"txt-1"}
    assert any(fragment in text for _, text in problems), problems
    assert not html_checks(div)


def test_whitespace_only_narrative_is_txt_2():
    assert narrative_problems(f'<div {XHTML}>  \n </div>') == [
        ("txt-2", "The narrative must have some non-whitespace content")]
    assert narrative_problems(f'<div {XHTML}><img src="#a" alt=""/></div>') == []


def test_the_invariant_layer_reports_txt_1_at_the_div():
    patient = {"resourceType": "Patient",
               "text": {"status": "generated", "div": f'<div {XHTML}><script>x()</script>Anna</div>'}}
    issues = [i for i in validate_resource(patient, check_rules=True) if i.text.startswith("txt-1")]
    assert [(i.severity, i.expression) for i in issues] == [("error", ["Patient.text.div"])]
    patient["text"]["div"] = f'<div {XHTML}>  </div>'
    issues = [i for i in validate_resource(patient, check_rules=True) if i.text.startswith("txt-2")]
    assert [(i.severity, i.expression) for i in issues] == [("warning", ["Patient.text.div"])]
