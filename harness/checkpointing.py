"""Activation checkpointing: ``train.checkpointing`` = none | full | selective.

- ``full``: each decoder layer keeps only its input; everything inside is recomputed in backward
  (transformers' gradient checkpointing, non-reentrant). Activation memory ~ one hidden state per
  layer, at one more forward per step.
- ``selective``: the same per-layer checkpoint with a policy
  (``torch.utils.checkpoint.create_selective_checkpoint_contexts``): the outputs of attention and
  of the base model's matmuls are saved, the cheap rest (norms, activations, elementwise products,
  RoPE, LoRA's up-projections) is recomputed. Backward then redoes almost none of the FLOPs (the
  matmuls are nearly all of them) for part of full checkpointing's memory saving (measured on a
  small Llama in tests/test_loss.py: none > 1.3 × selective > 1.3² × full).
  A matmul is saved when its inner dimension exceeds ``MIN_SAVED_K``: redoing an output element
  costs 2k FLOPs, so LoRA's B (k = r) is cheaper to recompute than to keep, q/k/v/o and the MLP's
  (k = hidden or intermediate: thousands) are not.
"""

from __future__ import annotations

from functools import partial
from typing import Any

MODES = ("none", "full", "selective")
MIN_SAVED_K = 128  # above LoRA ranks (r ≤ 128), below any model's hidden size


def _saved_ops() -> set:
    import torch

    aten = torch.ops.aten
    ops = set()
    for name in ("_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
                 "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_cudnn_attention"):  # fmt: skip
        if hasattr(aten, name):
            ops.add(getattr(aten, name).default)
    return ops


def _inner_dim(op, args) -> int:
    """k of a matmul: mm(a, b) / bmm(a, b): a's last dim; addmm(bias, a, b) / baddbmm: the second input's."""
    import torch

    aten = torch.ops.aten
    if op in (aten.mm.default, aten.bmm.default):
        return int(args[0].shape[-1])
    if op in (aten.addmm.default, aten.baddbmm.default):
        return int(args[1].shape[-1])
    return 0


def _policy(saved: set, ctx, op, *args, **kwargs):
    from torch.utils.checkpoint import CheckpointPolicy

    if op in saved or _inner_dim(op, args) > MIN_SAVED_K:
        return CheckpointPolicy.MUST_SAVE
    return CheckpointPolicy.PREFER_RECOMPUTE


def selective_context():
    """A fresh (forward, recompute) context pair per checkpointed call, as ``context_fn`` wants."""
    from torch.utils.checkpoint import create_selective_checkpoint_contexts

    return create_selective_checkpoint_contexts(partial(_policy, _saved_ops()))


def checkpoint_kwargs(mode: str) -> dict | None:
    """``torch.utils.checkpoint.checkpoint`` keyword arguments for ``mode`` (None: no checkpointing)."""
    if mode == "none":
        return None
    if mode not in MODES:
        raise ValueError(f"unknown checkpointing '{mode}' ({', '.join(MODES)})")
    kwargs: dict = {"use_reentrant": False}
    if mode == "selective":
        kwargs["context_fn"] = selective_context
    return kwargs


def enable(model: Any, mode: str) -> Any:
    """Turn ``mode`` on for a transformers model (or a PEFT model around one)."""
    kwargs = checkpoint_kwargs(mode)
    if kwargs is None:
        return model
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    if hasattr(target, "activation_checkpointing_enable"):
        target.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:  # transformers before the rename
        target.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()  # a frozen embedding: the checkpointed blocks need a grad-requiring input
    return model
