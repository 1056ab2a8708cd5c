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


INNERS = ("full", "lora")


def prepare_inner(wrapper: "Method", model: Any, spec: RunSpec) -> Any:
    """``prepare`` of a wrapper method (fsdp, grpo, dpo): delegate to the inner method and take
    its FLOPs accounting (``trains_base``), which run.py reads after ``prepare``."""
    inner = inner_method(spec)
    wrapper.trains_base = inner.trains_base
    return inner.prepare(model, spec)


def inner_method(spec: RunSpec, default: str = "lora") -> "Method":
    """What a wrapper method (fsdp, grpo, dpo) trains: ``method.inner`` = full | lora.

    LoRA here includes its variants: ``method.quantize=4bit`` / ``method.use_dora=true`` apply.
    """
    from harness.errors import UserError

    inner = spec.method.inner or default
    if inner not in INNERS:
        raise UserError(f"method.inner '{inner}' for {spec.method.name} must be one of: {', '.join(INNERS)}")
    if inner == "full" and spec.method.quantize:
        raise UserError(f"method.quantize=4bit needs method.inner=lora ({spec.method.name}): a 4-bit base cannot be trained")
    from harness.methods import full, lora

    return {"full": full.METHOD, "lora": lora.METHOD}[inner]


def check_options(spec: RunSpec, accepted: dict) -> dict:
    """``method.options`` merged over ``accepted`` (the defaults); an unknown key is a one-line error."""
    from harness.errors import UserError, did_you_mean

    opts = dict(spec.method.options)
    for key in opts:
        if key not in accepted:
            raise UserError(f"unknown {spec.method.name} option 'method.options.{key}'{did_you_mean(key, accepted)}; "
                            f"accepted: {', '.join(accepted)}")
    return {**accepted, **opts}


def weight_bytes(model) -> dict:
    """Bytes the weights occupy: parameters + buffers (what ``get_memory_footprint`` counts) plus
    the 4-bit quantization constants bitsandbytes keeps beside each weight in ``quant_state``
    (absmax per 64 weights, itself 8-bit + fp32 per 256 blocks with double quantization), which
    ``get_memory_footprint`` does not see."""
    def nbytes(t) -> int:
        return t.numel() * t.element_size() if t is not None else 0

    params = sum(nbytes(p) for p in model.parameters())
    buffers = sum(nbytes(b) for b in model.buffers())
    seen: dict[int, int] = {}  # data_ptr → bytes: the code tables may be shared between weights
    for p in model.parameters():
        qs = getattr(p, "quant_state", None)
        if qs is None:
            continue
        parts = [qs.absmax, getattr(qs, "code", None)]
        if getattr(qs, "state2", None) is not None:
            parts += [qs.state2.absmax, qs.state2.code]
        for t in parts:
            if t is not None:
                seen[t.data_ptr()] = nbytes(t)
    quant = sum(seen.values())
    return {"param_bytes": params, "buffer_bytes": buffers, "quant_state_bytes": quant, "total_bytes": params + buffers + quant}
