"""The writes: create, update, conditional update, delete, conditional delete, and the loader's upsert.

Each admits the resource (`admission.admit`), writes it in one database transaction (the store indexes
it in the same transaction) and then calls `admission.after_write`. The transaction engine
(`app.fhir.transaction`) plans a whole Bundle before writing and so calls `admit` and `after_write`
itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.errors import FHIRError
from app.store.db import Stored

from .admission import FHIRJson, admit, after_write, conditional_ids, services
from .responses import submit_response

# ------------------------------------------------------------------ the writes themselves

@dataclass
class Written:
    """A stored version and whether the write created the resource (False: updated, or an existing match)."""

    stored: Stored
    created: bool


def create(resource: Any, res_type: str, *, if_none_exist: str | None = None) -> Written:
    """Create (the server assigns the id); with `if_none_exist`, the one existing match is returned instead.

    A QuestionnaireResponse is validated against its Questionnaire, scored and extracted on the way in.
    """
    if res_type == "QuestionnaireResponse":
        result = submit_response(resource, if_none_exist=if_none_exist)
        return Written(result.response, result.created)
    admitted = admit(resource, expected_type=res_type)
    with services().store.transaction() as tx:
        if if_none_exist:
            ids = conditional_ids(res_type, if_none_exist, tx.conn)
            if len(ids) > 1:
                raise FHIRError("multiple-matches", f"If-None-Exist matches {len(ids)} or more resources",
                                "If-None-Exist", status=412)
            if ids:
                existing = tx.read(res_type, ids[0])
                assert existing is not None
                return Written(existing, False)
        admitted.pop("id", None)
        stored = tx.create(admitted)
    after_write([stored])
    return Written(stored, True)


def update(resource: Any, res_type: str, res_id: str, *, if_match: int | None = None) -> Written:
    """Update (or create with the client's id) `res_type/res_id`; `if_match` is the version the client read."""
    admitted = admit(resource, expected_type=res_type, expected_id=res_id)
    with services().store.transaction() as tx:
        stored, created = tx.update(admitted, if_match=if_match)
    after_write([stored])
    return Written(stored, created)


def conditional_update(resource: Any, res_type: str, query: str, *, if_match: int | None = None) -> Written:
    """Update the one resource `query` matches, else create (with the resource's id if it has one)."""
    with services().store.transaction() as tx:
        ids = conditional_ids(res_type, query, tx.conn)
        if len(ids) > 1:
            raise FHIRError("multiple-matches", "The conditional update matches more than one resource",
                            f"{res_type}?", status=412)
        if ids:
            admitted = admit(resource, expected_type=res_type, expected_id=resource.get("id") and ids[0])
            admitted["id"] = ids[0]
            stored, created = tx.update(admitted, if_match=if_match)
        else:
            admitted = admit(resource, expected_type=res_type)
            if admitted.get("id"):
                stored, created = tx.update(admitted)
            else:
                stored, created = tx.create(admitted), True
    after_write([stored])
    return Written(stored, created)


def delete(res_type: str, res_id: str, *, if_match: int | None = None) -> Stored | None:
    """Delete `res_type/res_id`; None when it did not exist or was already deleted."""
    with services().store.transaction() as tx:
        stored: Stored | None = tx.delete(res_type, res_id, if_match=if_match)
    if stored is not None:
        after_write([stored])
    return stored


def conditional_delete(res_type: str, query: str) -> Stored | None:
    """Delete the one resource `query` matches; None when none does."""
    with services().store.transaction() as tx:
        ids = conditional_ids(res_type, query, tx.conn)
        if len(ids) > 1:
            raise FHIRError("multiple-matches", "The conditional delete matches more than one resource",
                            f"{res_type}?", status=412)
        stored = tx.delete(res_type, ids[0]) if ids else None
    if stored is not None:
        after_write([stored])
    return stored


def upsert_all(resources: list[FHIRJson]) -> list[Stored]:
    """Write resources already admitted (each with its id) in one transaction: the knowledge loader's write."""
    with services().store.transaction() as tx:
        written = [tx.update(resource)[0] for resource in resources]
    after_write(written)
    return written
