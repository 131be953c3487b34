"""Evaluation problems during a Measure evaluation are counted and reported in words, never dropped."""
from __future__ import annotations

from app.measures.report import VariantReport
from app.reasoning import evaluate_features, patient_context
from tests.measures.conftest import AS_OF, Rec, evaluate


def test_a_case_feature_that_fails_is_tallied_and_the_report_says_so(kb):
    _, ev = evaluate(kb, ["q2-risk-screening-recorded"], [Rec("a")])
    assert ev.tally.issues() == []
    record = Rec("b").resources
    context = patient_context(record, subject=record[0], today=AS_OF, terminology=kb.terminology,
                              fail_features=["newVisitDate"])
    ev._tally_feature_issues(evaluate_features(kb, ev.library, context, only=["newVisitDate"]))
    texts = [i.text for i in ev.tally.issues()]
    assert texts and all(t.endswith("(1 patient)") for t in texts)
    assert any("newVisitDate" in t for t in texts)
    assert VariantReport([], ev, [], "en").issues() == texts
