"""The knowledge this process reasons with: artifacts from the store, compiled, kept in step across workers.

Every write of a knowledge artifact bumps an epoch row in the same database transaction; each worker
compares its epoch before serving knowledge and reloads when another worker (or the CLI) changed it.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from app.store.db import KNOWLEDGE_TYPES, Store

EPOCH_CHECK_SECONDS = 0.5
log = logging.getLogger("lbp")


class Knowledge:
    def __init__(self, store: Store):
        self.store = store
        self._lock = threading.Lock()
        self._epoch = -1
        self._checked_at = 0.0
        self._by_url: dict[str, dict] = {}
        self._base: Any = None

    # ------------------------------------------------------------ keeping in step
    def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked_at < EPOCH_CHECK_SECONDS:
            return
        self._checked_at = now
        epoch = self.store.knowledge_epoch()
        if epoch == self._epoch and not force:
            return
        with self._lock:
            by_url: dict[str, dict] = {}
            resources = []
            for stored in self.store.all_current(KNOWLEDGE_TYPES):
                resource = stored.resource()
                resources.append(resource)
                url = resource.get("url")
                if url:
                    by_url[url] = resource
                    if resource.get("version"):
                        by_url[f"{url}|{resource['version']}"] = resource
            self._base = _build_base(resources)
            self._by_url = by_url
            self._epoch = epoch

    @property
    def base(self) -> Any:
        self.refresh()
        return self._base

    # ------------------------------------------------------------ queries
    def resolve(self, canonical: str) -> dict | None:
        self.refresh()
        return self._by_url.get(canonical) or self._by_url.get(canonical.split("|", 1)[0])

    def valueset_matcher(self, url: str) -> Callable[[str | None, str], bool] | None:
        """Membership in a ValueSet for the `:in` / `:not-in` search modifiers, or None when it is not known.

        The same TerminologyIndex that answers memberOf(), $expand and $validate-code: one semantics
        (prefix families such as ICD-10 `M54.5` covering `M54.50`, hierarchies, filters) for search and rules.
        """
        kb = self.base
        if kb is None:
            return None
        terminology = kb.terminology
        if not terminology.has_valueset(url) and url.split("|", 1)[0] not in terminology.problems:
            return None  # a ValueSet that is stored but unusable answers with the index's own error

        def member(system: str | None, code: str) -> bool:
            return bool(terminology.contains(url, system, code))

        return member

    def check(self, resource: dict) -> None:
        """Raise FHIRError when an artifact cannot be used (an expression that does not compile or that the
        static analysis refuses, read with the stored Libraries' case features)."""
        from app.knowledge.check import refuse_faulty

        _check_artifact(resource)
        self.refresh()
        refuse_faulty(resource, [r for r in self._by_url.values() if r.get("resourceType") == "Library"])


def _build_base(resources: list[dict]) -> Any:
    from app.errors import FHIRError
    from app.reasoning.knowledge import KnowledgeBase
    from app.validation import register_extension_definitions

    # extension definitions written since start-up are checked like the shipped ones
    register_extension_definitions(r for r in resources if r.get("resourceType") == "StructureDefinition")
    kb = KnowledgeBase()
    try:
        kb.add_all(resources)
    except FHIRError:
        # Every artifact was checked when it was written; if the set still does not load whole, load what does.
        for r in resources:
            try:
                kb.add(r)
            except FHIRError as err:
                log.error("artifact %s/%s not usable: %s", r.get("resourceType"), r.get("id"), err.issues[0].text)
    kb.warm()
    return kb


def _check_artifact(resource: dict) -> None:
    from app.reasoning.knowledge import KnowledgeBase

    KnowledgeBase().add(resource)
