"""Integer addition/subtraction with an exact checker; the checker doubles as GRPO's reward.

Difficulties and their problem spaces (ordered pairs × operators):

- ``single_digit_add``: a + b, a, b in 0..9 — only 100 problems.
- ``single_digit``: a ± b, a, b in 0..9 — 200 problems; a - b may be negative.
- ``two_digit``: a ± b, a, b in 10..99 — 16,200 problems.
- ``three_digit``: a ± b, a, b in 100..999 — 1,620,000 problems.

Splits never share a problem. When the space is smaller than the examples asked for (the
default 800 of ``single_digit_add``), each split gets a disjoint share of the space in
proportion to its size and repeats it in a shuffled cycle, so every problem of a split has the
same weight (±1 copy) and the split sizes stay what the config says.
"""

from __future__ import annotations

import random
import re
from typing import Sequence

from harness.errors import unknown
from harness.tasks.base import Example, example

DIFFICULTIES = {
    # name: (operand range, operators)
    "single_digit_add": (range(0, 10), ("+",)),
    "single_digit": (range(0, 10), ("+", "-")),
    "two_digit": (range(10, 100), ("+", "-")),
    "three_digit": (range(100, 1000), ("+", "-")),
}
ENUMERATE_LIMIT = 50_000  # spaces up to this size are listed and shuffled; larger are sampled

# A thousands-grouped number ("1,234") or plain digits, with an optional minus sign.
_INT = re.compile(r"-?\d{1,3}(?:,\d{3})+(?!\d)|-?\d+")


def make_prompt(a: int, op: str, b: int) -> list[dict]:
    return [{"role": "user", "content": f"What is {a} {op} {b}? Answer with the number only."}]


def extract_answer(text: str) -> int | None:
    """The model's number: on the first non-empty line, the last integer if the line holds '='
    ("3 + 4 = 7" → 7), else the first integer ("7.", "The answer is -2" → -2). Commas are
    thousands separators. None when the line has no integer."""
    text = text.strip()
    if not text:
        return None
    line = text.splitlines()[0]
    found = _INT.findall(line)
    if not found:
        return None
    return int((found[-1] if "=" in line else found[0]).replace(",", ""))


def check(text: str, answer: str) -> bool:
    got = extract_answer(text)
    return got is not None and got == int(answer)


def _completion_text(completion) -> str:
    # TRL passes plain strings, or for conversational datasets a list of messages.
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") for m in completion)


def reward(completions: Sequence, answer: Sequence[str], **kwargs) -> list[float]:
    """GRPOTrainer reward: 1.0 when the completion's number equals the ``answer`` column."""
    return [float(check(_completion_text(c), a)) for c, a in zip(completions, answer, strict=True)]


def _solve(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b


class ArithmeticTask:
    name = "arithmetic"
    max_new_tokens = 8  # "-1998" is ≤ 5 tokens; 8 leaves room for a trailing "." or "= x"

    def __init__(self, seed: int = 0, n_train: int = 500, n_validation: int = 100, n_test: int = 200,
                 difficulty: str = "single_digit_add"):
        if difficulty not in DIFFICULTIES:
            raise unknown("arithmetic difficulty", difficulty, DIFFICULTIES)
        self.seed, self.difficulty = seed, difficulty
        self.sizes = {"test": n_test, "validation": n_validation, "train": n_train}

    def _space_size(self) -> int:
        operands, ops = DIFFICULTIES[self.difficulty]
        return len(operands) ** 2 * len(ops)

    def _problems(self, rng: random.Random) -> dict[str, list[tuple[int, str, int]]]:
        operands, ops = DIFFICULTIES[self.difficulty]
        total, space = sum(self.sizes.values()), self._space_size()
        if space <= ENUMERATE_LIMIT:
            pool = [(a, op, b) for op in ops for a in operands for b in operands]
            rng.shuffle(pool)
            if space >= total:
                shares = dict(self.sizes)
            else:  # proportional disjoint shares, at least one problem per non-empty split
                shares = {s: max(1, n * space // total) if n else 0 for s, n in self.sizes.items()}
            out, start = {}, 0
            for split, n in self.sizes.items():
                own = pool[start:start + shares[split]]
                start += shares[split]
                out[split] = [own[i % len(own)] for i in range(n)] if own else []
                rng.shuffle(out[split])
            return out
        seen: set[tuple[int, str, int]] = set()
        out = {}
        for split, n in self.sizes.items():
            out[split] = []
            while len(out[split]) < n:  # 1.6M problems: rejection is cheap at these sizes
                p = (rng.choice(operands), rng.choice(ops), rng.choice(operands))
                if p not in seen:
                    seen.add(p)
                    out[split].append(p)
        return out

    def splits(self) -> dict[str, list[Example]]:
        rng = random.Random(f"arithmetic:{self.seed}:{self.difficulty}")
        problems = self._problems(rng)
        return {
            split: [example([*make_prompt(a, op, b), {"role": "assistant", "content": str(_solve(a, op, b))}])
                    for a, op, b in problems[split]]
            for split in ("train", "validation", "test")
        }

    def score(self, generation: str, ex: Example) -> float:
        return float(check(generation, ex.answer))
