"""The user's own data: JSONL files of ``{"messages": [...]}`` chats ending in an assistant answer."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from harness.config import TaskSpec
from harness.errors import UserError, unknown
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


@dataclass
class CustomTask:
    train_file: str
    eval_file: str
    metric: str = "exact_match"
    name: str = "custom"
    max_new_tokens: int = 32

    @classmethod
    def from_spec(cls, spec: TaskSpec) -> "CustomTask":
        if not spec.train_file or not spec.eval_file:
            raise UserError("task=custom needs task.train_file=… and task.eval_file=… (JSONL of {\"messages\": [...]})")
        if spec.metric not in METRICS:
            raise unknown("task.metric", spec.metric, METRICS)
        return cls(spec.train_file, spec.eval_file, spec.metric)

    def splits(self) -> dict[str, list[Example]]:
        train = read_chat_jsonl(self.train_file)
        test = read_chat_jsonl(self.eval_file)
        longest = max(len(ex.answer) for ex in test)
        # Room for the longest reference answer (~4 chars/token) plus slack.
        self.max_new_tokens = min(256, max(16, longest // 3 + 8))
        return {"train": train, "validation": test, "test": test}

    def score(self, generation: str, ex: Example) -> float:
        return METRICS[self.metric](generation, ex)
