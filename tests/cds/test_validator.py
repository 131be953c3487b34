"""The response validator catches what CDS Hooks 2.0 forbids (so a passing suite means valid responses)."""
from __future__ import annotations

import copy
import uuid

import pytest

from tests.cds.validator import validate_response

GOOD = {"cards": [{
    "uuid": str(uuid.uuid4()), "summary": "ok", "indicator": "info", "source": {"label": "x"},
    "suggestions": [{"label": "s", "uuid": str(uuid.uuid4()), "actions": [
        {"type": "delete", "description": "d", "resourceId": "ServiceRequest/1"}]}],
    "selectionBehavior": "any",
    "links": [{"label": "l", "url": "https://x.example/", "type": "smart", "appContext": "{}"}],
}]}


def test_a_valid_response_passes():
    validate_response(copy.deepcopy(GOOD))


@pytest.mark.parametrize("break_it", [
    lambda c: c.update(summary="x" * 141),
    lambda c: c.update(indicator="hard-stop"),
    lambda c: c.pop("selectionBehavior"),
    lambda c: c["suggestions"][0]["actions"][0].pop("resourceId"),
    lambda c: c["links"][0].update(type="absolute"),  # appContext on a non-smart link
    lambda c: c.update(uuid="not-a-uuid"),
    lambda c: c["source"].pop("label"),
    lambda c: c["links"][0].update(url="/relative"),
], ids=["summary-141", "indicator", "selectionBehavior", "delete-resourceId", "appContext", "uuid", "source",
        "relative-link"])
def test_violations_are_caught(break_it):
    body = copy.deepcopy(GOOD)
    break_it(body["cards"][0])
    with pytest.raises(AssertionError):
        validate_response(body)
