"""The store's bulk path: one statement per table per transaction (COPY on PostgreSQL), all or nothing."""
from __future__ import annotations

import pytest

from app.errors import FHIRError
from app.store.db import Store


@pytest.fixture
def store(db_url):
    s = Store(db_url)
    yield s
    s.dispose()


def _patient(pid: str, family: str) -> dict:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": family}],
            "identifier": [{"system": "urn:x", "value": pid}], "birthDate": "1970-02-03"}


def _rows(store: Store, pid: str) -> dict[str, int]:
    with store.engine.connect() as c:
        rid = c.exec_driver_sql(f"SELECT rid FROM resources WHERE res_id = '{pid}'").scalar()
        if rid is None:
            return {}
        return {t: c.exec_driver_sql(f"SELECT count(*) FROM {t} WHERE rid = {rid}").scalar_one()
                for t in ("idx_token", "idx_string", "idx_date")}


def test_a_transaction_writes_its_resources_and_index_rows_together(store):
    with store.transaction() as tx:
        for i in range(50):
            tx.create(_patient(f"p{i}", f"Family{i}"), res_id=f"p{i}", known_new=True)
    assert store.read("Patient", "p49").resource()["name"][0]["family"] == "Family49"
    assert _rows(store, "p7") == {"idx_token": 1, "idx_string": 2, "idx_date": 1}  # string: name, family


def test_a_key_taken_by_another_writer_rolls_the_whole_transaction_back(store):
    with store.transaction() as tx:
        tx.create(_patient("taken", "First"), res_id="taken", known_new=True)
    with pytest.raises(Exception) as caught:
        with store.transaction() as tx:
            tx.create(_patient("new-one", "Second"), res_id="new-one", known_new=True)
            # planned as new elsewhere (known_new), but another writer committed it first
            tx.create(_patient("taken", "Again"), res_id="taken", known_new=True)
    if store.dialect == "postgresql":
        assert isinstance(caught.value, FHIRError) and caught.value.status == 409
    assert store.read("Patient", "new-one") is None
    assert store.read("Patient", "taken").resource()["name"][0]["family"] == "First"
    assert _rows(store, "new-one") == {}
