"""CDS services as data: hooks/ descriptors × loaded pathway PlanDefinitions → the discovery document.

https://cds-hooks.hl7.org/2.0/#discovery — generated, never written twice: a service is listed when the
pathway PlanDefinition of at least one variant has an action (at any depth, through its eca-rule
PlanDefinitions) with a `named-event` trigger for the service's hook. Prefetch templates come from the
case-feature Library's `dataRequirement`s. Everything is derived from the current KnowledgeBase
snapshot, so loading a region's Bundle changes discovery and behaviour without a restart.
"""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.conventions import Variant, parse_variants

log = logging.getLogger("lbp.cds")
HOOKS = ("patient-view", "order-select", "order-sign")
VARIANT_EXTENSION = "org.lbp-pathway.variant"
# the patient's compartment search parameter per resource type (R4 CompartmentDefinition Patient)
_PATIENT_PARAM = {"Patient": None}


@dataclass(frozen=True)
class Descriptor:
    hook: str
    id: str
    title: dict[str, str]  # language -> text
    description: dict[str, str]
    usage: str | None


@dataclass(frozen=True)
class Service:
    """One entry of discovery: a hook, the variant it applies (None: by client, else the default)."""

    id: str
    hook: str
    descriptor: Descriptor
    variant: str | None
    prefetch: Mapping[str, str] = field(default_factory=dict)


def _texts(raw: Mapping[str, Any], key: str, primary: str = "sv") -> dict[str, str]:
    out = {primary: raw.get(key, "")}
    out.update(raw.get(f"_{key}", {}) or {})
    return out


def load_descriptors(directory: Path) -> tuple[dict[str, Descriptor], dict[str, Variant]]:
    descriptors: dict[str, Descriptor] = {}
    variants: dict[str, Variant] = {}
    for path in sorted(directory.glob("*.json")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        if "variants" in raw:
            variants.update(parse_variants(raw))
        elif raw.get("hook"):
            descriptors[raw["hook"]] = Descriptor(
                hook=raw["hook"],
                id=raw["id"],
                title=_texts(raw, "title"),
                description=_texts(raw, "description"),
                usage=raw.get("usageRequirements"),
            )
    return descriptors, variants


def _triggers(kb: Any, plan: Mapping[str, Any], seen: set[str]) -> set[str]:
    """Named events of every action of a PlanDefinition, following definitionCanonical PlanDefinitions."""
    found: set[str] = set()
    stack = list(plan.get("action", []) or [])
    while stack:
        action = stack.pop()
        for t in action.get("trigger", []) or []:
            if t.get("type") == "named-event" and t.get("name"):
                found.add(t["name"])
        canonical = action.get("definitionCanonical")
        if canonical and canonical not in seen:
            seen.add(canonical)
            target = kb.resolve(canonical, "PlanDefinition") if kb is not None else None
            if target is not None:
                found |= _triggers(kb, target, seen)
        stack.extend(action.get("action", []) or [])
    return found


def prefetch_templates(kb: Any, plan: Mapping[str, Any]) -> dict[str, str]:
    """One template per resource type the pathway's case-feature Library reads.

    ICD-10/ATC ValueSets match by prefix (data contract), which a FHIR `code:in` search cannot express,
    so the templates fetch the patient's resources of each type and the features do the matching.
    """
    library = kb.library_for(plan) if kb is not None else None
    if library is None:
        return {}
    types: list[str] = []
    for requirement in library.resource.get("dataRequirement", []) or []:
        t = requirement.get("type")
        if t and t not in types:
            types.append(t)
    out: dict[str, str] = {}
    for t in types:
        out[prefetch_key(t)] = template_for(t)
    return out


def prefetch_key(resource_type: str) -> str:
    return "patient" if resource_type == "Patient" else resource_type[0].lower() + resource_type[1:]


def template_for(resource_type: str) -> str:
    if resource_type == "Patient":
        return "Patient/{{context.patientId}}"
    return f"{resource_type}?patient={{{{context.patientId}}}}&_count=1000"


class Registry:
    """Discovery and service lookup over the current knowledge; recomputed when the knowledge changes."""

    def __init__(self, hooks_dir: Path):
        self.descriptors, self.variants = load_descriptors(hooks_dir)
        self._lock = threading.Lock()
        self._cache: tuple[Any, dict[str, Service]] | None = None

    def services(self, kb: Any, default_variant: str, *, warm_now: bool = False) -> dict[str, Service]:
        """The services of one knowledge snapshot; `warm_now` compiles the pathways before returning (start-up)."""
        cached = self._cache
        if cached is not None and cached[0] is kb:  # one knowledge snapshot, one discovery
            return cached[1]
        with self._lock:
            built = self._build(kb, default_variant)
            if kb is not None:  # no knowledge yet is not a state worth remembering
                self._cache = (kb, built)
        if kb is not None and built:
            if warm_now:
                self._warm(kb)
            else:
                threading.Thread(target=self._warm, args=(kb,), daemon=True, name="cds-warm").start()
        return built

    def _warm(self, kb: Any) -> None:
        """Apply each pathway once to an empty record, so the first clinician after a (re)load does not
        wait for the terminology index and expression caches to be built."""
        try:
            from app.reasoning.apply import apply_plan_definition

            for variant in self.variants.values():
                if kb.resolve(variant.pathway, "PlanDefinition") is None:
                    continue
                for hook in HOOKS:
                    apply_plan_definition(kb, variant.pathway, subject={"resourceType": "Patient", "id": "warm-up"},
                                          record=[], trigger=hook)
        except Exception as exc:  # warming is an optimisation; the calls themselves report problems
            log.debug("warm-up skipped: %s", type(exc).__name__)

    def _build(self, kb: Any, default_variant: str) -> dict[str, Service]:
        served: dict[str, set[str]] = {}  # variant -> hooks
        prefetch: dict[str, dict[str, str]] = {}
        for code, variant in self.variants.items():
            plan = kb.resolve(variant.pathway, "PlanDefinition") if kb is not None else None
            if plan is None:
                continue
            served[code] = _triggers(kb, plan, set())
            prefetch[code] = prefetch_templates(kb, plan)
        out: dict[str, Service] = {}
        for hook, descriptor in self.descriptors.items():
            variants = [v for v in self.variants if hook in served.get(v, set())]
            if not variants:
                continue
            # the client-mapped service carries the union of the templates of every variant it may apply
            union: dict[str, str] = {}
            for v in variants:
                union.update(prefetch[v])
            out[descriptor.id] = Service(descriptor.id, hook, descriptor, None, union)
            for v in variants:
                sid = f"{descriptor.id}-{v}"
                out[sid] = Service(sid, hook, descriptor, v, prefetch[v])
        return out

    def discovery(self, kb: Any, default_variant: str) -> dict[str, Any]:
        services = []
        for service in self.services(kb, default_variant).values():
            if service.variant:
                variant = self.variants[service.variant]
                language = variant.language
                applies = {"variant": service.variant, "pathway": variant.pathway, "label": variant.label,
                           "chosenBy": "service"}
            else:
                default = self.variants.get(default_variant)
                language = default.language if default else "sv"
                applies = {"variant": default_variant, "chosenBy": "client",
                           "note": "the variant mapped to the caller's JWT iss (and tenant) in configuration, "
                                   "else the deployment default"}
            title = service.descriptor.title.get(language) or service.descriptor.title.get("sv", "")
            entry: dict[str, Any] = {
                "hook": service.hook,
                "id": service.id,
                "title": title if not service.variant else f"{title} ({self.variants[service.variant].label})",
                "description": service.descriptor.description.get(language)
                or service.descriptor.description.get("sv", ""),
                "prefetch": dict(service.prefetch),
            }
            if service.descriptor.usage:
                entry["usageRequirements"] = service.descriptor.usage
            entry["extension"] = {VARIANT_EXTENSION: applies}
            services.append(entry)
        return {"services": services}
