"""The one façade over fhir.resources: FHIR model classes (R4B) for the rest of the application.

Nothing else imports fhir.resources, so the model release is decided here. fhir.resources 8.x has no
R4 package; its R4B models (4.3.0) are used for R4 content. Where R4 and R4B differ, callers decide
what to trust (`app.validation` keeps the R4 JSON schema as the authority for structure).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

MODEL_RELEASE = "R4B"
MODEL_FHIR_VERSION = "4.3.0"


@dataclass(frozen=True)
class ModelError:
    """One error of the models: `location` as JSON property names (aliases) and array indexes."""

    location: tuple[str | int, ...]
    kind: str
    message: str
    value: Any = None
    context: dict[str, Any] | None = None


@lru_cache(maxsize=1024)  # bounded: resource types come from request bodies
def model_class(resource_type: str) -> type | None:
    """The model class of a resource or data type, or None if the model release has none."""
    if not resource_type or not resource_type[0].isupper():
        return None
    try:
        cls: type = get_fhir_model_class(resource_type)
    except (ValueError, KeyError, AttributeError):
        return None
    return cls


def model_errors(resource: dict[str, Any]) -> list[ModelError]:
    """Validate a resource with its model class; [] when it is valid (or has no model class)."""
    cls = model_class(str(resource.get("resourceType", "")))
    if cls is None:
        return []
    try:
        cls.model_validate(resource)  # type: ignore[attr-defined]
    except ValidationError as error:
        return [
            ModelError(tuple(e["loc"]), e["type"], e["msg"], e.get("input"), e.get("ctx"))
            for e in error.errors(include_url=False)
        ]
    except (KeyError, ValueError, TypeError, AttributeError) as error:
        # some fhir_core validators call string methods before checking the type (a url given as a number)
        return [ModelError((), "model-error", f"{type(error).__name__}: {error}")]
    return []


def parse(resource: dict[str, Any]) -> Any:
    """The model instance of a resource; raises ValueError when it does not validate."""
    cls = model_class(str(resource.get("resourceType", "")))
    if cls is None:
        raise ValueError(f"No {MODEL_RELEASE} model for resourceType '{resource.get('resourceType')}'")
    try:
        return cls.model_validate(resource)  # type: ignore[attr-defined]
    except ValidationError as error:
        raise ValueError(str(error)) from None
