"""Export the stored knowledge artifacts as a transaction Bundle, whole or one variant's closure."""
from __future__ import annotations

from typing import Any

from app.store.db import KNOWLEDGE_TYPES


def _canonicals(node: Any, out: set[str]) -> None:
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, dict):
            stack.extend(n.values())
        elif isinstance(n, list):
            stack.extend(n)
        elif isinstance(n, str) and n.startswith(("http://", "https://")):
            out.add(n.split("|", 1)[0])


def knowledge_bundle(lbp: Any, root_url: str | None = None) -> dict:
    """Every stored artifact, or (with root_url) the artifacts reachable from it by canonical reference.

    Terminology used by the reachable artifacts comes along (ValueSets name their CodeSystems).
    """
    artifacts = [s.resource() for s in lbp.store.all_current(KNOWLEDGE_TYPES)]
    by_url = {a["url"]: a for a in artifacts if a.get("url")}
    if root_url is None:
        chosen = artifacts
    else:
        if root_url not in by_url:
            raise KeyError(root_url)
        seen: set[str] = set()
        todo = [root_url]
        while todo:
            url = todo.pop()
            if url in seen or url not in by_url:
                continue
            seen.add(url)
            refs: set[str] = set()
            _canonicals({k: v for k, v in by_url[url].items() if k != "url"}, refs)
            todo.extend(r for r in refs if r in by_url and r not in seen)
        chosen = [by_url[u] for u in sorted(seen)]
    chosen.sort(key=lambda a: (a["resourceType"], a["id"]))
    entries = []
    for a in chosen:
        a = {k: v for k, v in a.items() if k != "meta"}
        entries.append({
            "fullUrl": a.get("url") or f"{a['resourceType']}/{a['id']}",
            "resource": a,
            "request": {"method": "PUT", "url": f"{a['resourceType']}/{a['id']}"},
        })
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
