"""$apply gives the same CarePlan whether each case feature is computed when a rule first reads it or every feature
the hook's rules name is computed first: every variant, every reference record, every hook, with no failure and with a
forced failure of a red flag, of the scope and of the pain duration (what was read, and so what is marked, is the
same whenever the features are computed)."""
from __future__ import annotations

import pytest

from tests.proof import figures
from tests.proof.model import LIBRARY, knowledge, variants
from tests.proof.records import apply, reference_records
from tests.proof.test_monotonicity import drafts_for

HOOKS = ("patient-view", "order-select", "order-sign")
STAMPS = ("authoredOn", "created")  # the wall-clock time of the call


def _unstamped(value):
    if isinstance(value, dict):
        return {k: _unstamped(v) for k, v in value.items() if k not in STAMPS}
    if isinstance(value, list):
        return [_unstamped(v) for v in value]
    return value


def _rule_issues(issues) -> list[str]:
    return sorted(i.text for i in issues if not i.text.startswith("Library/"))


def _feature_issues(issues) -> set[str]:
    return {i.text for i in issues if i.text.startswith("Library/")}


FAILING = ((), ("redFlagRf4",), ("inScope",), ("painDurationDays",))


@pytest.mark.parametrize("variant", list(variants()))
def test_lazy_apply_equals_eager_apply(variant):
    kb = knowledge()
    declared = {f.name for f in kb.artifact(LIBRARY, "Library").features}
    assert all(set(fail) <= declared for fail in FAILING)
    pathway = variants()[variant]["pathway"]
    differ = []
    for name, record in reference_records().items():
        for hook in HOOKS:
            drafts = drafts_for(record, "order-sign" if hook != "patient-view" else hook)
            for fail in FAILING:
                lazy, lazy_issues = apply(kb, pathway, record, hook, drafts, fail_features=fail)
                eager, eager_issues = apply(kb, pathway, record, hook, drafts, fail_features=fail,
                                            eager_features=True)
                figures.count("lazy = eager: record x hook x forced failure ($apply pairs)")
                # a feature's issue arrives when it is computed: eager computes features no rule reaches, so it may
                # say more about features (a forced feature that nothing reads never fails on demand)
                if (_unstamped(lazy) != _unstamped(eager) or _rule_issues(lazy_issues) != _rule_issues(eager_issues)
                        or not _feature_issues(lazy_issues) <= _feature_issues(eager_issues)):
                    differ.append(f"{name} {hook} {fail}")
    assert not differ, differ
