"""Forgetting probes: which exist, their documents, and resolving a name to one.

A probe is an lm-eval task scored on the base model and again on the tuned one. tunebench ships
two, as YAML templates in ``harness/lm_eval_tasks/`` (rendered by ``harness/lm_eval_templates.py``)
over data in ``harness/data/``, so they work offline:

    general_mc   4-choice general-knowledge questions; log-likelihood accuracy (higher is better)
    general_ppl  original prose, one document per paragraph; word perplexity (lower is better)

Any other name is one of lm-eval's own tasks (mmlu, hellaswag, arc_easy, …); it needs its dataset
in the Hugging Face cache, because tunebench evaluates offline (see ``harness/evaluate.py``).
What a probe's scores become in the record (delta, drop, significance) is ``harness/forgetting.py``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Callable, Sequence

from harness.errors import UserError, did_you_mean
from harness.lm_eval_templates import TASK_TEMPLATE
from harness.paths import DATA_DIR


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
