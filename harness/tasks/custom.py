"""The user's own data: JSONL files of ``{"messages": [...]}`` chats ending in an assistant answer."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UserError, unknown
from harness.spec import TaskSpec
from harness.tasks.base import Example, example, exact_match, normalize

ROLES = {"system", "user", "assistant"}


def _first_word(generation: str, ex: Example) -> float:
    words = re.findall(r"[\w-]+", normalize(generation))
    return float(bool(words) and words[0] == normalize(ex.answer))


def _contains(generation: str, ex: Example) -> float:
    return float(normalize(ex.answer) in generation.strip().lower())


METRICS = {"exact_match": exact_match, "first_word": _first_word, "contains": _contains}


def read_chat_jsonl(path: str | Path) -> list[Example]:
    """Read and check a chat JSONL file; a bad line is an error naming the file and line number."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"data file not found: {path}")
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{where}: not valid JSON ({e.msg})") from None
            msgs = row.get("messages") if isinstance(row, dict) else None
            if not isinstance(msgs, list) or len(msgs) < 2:
                raise UserError(f'{where}: expected {{"messages": [...]}} with at least a user and an assistant turn')
            for m in msgs:
                if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                    raise UserError(f"{where}: each message needs a role (system/user/assistant) and a string content")
            if msgs[-1]["role"] != "assistant":
                raise UserError(f"{where}: the last message must be the assistant's answer")
            out.append(example(msgs, source=where))
    if not out:
        raise UserError(f"{path}: no examples")
    return out


def subsample(rows: list[Example], n: int, seed: int, source: str = "train_file") -> list[Example]:
    """The first ``n`` rows of a seeded shuffle (n = 0: all rows, in file order).

    Nested: the 64-row sample is the first 64 of the 128-row one, so a learning curve over
    ``task.n_train`` adds data to a fixed set instead of drawing a new one at every size.
    """
    if n <= 0:
        return rows
    if n > len(rows):
        raise UserError(f"task.n_train={n} but {source} has only {len(rows)} examples (task.n_train=0 uses all of them)")
    import random

    order = list(range(len(rows)))
    random.Random(f"subsample:{seed}").shuffle(order)
    return [rows[i] for i in order[:n]]


@dataclass
class CustomTask:
    train_file: str
    eval_file: str
    metric: str = "exact_match"
    n_train: int = 0  # 0 = every row of train_file; n > 0 = a seeded subsample of n rows
    seed: int = 0
    name: str = "custom"
    max_new_tokens: int = 32

    @classmethod
    def from_spec(cls, spec: TaskSpec) -> "CustomTask":
        if not spec.train_file or not spec.eval_file:
            raise UserError("task=custom needs task.train_file=… and task.eval_file=… (JSONL of {\"messages\": [...]})")
        if spec.metric not in METRICS:
            raise unknown("task.metric", spec.metric, METRICS)
        if spec.n_train < 0:
            raise UserError(f"task.n_train must be >= 0 (0 = all of train_file; got {spec.n_train})")
        return cls(spec.train_file, spec.eval_file, spec.metric, n_train=spec.n_train, seed=spec.seed)

    def splits(self) -> dict[str, list[Example]]:
        train = subsample(read_chat_jsonl(self.train_file), self.n_train, self.seed, self.train_file)
        test = read_chat_jsonl(self.eval_file)
        longest = max(len(ex.answer) for ex in test)
        # Room for the longest reference answer (~4 chars/token) plus slack.
        self.max_new_tokens = min(256, max(16, longest // 3 + 8))
        return {"train": train, "validation": test, "test": test}

    def score(self, generation: str, ex: Example) -> float:
        return METRICS[self.metric](generation, ex)
