"""Forgetting probes and tunebench's own lm-eval tasks: names, rendering, and the forgetting sums.

A probe is an lm-eval task scored on the base model and again on the tuned one. tunebench ships
two, as YAML templates in ``harness/lm_eval_tasks/`` over data in ``harness/data/``, so they work
offline:

    general_mc   4-choice general-knowledge questions; log-likelihood accuracy (higher is better)
    general_ppl  original prose, one document per paragraph; word perplexity (lower is better)

Any other name is one of lm-eval's own tasks (mmlu, hellaswag, arc_easy, …); it needs its dataset
in the Hugging Face cache, because tunebench evaluates offline (see ``harness/evaluate.py``).

The templates carry placeholders (``__DATA_FILE__``, ``__CACHE_DIR__``, ``__MAX_NEW_TOKENS__``).
``render`` writes the documents as JSONL plus the filled-in YAML into a temporary include
directory, so every path lm-eval sees is absolute wherever tunebench is installed. The same
mechanism turns the fine-tuning task's held-out examples into the ``tunebench_task`` lm-eval task.

Forgetting, per probe (record field ``metrics.forgetting.<probe>``)::

    delta  = base − tuned                 # in the metric's own units, whatever its direction
    drop   = delta if higher_is_better else −delta     # ``drop(entry)``: > 0 = the tuned model is worse
    stderr = sqrt(se_base² + se_tuned²)   # independent-samples error: conservative, since base
                                          # and tuned are scored on the same documents
    significant = drop > 2 · stderr       # worse by more than 2 standard errors

The one convention every reader uses: ``delta`` is stored as measured (base − tuned), and
``drop`` orients it so that **positive = forgot**:

    general_mc  (accuracy, higher is better):   base 0.70, tuned 0.27 → delta +0.43, drop +0.43 (forgot)
    general_ppl (perplexity, lower is better):  base 20,   tuned 25   → delta −5,    drop +5    (forgot)

``harness report`` averages ``drop`` over probes ("forgetting", lower is better; "least forgetting"
is the smallest) and ``harness regress`` compares ``drop`` between baseline and candidate (a larger
drop beyond 2 combined stderrs is a regression). Records written before ``drop`` existed are read
through ``drop(entry)``, which derives it from ``delta`` and ``higher_is_better`` (missing → True).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from harness.errors import UserError, did_you_mean
from harness.paths import DATA_DIR, PACKAGE_DIR

TEMPLATES_DIR = PACKAGE_DIR / "lm_eval_tasks"
TASK_TEMPLATE = "tunebench_task"  # the fine-tuning task's score, rendered per run
SIGNIFICANCE_Z = 2.0  # a drop beyond 2 standard errors is flagged (~95% one-sided: 97.7%)
_PLACEHOLDER = re.compile(r"__[A-Z_]+__")


@dataclass(frozen=True)
class Probe:
    name: str
    metric: str | None  # lm-eval metric reported; None → chosen from the results (standard tasks)
    higher_is_better: bool | None  # None → lm-eval's own declaration (standard tasks)
    rows: Callable[[], list[dict]] | None = None  # tunebench probe: its documents; None → lm-eval's task
    about: str = ""

    @property
    def shipped(self) -> bool:
        return self.rows is not None


# ---------------------------------------------------------------- shipped probe data
def _general_mc_rows() -> list[dict]:
    """The shipped MC questions, checked: a malformed line is named, never silently skipped."""
    path = DATA_DIR / "general_mc.jsonl"
    if not path.exists():
        raise UserError(f"probe 'general_mc': shipped file {path} is missing (reinstall tunebench)")
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            q = json.loads(line)
            ok = isinstance(q["question"], str) and len(q["choices"]) >= 2 and 0 <= int(q["answer"]) < len(q["choices"])
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            raise UserError(f"probe 'general_mc': {path.name} line {i} is not a valid question")
        # lm-eval scores each choice as a continuation of "Answer:", so choices start with a space.
        rows.append({
            "id": str(q.get("id", i)),
            "domain": str(q.get("domain", "")),
            "question": q["question"].strip(),
            "choices": [" " + str(c).strip() for c in q["choices"]],
            "answer": int(q["answer"]),
        })
    return rows


def _general_ppl_rows() -> list[dict]:
    path = DATA_DIR / "general_ppl.txt"
    if not path.exists():
        raise UserError(f"probe 'general_ppl': shipped file {path} is missing (reinstall tunebench)")
    text = path.read_text(encoding="utf-8")
    return [{"text": p.strip()} for p in re.split(r"\n\s*\n", text) if p.strip()]


PROBES: dict[str, Probe] = {
    "general_mc": Probe("general_mc", "acc", True, _general_mc_rows, "general-knowledge multiple choice (chance 0.25)"),
    "general_ppl": Probe("general_ppl", "word_perplexity", False, _general_ppl_rows, "word perplexity on original prose"),
}


def spread(rows: list[dict], limit: int | None) -> list[dict]:
    """``limit`` rows evenly spaced over the file (not the first ones: the shipped files are
    grouped by domain/topic, and a prefix would probe only the first few)."""
    if not limit or limit >= len(rows):
        return rows
    return [rows[i * len(rows) // limit] for i in range(limit)]


def fingerprint(rows: Sequence[dict]) -> str:
    return hashlib.sha256(json.dumps(list(rows), sort_keys=True).encode()).hexdigest()[:12]


def template_hash(name: str) -> str:
    """Changes to a shipped YAML (prompt, metric) invalidate cached base scores."""
    path = TEMPLATES_DIR / f"{name}.yaml"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.exists() else ""


# ---------------------------------------------------------------- names
def lm_eval_task_names() -> list[str]:
    """Every task, group and tag lm-eval knows, cached per lm-eval version: building lm-eval's
    index reads ~14k YAML files (~10-30 s on a shared CPU); later lookups are instant."""
    from importlib import metadata

    from harness.paths import cache_dir
    from harness.atomic import write_json

    version = metadata.version("lm_eval")
    path = cache_dir() / "lm_eval" / f"task_names-{version}.json"
    if path.exists():
        try:
            return json.loads(path.read_text())["names"]
        except (ValueError, KeyError):
            pass
    from harness.lm_eval_backend import default_task_manager

    tm = default_task_manager()
    names = sorted(set(tm.all_tasks) | set(tm.all_groups) | set(tm.all_tags))
    write_json(path, {"lm_eval": version, "names": names})
    return names


def resolve(names: Sequence[str]) -> list[Probe]:
    """Probes by name: tunebench's own first, else lm-eval's; an unknown name is a UserError."""
    out = []
    for name in names:
        if name in PROBES:
            out.append(PROBES[name])
            continue
        if name == TASK_TEMPLATE:
            raise UserError(f"'{TASK_TEMPLATE}' is the fine-tuning task's own score, not a probe")
        known = lm_eval_task_names()
        if name not in known:
            hint = did_you_mean(name, PROBES) or did_you_mean(name, known)
            raise UserError(
                f"unknown probe '{name}'{hint}; tunebench's probes: {', '.join(sorted(PROBES))} "
                f"(or an lm-eval task such as mmlu, hellaswag, arc_easy)"
            )
        out.append(Probe(name, None, None, None, "lm-eval task"))
    if len({p.name for p in out}) != len(out):
        raise UserError(f"eval.probes lists a probe twice: {', '.join(names)}")
    return out


# ---------------------------------------------------------------- rendering
def render(include_dir: Path, template: str, rows: list[dict], **fills) -> Path:
    """Write ``rows`` as ``<template>.jsonl`` and the filled-in ``<template>.yaml`` into
    ``include_dir`` (a TaskManager include path); returns the YAML's path."""
    include_dir = Path(include_dir)
    data = include_dir / f"{template}.jsonl"
    with open(data, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    values = {"DATA_FILE": data, "CACHE_DIR": include_dir / "hf_datasets", **fills}
    text = (TEMPLATES_DIR / f"{template}.yaml").read_text(encoding="utf-8")
    for key, value in values.items():
        # Paths as JSON strings: a valid double-quoted YAML scalar whatever the characters.
        text = text.replace(f"__{key}__", json.dumps(str(value)) if isinstance(value, Path) else str(value))
    left = _PLACEHOLDER.findall(text)
    assert not left, f"{template}.yaml: unfilled placeholders {left}"
    out = include_dir / f"{template}.yaml"
    out.write_text(text, encoding="utf-8")
    return out


# ---------------------------------------------------------------- the fine-tuning task as an lm-eval task
# lm-eval calls ``score_task_doc`` (named by ``process_results: !function`` in tunebench_task.yaml)
# in this process; it finds the task's checker and the original Example through the row's token.
_SCORERS: dict[str, tuple[Callable, Sequence]] = {}


@contextlib.contextmanager
def task_scorer(score: Callable, examples: Sequence) -> Iterator[str]:
    token = f"s{id(examples):x}-{len(_SCORERS)}"
    _SCORERS[token] = (score, examples)
    try:
        yield token
    finally:
        _SCORERS.pop(token, None)


def task_rows(tok, examples: Sequence, token: str) -> list[dict]:
    """One row per held-out example: the chat-templated prompt exactly as generation sees it."""
    return [
        {
            "input": tok.apply_chat_template(ex.prompt, tokenize=False, add_generation_prompt=True),
            "target": ex.answer,
            "index": i,
            "scorer": token,
        }
        for i, ex in enumerate(examples)
    ]


def score_task_doc(doc: dict, results: list[str]) -> dict:
    score, examples = _SCORERS[doc["scorer"]]
    return {"task_score": float(score(results[0], examples[doc["index"]]))}


# ---------------------------------------------------------------- forgetting
def forgetting(base, tuned) -> dict:
    """The record entry for one probe from two ``evaluate.Score``s (see the module docstring)."""
    delta = base.mean - tuned.mean
    se = math.sqrt(base.stderr**2 + tuned.stderr**2) if _finite(base.stderr) and _finite(tuned.stderr) else float("nan")
    worse_by = oriented_drop(delta, tuned.higher_is_better)  # > 0: the tuned model is worse
    return {
        "base": base.mean,
        "tuned": tuned.mean,
        "delta": delta,
        "drop": worse_by,
        "stderr": se,
        "significant": bool(_finite(se) and worse_by > SIGNIFICANCE_Z * se),
        "higher_is_better": tuned.higher_is_better,
        "metric": tuned.metric,
        "n": tuned.n,
        "base_stderr": base.stderr,
        "tuned_stderr": tuned.stderr,
        "seconds": tuned.seconds,
        "base_seconds": base.seconds,
    }


def oriented_drop(delta, higher_is_better):
    """``delta = base − tuned`` oriented so that > 0 = forgot. Floats or pandas Series (for a
    Series, ``higher_is_better`` is a Series too); a missing direction counts as higher-is-better."""
    if hasattr(higher_is_better, "where"):  # pandas: per-row direction, NaN/None → True
        hib = higher_is_better.astype(object).where(higher_is_better.notna(), True).astype(bool)
        return delta.where(hib, -delta)
    return delta if higher_is_better is None or bool(higher_is_better) else -delta


def drop(entry: dict) -> float:
    """One record entry's drop (> 0 = forgot), derived from ``delta`` when the entry predates ``drop``."""
    if entry.get("drop") is not None:
        return entry["drop"]
    return oriented_drop(entry["delta"], entry.get("higher_is_better"))


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
