"""The import graph of app/: no circle between its parts, and the layering the architecture promises.

Parts are the sub-packages of `app` (`app.fhir`, `app.store`, ...) and its top-level modules
(`app.errors`, `app.conventions`, ...); `app` itself is the composition root (`create_app`). Every import
counts, including those inside functions.
"""
from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app"

# (importer, imported): never.
FORBIDDEN = [
    ("store", "fhir"), ("store", "cds"), ("store", "web"),
    ("reasoning", "cds"), ("reasoning", "web"), ("reasoning", "fhir"),
    ("validation", "store"),
    ("cds", "web"),
    # the records layer serves the entry points; it never calls back into them
    ("records", "fhir"), ("records", "web"), ("records", "cds"), ("records", "knowledge"),
    # the FHIRPath engine (app/fhirpath once it is its own package) is a library below the reasoning engine
    ("fhirpath", "reasoning"), ("fhirpath", "store"), ("fhirpath", "fhir"), ("fhirpath", "web"),
    ("fhirpath", "cds"), ("fhirpath", "records"), ("fhirpath", "validation"),
]
# Only these parts may import the HTTP packages and the composition root.
ENTRY_IMPORTERS = {"fhir": {"app"}, "web": {"app"}, "cds": {"app"}, "app": {"cli", "wsgi"}}


def _module_name(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = APP.parent / name.replace(".", "/")
    return path.is_dir() or path.with_suffix(".py").exists()


def _imported(path: Path) -> set[str]:
    """Absolute names of the app modules (or packages) one file imports."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "app")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "app":
                continue
            for alias in node.names:  # `from app import auth`: a sub-module; `from app import ROOT`: the package
                found.add(f"{target}.{alias.name}" if _is_module(f"{target}.{alias.name}") else target)
    return found


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "app"


def part_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in APP.rglob("*.py"):
        src = _part(_module_name(path))
        for target in _imported(path):
            dst = _part(target)
            if target == "app" and _module_name(path) != "app":
                dst = "app"
            if dst != src:
                graph.setdefault(src, set()).add(dst)
            graph.setdefault(dst, set())
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_parts_of_app_import_each_other_without_a_circle():
    graph = part_graph()
    assert {"fhir", "store", "records", "reasoning", "web", "cds", "auth"} <= set(graph)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_no_part_imports_across_a_forbidden_layer():
    graph = part_graph()
    broken = [(a, b) for a, b in FORBIDDEN if b in graph.get(a, set())]
    assert not broken, broken


def test_only_the_composition_root_wires_the_http_packages():
    graph = part_graph()
    for target, allowed in ENTRY_IMPORTERS.items():
        importers = {src for src, dsts in graph.items() if target in dsts}
        assert importers <= allowed, (target, importers - allowed)


def test_the_graph_sees_relative_and_function_level_imports():
    graph = part_graph()
    assert "records" in graph["fhir"]  # app/fhir/write.py: from app.records import ...
    assert "records" in graph["web"]  # app/web/patient.py
    assert "records" in graph["knowledge"]  # app/knowledge/loader.py
    assert "reasoning" in graph["records"]
    assert graph["app"] >= {"fhir", "web", "cds"}
