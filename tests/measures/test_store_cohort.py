"""Records read in bulk for the indicators are the records `patient_record` reads, on SQLite and PostgreSQL."""
from __future__ import annotations

from app.measures import store_cohort
from app.measures.demo import demo_cohort, transaction_bundles
from app.store.record import patient_record


def _key(record):
    return sorted((r["resourceType"], r["id"]) for r in record)


def test_bulk_read_equals_one_patient_at_a_time_and_skips_deleted(app, client, monkeypatch):
    for bundle in transaction_bundles(demo_cohort("skane", 12, 5)):
        assert client.post("/fhir", json=bundle).status_code == 200
    gone = next(r for r in demo_cohort("skane", 12, 5) if r["resourceType"] == "Observation")
    assert client.delete(f"/fhir/Observation/{gone['id']}").status_code in (200, 204)
    store = app.extensions["lbp"].store
    monkeypatch.setattr(store_cohort, "BATCH", 5)  # several round trips
    records = list(store_cohort.cohort_records(store))
    assert [r[0]["id"] for r in records] == [f"demo-skane-{i:05d}" for i in range(1, 13)]
    for record in records:
        assert _key(record) == _key(patient_record(store, record[0]["id"]))
    assert all(r["id"] != gone["id"] for record in records for r in record)
