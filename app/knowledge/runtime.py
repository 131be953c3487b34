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


class _Snapshot:
    """One fully built knowledge state: published to readers by a single attribute assignment, never mutated."""

    __slots__ = ("epoch", "base", "by_url")

    def __init__(self, epoch: int, base: Any, by_url: dict[str, dict]):
        self.epoch = epoch
        self.base = base
        self.by_url = by_url


class Knowledge:
    def __init__(self, store: Store):
        self.store = store
        self._lock = threading.Lock()
        self._checked_at = 0.0
        self._snapshot: _Snapshot | None = None

    # ------------------------------------------------------------ keeping in step
    @property
    def ready(self) -> bool:
        """Loaded and compiled: the process may answer requests that reason with knowledge."""
        return self._snapshot is not None

    def refresh(self, force: bool = False) -> None:
        """Reload when another process changed the knowledge; readers keep the previous snapshot meanwhile.

        Before the first load every caller waits for it: a request never reasons with half or no knowledge.
        """
        current = self._snapshot
        if current is not None and not force and time.monotonic() - self._checked_at < EPOCH_CHECK_SECONDS:
            return
        if current is not None and not force:
            epoch = self.store.knowledge_epoch()
            self._checked_at = time.monotonic()
            if epoch == current.epoch:
                return
            if not self._lock.acquire(blocking=False):
                return  # another thread is building the new snapshot; this one serves the current one
        else:
            self._lock.acquire()
            if self._snapshot is not None and self._snapshot is not current and not force:
                self._lock.release()
                return  # loaded by the thread this one waited for
        try:
            epoch = self.store.knowledge_epoch()
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
            self._snapshot = _Snapshot(epoch, _build_base(resources), by_url)
            self._checked_at = time.monotonic()
        finally:
            self._lock.release()

    @property
    def _by_url(self) -> dict[str, dict]:
        """The current snapshot's artifacts by canonical URL (and url|version); empty before the first load."""
        snapshot = self._snapshot
        return snapshot.by_url if snapshot is not None else {}

    @property
    def base(self) -> Any:
        self.refresh()
        snapshot = self._snapshot
        return snapshot.base if snapshot is not None else None

    # ------------------------------------------------------------ queries
    def resolve(self, canonical: str) -> dict | None:
        self.refresh()
        snapshot = self._snapshot
        by_url = snapshot.by_url if snapshot is not None else {}
        return by_url.get(canonical) or by_url.get(canonical.split("|", 1)[0])

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
    from app.validation import replace_stored_extension_definitions

    # the store's extension definitions are checked like the shipped ones, and one deleted is forgotten
    replace_stored_extension_definitions(r for r in resources if r.get("resourceType") == "StructureDefinition")
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
