"""Every Measure's populations, scores, strata and months are the same whether each case feature is computed when a
criterion first reads it or every feature is computed first, on a generated demo cohort of each Swedish variant."""
from __future__ import annotations

from collections import defaultdict

import pytest

from app.measures import engine
from app.measures.demo import demo_cohort

from .conftest import AS_OF, YEAR


def _records(variant: str, patients: int) -> list[list[dict]]:
    """[Patient, ...its resources] per patient of the demo cohort (as the store reads a record)."""
    by_patient: dict[str, list[dict]] = defaultdict(list)
    found: dict[str, dict] = {}
    for resource in demo_cohort(variant, patients, 7):
        if resource["resourceType"] == "Patient":
            found[resource["id"]] = resource
            continue
        ref = (resource.get("subject") or resource.get("patient") or {}).get("reference") or ""
        if ref.startswith("Patient/"):
            by_patient[ref.removeprefix("Patient/")].append(resource)
    return [[p, *by_patient[pid]] for pid, p in found.items()]


def _tallies(accs: list[engine.MeasureAccumulator]) -> dict:
    def tally(t: engine.Tally) -> tuple:
        return (dict(t.counts), dict(t.unknown), dict(t.members), sorted(t.observations), t.numerator_unknown)

    out = {}
    for acc in accs:
        for gid, g in acc.groups.items():
            out[(acc.measure.id, gid)] = (
                tally(g.overall),
                {code: {value: tally(t) for value, t in strata.items()} for code, strata in g.strata.items()},
                {month: tally(t) for month, t in g.months.items()},
                sorted(acc.subjects),
            )
    return out


@pytest.mark.parametrize("variant", ["skane", "se"])
def test_every_measure_counts_the_same_lazy_and_eager(kb, variant):
    records = _records(variant, 150)
    measures = engine.measures_for_variant(kb, variant)
    lazy, lazy_accs = engine.evaluate_measures(kb, measures, records, YEAR, variant=variant, as_of=AS_OF,
                                               keep_members=True)
    eager, eager_accs = engine.evaluate_measures(kb, measures, records, YEAR, variant=variant, as_of=AS_OF,
                                                 keep_members=True, eager_features=True)
    assert _tallies(lazy_accs) == _tallies(eager_accs)
    assert any(t[0][0].get("numerator") for t in _tallies(lazy_accs).values())  # the cohort reaches numerators
    assert lazy.skipped_unplaced == eager.skipped_unplaced
    # the same outcome with fewer features: a numerator's features are not computed outside its denominator
    assert lazy.features_evaluated < eager.features_evaluated
