"""The small contract every fine-tuning method fulfils.

``harness.run`` owns everything methods share (loading, memory, scoring, the record); a method
says how to load the base, how to wrap it, and how to train it:

    load_kwargs(spec)           → extra arguments for models.load (e.g. quantize="4bit")
    prepare(model, spec)        → the model to train (adapters attached, parameters frozen)
    fit(model, tok, splits, spec, clock, progress) → method-specific metrics (dict)
    flops_per_token(arch, seq_len, adapter_params) → training FLOPs per token for MFU
"""

from __future__ import annotations

from typing import Any, Protocol

from harness.config import RunSpec
from harness.measure import StepClock
from harness.tasks.base import Example


class Method(Protocol):
    name: str
    trains_base: bool  # True when base weights get gradients (full FT): 6N vs 4N FLOPs/token

    def load_kwargs(self, spec: RunSpec) -> dict: ...

    def prepare(self, model: Any, spec: RunSpec) -> Any: ...

    def fit(self, model: Any, tok: Any, splits: dict[str, list[Example]], spec: RunSpec, clock: StepClock, progress: Any) -> dict: ...


def count_params(model) -> tuple[int, int]:
    """(trainable, total). bitsandbytes packs two 4-bit weights per byte: count them unpacked."""
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        if getattr(p, "quant_state", None) is not None or p.__class__.__name__ == "Params4bit":
            n *= 2
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total
