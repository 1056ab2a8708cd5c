"""Architecture checks: no import circles among harness/ and advisor/ modules, no import that runs
up the declared layer order (LAYERS), and the advisor imports nothing from the harness (it must
answer without torch).

Imports inside functions count too: a lazy import still ties the two modules' contracts together.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "advisor")
# Circles others are removing; empty now that every branch has merged.
KNOWN: list[set[str]] = []

# The floors, lowest first. A module imports only from its own floor or the ones below it; a
# lower module that needs a higher one holds a concept in the wrong room. An entry names a module
# or a subpackage (its __init__ and everything in it); "harness" and "advisor" name only their __init__.
LAYERS: dict[str, list[tuple[str, ...]]] = {
    "harness": [
        # leaves: import no other harness module but each other
        ("harness", "harness.errors", "harness.paths", "harness.model_names", "harness.typecheck", "harness.schema",
         "harness.console", "harness.plain_progress", "harness.charts", "harness.label_fit", "harness.lm_eval_backend",
         "harness.loss", "harness.checkpointing", "harness.kernels", "harness.sweep.progress", "harness.tasks.base", "harness.atomic",
         "harness.forgetting", "harness.lm_eval_templates", "harness.provenance"),
        ("harness.method_table",),  # names and capabilities, no torch: what the spec types check against
        ("harness.spec",),  # the typed run spec: frozen dataclasses that check their own values
        ("harness.config",),  # Hydra composition of the YAML into the spec
        ("harness.measure", "harness.record", "harness.watchdog", "harness.probes"),  # clocks, the record, its readers
        ("harness.tasks", "harness.models", "harness.trackers"),  # what a run is built from and logs to
        ("harness.train", "harness.methods", "harness.evaluate"),  # training and scoring
        ("harness.artifacts", "harness.init_from", "harness.run", "harness.run_outputs", "harness.export",
         "harness.eval_command"),  # one run, its saved outputs, and commands on one run
        ("harness.results", "harness.trackers.backfill", "harness.analysis", "harness.claims", "harness.curves", "harness.regress",
         "harness.render"),  # many records read back
        ("harness.sweep", "harness.search"),  # many runs
        ("harness.report", "harness.cli", "harness.__main__"),  # entry points
    ],
    # The advisor by folder (issue 23): inputs, then what it models (memory, then time from the same
    # setup), the decision, validation, rendering; the simulator runs the real step on fake tensors and
    # answers through the same validate and render code, so it sits above them, below the command line.
    "advisor": [
        ("advisor", "advisor.facts", "advisor.errors"),
        ("advisor.inputs",),
        ("advisor.memory",),
        ("advisor.speed",),
        ("advisor.decide",),
        ("advisor.validate",),
        ("advisor.render",),
        ("advisor.simulate",),  # `advisor estimate --simulate`, `advisor validate --simulate`
        ("advisor.cli", "advisor.stack_flags", "advisor.__main__"),
    ],
}
# Imports that run up the floors, each with why it stays. Empty: a lower module needing a higher
# one holds a concept in the wrong room. A listed import that is gone fails the test too.
UPWARD: dict[str, str] = {}


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


def floor(module: str) -> int | None:
    """The index of ``module``'s layer; the longest matching entry wins (harness.trackers.backfill
    over harness.trackers)."""
    best = (-1, None)
    for i, layer in enumerate(LAYERS[module.split(".")[0]]):
        for entry in layer:
            inside = "." in entry and module.startswith(entry + ".")
            if (module == entry or inside) and len(entry) > best[0]:
                best = (len(entry), i)
    return best[1]


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Imports (lazy ones too) from a module to a module on a higher floor of the same package."""
    out = []
    for module, deps in graph.items():
        for dep in deps:
            if dep.split(".")[0] != module.split(".")[0]:
                continue
            if floor(dep) > floor(module):
                out.append(f"{module} → {dep}")
    return sorted(out)


def test_every_module_is_on_a_floor():
    lost = sorted(m for m in modules() if floor(m) is None)
    assert lost == [], f"modules on no floor: add each to LAYERS in tests/test_imports.py: {lost}"


def test_no_import_runs_up_the_layers():
    found = upward(import_graph())
    assert [f for f in found if f not in UPWARD] == []
    assert sorted(set(UPWARD) - set(found)) == [], "no longer upward: remove from UPWARD"


def test_the_layer_check_finds_a_planted_upward_import():
    graph = import_graph()
    assert "harness.run" not in graph["harness.config"]
    graph["harness.config"] = graph["harness.config"] | {"harness.run"}  # the spec layer reaching up to a run
    assert [f for f in upward(graph) if f not in UPWARD] == ["harness.config → harness.run"]


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
