"""Missing data never silences a rule: removing any one resource, or any one element (every key and list item of
the JSON tree), from a reference patient never raises, never answers 500, and leaves no evaluation error
without the outcome that says so.

Generated from: the reference patients (`records.reference_records`), every resource and every element of
each (an element of a resource whose content another reference patient holds too: once), at patient-view and
at order-sign (an imaging, referral and opioid order set), in every variant.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.proof import figures
from tests.proof.model import knowledge, variants
from tests.proof.records import apply, hook_body, reference_records
from tests.proof.test_monotonicity import SAFE_HOOKS, drafts_for
from tests.proof.unevaluated import UnknownRuns, unexplained_errors

MAX_DEPTH = 8  # deeper than any element of the reference patients: the bound only guards against cycles


def element_paths(node: Any, prefix: tuple = (), depth: int = 0) -> Iterator[tuple]:
    """Every key of every object and every item of every array, as a path from the resource."""
    if depth > MAX_DEPTH:
        return
    if isinstance(node, dict):
        for key, value in node.items():
            yield prefix + (key,)
            yield from element_paths(value, prefix + (key,), depth + 1)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield prefix + (i,)
            yield from element_paths(value, prefix + (i,), depth + 1)


def without(resource: dict, path: tuple) -> dict:
    out = copy.deepcopy(resource)
    parent: Any = out
    for step in path[:-1]:
        parent = parent[step]
    del parent[path[-1]]
    return out


def content(resource: dict) -> str:
    """A resource's content without its id and subject: equal in two records means the same data."""
    return json.dumps({k: v for k, v in resource.items() if k not in ("id", "subject")}, sort_keys=True)


def mutations(record: list[dict], seen: set) -> Iterator[tuple[str, list[dict]]]:
    """(what was removed, the record without it): each resource, then each element of each resource.

    Bound: an element removal is made once for every distinct resource content (the reference patients share
    most resources: the same red-flag questionnaire, the same screening), in the first record holding it."""
    for i, resource in enumerate(record):
        yield f"{resource['resourceType']}/{resource.get('id')}", record[:i] + record[i + 1:]
    for i, resource in enumerate(record):
        body = content(resource)
        for path in element_paths(resource):
            if (body, path) in seen:
                continue
            seen.add((body, path))
            where = ".".join(str(p) for p in path)
            yield (f"{resource['resourceType']}/{resource.get('id')}.{where}",
                   record[:i] + [without(resource, path)] + record[i + 1:])


RECORDS = reference_records()


@pytest.mark.parametrize("hook", SAFE_HOOKS)
@pytest.mark.parametrize("variant", list(variants()))
def test_removing_a_resource_or_element_leaves_no_error_unexplained(variant, hook):
    kb, pathway = knowledge(), variants()[variant]["pathway"]
    failures = []
    seen: set = set()
    for name, record in sorted(RECORDS.items()):
        drafts = drafts_for(record, hook)
        for removed, mutated in mutations(record, seen):
            figures.count("removal: record less one resource or element ($apply)")
            try:
                care_plan, issues = apply(kb, pathway, mutated, hook, drafts, patient_id=record[0]["id"])
            except Exception as exc:  # the property under test: nothing raises
                failures.append(f"{name} less {removed}: raised {type(exc).__name__}: {exc}")
                continue
            when_unknown = UnknownRuns(pathway, mutated, hook, drafts, record[0]["id"])
            for problem in unexplained_errors(care_plan, issues, variant, hook, when_unknown):
                failures.append(f"{name} less {removed}: {problem}")
    assert not failures, f"{len(failures)} failure(s):\n" + "\n".join(failures[:40])


@pytest.mark.parametrize("variant", list(variants()))
def test_removing_a_resource_through_the_cds_service(cds, variant):
    """Each resource of each reference patient left out of the prefetch: 200 with cards, at both hooks."""
    failures = []
    for name, record in sorted(RECORDS.items()):
        for i, resource in enumerate(record):
            if resource["resourceType"] == "Patient":
                continue  # the prefetch's patient is context.patientId; a missing one is fetched (tests/cds)
            mutated = record[:i] + record[i + 1:]
            for hook in SAFE_HOOKS:
                r = cds.post(f"/cds-services/lbp-{hook}-{variant}",
                             hook_body(hook, mutated, drafts_for(record, hook)))
                figures.count("removal: CDS service calls")
                if r.status_code != 200:
                    failures.append(f"{name} less {resource['resourceType']}/{resource['id']} {hook}: "
                                    f"status {r.status_code} {r.get_data(as_text=True)[:200]}")
    assert not failures, "\n".join(failures)
