"""Layout checks: the advisor stays torch-free (it must answer instantly, on a laptop without torch),
no module grows past ~400 lines (one concept per module), no function past 80 (a reader holds it in
their head; a longer one is a list of phases, each a named function), no two module names differ
by one letter, and no run of lines is copied between modules."""

from __future__ import annotations

import ast
import itertools
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAX_LINES = 400
# Known offenders, each with the issue that splits it; the lead empties this as branches merge.
# A listed module that shrinks below the limit fails the test too, so the list cannot go stale.
TOO_LONG: dict[str, str] = {}
MAX_FUNCTION_LINES = 80  # from `def` to its last line, docstring and nested functions included
# Known offenders, keyed "<file name>::<qualified name>" (a file name, so the advisor-by-concept move
# keeps the key); a listed function that shrinks to the limit, or is gone, fails the test too.
LONG_FUNCTIONS: dict[str, str] = {}
# Module names (file stems and package folders) one letter apart, as sorted pairs, each with who
# renames which side. A listed pair that is gone fails the test too.
NEAR_NAMES: dict[tuple[str, str], str] = {}
MIN_REPEAT = 6  # lines: a run this long copied between two modules is a concept written twice
# Known copies, as sorted pairs of module paths, each with why it stays. Empty: fix a copy instead.
REPEATS: dict[tuple[str, str], str] = {}
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


def function_lengths() -> dict[str, int]:
    """``{"<file name>::<qualified name>": lines}`` for every function and method in harness/ and advisor/."""
    out = {}

    def visit(node, path: Path, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    key = f"{path.name}::{name}"
                    out[key] = max(out.get(key, 0), child.end_lineno - child.lineno + 1)
                visit(child, path, name + ".")
            else:
                visit(child, path, prefix)

    for path in _py_files():
        visit(ast.parse(path.read_text()), path, "")
    return out


def test_no_function_is_over_the_line_limit():
    lengths = function_lengths()
    over = {name: n for name, n in lengths.items() if n > MAX_FUNCTION_LINES and name not in LONG_FUNCTIONS}
    assert over == {}, f"functions over {MAX_FUNCTION_LINES} lines (make each phase a named function): {over}"
    fixed = [name for name in LONG_FUNCTIONS if lengths.get(name, 0) <= MAX_FUNCTION_LINES]
    assert fixed == [], f"no longer over {MAX_FUNCTION_LINES} lines: remove from LONG_FUNCTIONS: {fixed}"


def one_letter_apart(a: str, b: str) -> bool:
    """Edit distance exactly 1: one letter added, dropped or changed."""
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b)) == 1
    short, long = sorted((a, b), key=len)
    return len(long) == len(short) + 1 and any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def module_names() -> set[str]:
    names = set()
    for path in _py_files():
        names.add(path.parent.name if path.stem in ("__init__", "__main__") else path.stem)
    return names


def test_one_letter_apart_is_an_edit_distance_of_one():
    assert one_letter_apart("setup", "setups") and one_letter_apart("plots", "slots") and one_letter_apart("evals", "eval")
    assert not one_letter_apart("plan", "plan") and not one_letter_apart("step", "setup") and not one_letter_apart("ab", "ba")


def test_no_two_module_names_are_one_letter_apart():
    names = module_names()
    near = {pair for pair in itertools.combinations(sorted(names), 2) if one_letter_apart(*pair)}
    assert sorted(near - set(NEAR_NAMES)) == [], "module names one letter apart (name each for what it holds)"
    assert sorted(set(NEAR_NAMES) - near) == [], "renamed: remove from NEAR_NAMES"


def code_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text with whitespace collapsed) for the lines that carry code: no blank lines,
    no comment lines, no import statements (two modules may well import the same things)."""
    source = path.read_text()
    imports = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.update(range(node.lineno, node.end_lineno + 1))
    out = []
    for number, line in enumerate(source.splitlines(), 1):
        text = " ".join(line.split())
        if text and not text.startswith("#") and number not in imports:
            out.append((number, text))
    return out


def repeated_runs(files: dict[str, list[tuple[int, str]]], run: int = MIN_REPEAT) -> dict[tuple[str, str], str]:
    """Pairs of modules that share ``run`` consecutive code lines: ``{(a, b): "a:line = b:line"}``."""
    first: dict[tuple[str, ...], tuple[str, int]] = {}
    out = {}
    for name, lines in sorted(files.items()):
        for i in range(len(lines) - run + 1):
            window = tuple(text for _, text in lines[i : i + run])
            where = (name, lines[i][0])
            seen = first.setdefault(window, where)
            if seen[0] != name:
                out.setdefault(tuple(sorted((seen[0], name))), f"{seen[0]}:{seen[1]} = {name}:{where[1]}")
    return out


def test_no_run_of_lines_is_repeated_between_modules():
    found = repeated_runs({str(p.relative_to(REPO)): code_lines(p) for p in _py_files()})
    assert {pair: where for pair, where in found.items() if pair not in REPEATS} == {}, \
        f"{MIN_REPEAT}+ lines copied between modules: make them one function"
    assert sorted(set(REPEATS) - set(found)) == [], "no longer repeated: remove from REPEATS"


def test_the_repeat_finder_finds_a_planted_copy(tmp_path):
    body = "".join(f"    total = total + {i} * x\n" for i in range(MIN_REPEAT))
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text(f"import os\n\n\ndef f(x):\n    total = 0\n{body}    return total\n")
    b.write_text(f"# another module\nfrom os import path\n\n\ndef g(x):  \n\n{body.replace('    ', '  ')}\n")
    assert repeated_runs({"a": code_lines(a), "b": code_lines(b)}) == {("a", "b"): "a:6 = b:7"}
    cut = body.splitlines(keepends=True)
    b.write_text("def g(x):\n" + "".join(cut[:-1]))  # one line short of a run
    assert repeated_runs({"a": code_lines(a), "b": code_lines(b)}) == {}


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
