"""What a task is: chat examples in three splits, and a scorer for generated answers.

A task never touches a model. The harness trains on ``Example.prompt`` + ``Example.answer``
(loss on the answer only) and scores by generating from ``Example.prompt`` and calling
``Task.score(generation, example)``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Protocol, Sequence

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Example:
    """One chat example. ``messages`` ends with the assistant's reference answer."""

    messages: tuple[dict, ...]
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def prompt(self) -> list[dict]:
        """Every message before the final assistant answer (system and user turns)."""
        return [dict(m) for m in self.messages[:-1]]

    @property
    def answer(self) -> str:
        return self.messages[-1]["content"]

    def to_json(self) -> dict:
        out = {"messages": [dict(m) for m in self.messages]}
        if self.meta:
            out["meta"] = self.meta
        return out


def example(messages: Sequence[dict], **meta) -> Example:
    return Example(tuple({"role": m["role"], "content": m["content"]} for m in messages), meta)


class Task(Protocol):
    """The contract every task module fulfils."""

    name: str
    # Greedy-decoding budget for scoring; short answers keep evaluation cheap on CPU.
    max_new_tokens: int

    def splits(self) -> dict[str, list[Example]]:
        """``{"train": [...], "validation": [...], "test": [...]}``; deterministic for a given config."""
        ...

    def score(self, generation: str, ex: Example) -> float:
        """1.0 when the generated text answers ``ex`` correctly, else 0.0 (or a value in [0, 1])."""
        ...


def normalize(text: str) -> str:
    """Lower-case, trim, and cut at the first line: the first line is the model's answer."""
    text = text.strip().lower()
    return text.splitlines()[0].strip() if text else ""


def exact_match(generation: str, ex: Example) -> float:
    return float(normalize(generation) == normalize(ex.answer))


def mean_stderr(scores: Sequence[float]) -> tuple[float, float]:
    """Mean and its standard error (sample std / sqrt(n)); stderr is nan for n < 2."""
    n = len(scores)
    if n == 0:
        return float("nan"), float("nan")
    mean = sum(scores) / n
    if n < 2:
        return mean, float("nan")
    var = sum((s - mean) ** 2 for s in scores) / (n - 1)
    return mean, math.sqrt(var / n)


def fingerprint(examples: Sequence[Example]) -> str:
    """A short content hash of a list of examples (cache keys for base-model scores)."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps(ex.messages, sort_keys=True).encode())
    return h.hexdigest()[:12]
