"""Layout checks: the advisor stays torch-free (it must answer instantly, on a laptop without torch),
and no module grows past ~400 lines (one concept per module)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAX_LINES = 400
# Known offenders, each with the issue that splits it; the lead empties this as branches merge.
# A listed module that shrinks below the limit fails the test too, so the list cannot go stale.
TOO_LONG: dict[str, str] = {}
HEAVY = ("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "harness")
# `advisor estimate --simulate` runs the harness's own training step on fake tensors: that
# subpackage alone imports torch and the harness, and only that flag imports it.
SIMULATOR = REPO / "advisor" / "simulate"


def _py_files():
    for pkg in ("harness", "advisor"):
        yield from sorted((REPO / pkg).rglob("*.py"))


def test_no_module_is_over_the_line_limit():
    lengths = {str(p.relative_to(REPO)): len(p.read_text().splitlines()) for p in _py_files()}
    over = {name: n for name, n in lengths.items() if n > MAX_LINES and name not in TOO_LONG}
    assert over == {}, f"modules over {MAX_LINES} lines (split them by concept): {over}"
    fixed = [name for name in TOO_LONG if lengths.get(name, 0) <= MAX_LINES]
    assert fixed == [], f"no longer over {MAX_LINES} lines: remove from TOO_LONG: {fixed}"


def test_no_advisor_module_names_torch_or_the_harness():
    """Statically, lazy imports included: a function-level `import torch` would still load it."""
    bad = {}
    for path in sorted((REPO / "advisor").rglob("*.py")):
        if SIMULATOR in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])  # fmt: skip
            hits = [n for n in names if n.split(".")[0] in HEAVY]
            if hits:
                bad.setdefault(path.name, []).extend(hits)
    assert bad == {}


def test_importing_every_advisor_module_loads_no_torch():
    """At run time, through third-party packages too: import all of advisor/ in a fresh interpreter."""
    mods = [".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            for p in sorted((REPO / "advisor").rglob("*.py")) if p.stem != "__main__" and SIMULATOR not in p.parents]
    code = ("import sys\n" + "".join(f"import {m}\n" for m in mods)
            + f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))")  # fmt: skip
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "[]", res.stdout
