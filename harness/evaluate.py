"""Task score: greedy generation on held-out examples, scored by the task's own checker.

The base model's score is cached per (model identity, load settings, test set, generation
budget), so a sweep scores each base once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from harness.paths import cache_dir
from harness.record import write_json_atomic
from harness.tasks.base import Example, Task, fingerprint, mean_stderr


@dataclass(frozen=True)
class Score:
    mean: float
    stderr: float
    n: int
    seconds: float

    def to_dict(self) -> dict:
        return {"mean": self.mean, "stderr": self.stderr, "n": self.n, "seconds": self.seconds}


def generate(model, tok, prompts: list[list[dict]], *, max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy completions for chat prompts, batched with left padding."""
    import torch

    device = next(model.parameters()).device
    old_side = tok.padding_side
    tok.padding_side = "left"
    was_training = model.training
    model.eval()
    out: list[str] = []
    try:
        for i in range(0, len(prompts), batch_size):
            texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts[i : i + batch_size]]
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            with torch.inference_mode():
                gen = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tok.pad_token_id,
                    eos_token_id=tok.eos_token_id,
                )
            new = gen[:, enc["input_ids"].shape[1] :]
            out.extend(tok.batch_decode(new, skip_special_tokens=True))
    finally:
        tok.padding_side = old_side
        model.train(was_training)
    return out


def score(model, tok, task: Task, examples: list[Example], *, batch_size: int) -> tuple[Score, list[str]]:
    import time

    t = time.perf_counter()
    gens = generate(model, tok, [ex.prompt for ex in examples], max_new_tokens=task.max_new_tokens, batch_size=batch_size)
    mean, se = mean_stderr([task.score(g, ex) for g, ex in zip(gens, examples)])
    return Score(mean, se, len(examples), time.perf_counter() - t), gens


def _base_key(identity: dict, load: dict, task: Task, examples: list[Example]) -> str:
    blob = json.dumps([identity, load, task.name, fingerprint(examples), task.max_new_tokens], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def base_score(model, tok, task: Task, examples: list[Example], *, identity: dict, load: dict, batch_size: int) -> tuple[Score, bool]:
    """Score of the untrained model, from the cache when this exact evaluation was done before."""
    path = cache_dir() / "base_scores" / f"{_base_key(identity, load, task, examples)}.json"
    if path.exists():
        try:
            return Score(**json.loads(path.read_text())), True
        except (ValueError, TypeError):
            pass  # a damaged cache entry is recomputed, never trusted
    result, _ = score(model, tok, task, examples, batch_size=batch_size)
    write_json_atomic(Path(path), result.to_dict())
    return result, False
