"""tunebench's own lm-eval tasks, shipped as YAML templates in ``harness/lm_eval_tasks/``: rendering
them, and the fine-tuning task's scorer that one of them calls back.

The templates carry placeholders (``__DATA_FILE__``, ``__CACHE_DIR__``, ``__MAX_NEW_TOKENS__``).
``render`` writes the documents as JSONL plus the filled-in YAML into a temporary include
directory, so every path lm-eval sees is absolute wherever tunebench is installed. The shipped
probes (``harness/probes.py``) are rendered this way, and so is the fine-tuning task's held-out
set, as the ``tunebench_task`` lm-eval task (``tunebench_task.yaml``), whose
``process_results`` is ``score_task_doc`` below.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from pathlib import Path
from typing import Callable, Iterator, Sequence

from harness.paths import PACKAGE_DIR

TEMPLATES_DIR = PACKAGE_DIR / "lm_eval_tasks"
TASK_TEMPLATE = "tunebench_task"  # the fine-tuning task's score, rendered per run
_PLACEHOLDER = re.compile(r"__[A-Z_]+__")


def template_hash(name: str) -> str:
    """Changes to a shipped YAML (prompt, metric) invalidate cached base scores."""
    path = TEMPLATES_DIR / f"{name}.yaml"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.exists() else ""


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
