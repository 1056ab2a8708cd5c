"""Architecture checks: no import circles among harness/ and advisor/ modules, and the advisor
imports nothing from the harness (it must answer without torch).

Imports inside functions count too: a lazy import still ties the two modules' contracts together.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "advisor")
# Circles others are removing; empty now that every branch has merged.
KNOWN: list[set[str]] = []


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    mods = modules()

    def owner(name: str) -> str | None:  # harness.methods.get_method → harness.methods
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            deps |= {o for t in targets if (o := owner(t)) and o != name}
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_planted_circle():
    graph = import_graph()
    assert not any({"harness.record", "harness.config"} <= c for c in cycles(graph))
    graph["harness.record"] = graph["harness.record"] | {"harness.run"}  # run imports record: now a circle
    assert any({"harness.record", "harness.run"} <= c for c in cycles(graph))


def test_no_import_cycles():
    def known(c: set[str]) -> bool:
        return any(c <= k or all(m.startswith(tuple(k)) for m in c) for k in KNOWN)

    found = [sorted(c) for c in cycles(import_graph()) if not known(c)]
    assert found == [], f"import circles: {found}"


def test_the_advisor_imports_nothing_from_the_harness():  # nor torch: see tests/test_layout.py
    # except advisor.simulate (`advisor estimate --simulate`): it runs the harness's own training step
    graph = import_graph()
    bad = {m: sorted(d for d in deps if d.startswith("harness")) for m, deps in graph.items()
           if m.startswith("advisor") and not m.startswith("advisor.simulate")}  # fmt: skip
    assert {m: d for m, d in bad.items() if d} == {}
