"""The records layer: the one path by which a resource is admitted, written, indexed, audited and post-processed.

Every entry point that writes (the FHIR REST API and its transaction engine, the patient pages, the
knowledge loader, the CLI through the API) calls this package; none of it reads a request. HTTP parsing
and response shaping stay in `app.fhir`, form handling in `app.web`.

- `admission`: `admit` (type, id, validation, artifact checks), `conditional_ids`, `after_write` (audit,
  knowledge refresh).
- `writes`: `create`, `update`, `conditional_update`, `delete`, `conditional_delete`, `upsert_all`.
- `responses`: QuestionnaireResponse submission: validated against its Questionnaire, scored, extracted.
"""
from __future__ import annotations

from .admission import admit, after_write, check_artifact, conditional_ids
from .responses import ScoredResponse, SubmitResult, scored, submit_response
from .writes import Written, conditional_delete, conditional_update, create, delete, update, upsert_all

__all__ = ["admit", "after_write", "check_artifact", "conditional_delete", "conditional_ids", "conditional_update",
           "create", "delete", "update", "upsert_all", "Written", "ScoredResponse", "SubmitResult", "scored",
           "submit_response"]
