"""The stack flags `estimate` and `recommend` share, parsed into ``memory.setup.StackOptions``.

`--loss`, `--checkpointing`, `--offload`, `--precision`, `--float8`, `--lora-experts`, `--kbit-prep`,
`--kernels` and `--long-context`: how the training step is run, whatever the method. Each bad value is
one line naming the flag and the accepted ones (exit 2). The mechanisms are in ``advisor.memory``.
"""

from __future__ import annotations

import argparse

from advisor.errors import AdvisorError, bad_choice


def choice(flag: str, text, choices) -> str:
    value = str(text).strip().lower()
    if value not in choices:
        raise bad_choice(flag, text, choices)
    return value


def add_stack(p: argparse.ArgumentParser, *, precision: bool = True) -> None:
    """The stack options `estimate` and `recommend` share (advisor/memory/setup.py StackOptions)."""
    from advisor.facts import KERNEL_SETS, KERNELS

    p.add_argument("--loss", default="standard", help="standard (the stack's cross-entropy over full logits) or fused "
                   "(fused linear cross-entropy: Liger, Cut Cross-Entropy; never materializes the logits)")
    p.add_argument("--checkpointing", help="activation checkpointing: none, full or selective (matmul and attention outputs "
                   "kept, norms and activations recomputed); "
                   "recommend: chosen for you unless given")
    p.add_argument("--grad-checkpointing", action=argparse.BooleanOptionalAction, default=None, help="same as --checkpointing full (--no-…: none)")
    p.add_argument("--offload", default="none", help="CPU offload: none, params, optimizer, both (= params+optimizer), activations, "
                   "or a '+' combination such as optimizer+activations (default none)")
    if precision:
        p.add_argument("--precision", default="bf16", help="bf16 (bf16 weights; hf: autocast, the Trainer's bf16=True), bf16-true (no "
                       "autocast), fp32, or bf16-mixed (fp32 master weights, bf16 compute: FSDP2 mixed precision, torchtitan)")
    p.add_argument("--float8", action="store_true", help="float8 linears (torchao Float8Linear; fp8 all-gather under FSDP)")
    p.add_argument("--lora-experts", action=argparse.BooleanOptionalAction, default=False,
                   help="MoE: adapt every routed expert too (PEFT target_parameters on transformers >= 5's fused experts); "
                        "default: what all-linear reaches there, attention and shared-expert MLPs")
    p.add_argument("--kbit-prep", action=argparse.BooleanOptionalAction, default=None,
                   help="QLoRA: peft's prepare_model_for_kbit_training upcasts embeddings, head and norms to fp32; --no-kbit-prep "
                        "keeps them bf16 (Unsloth, fms-acceleration). Default: the stack's habit (hf: on; torchtune, litgpt: off)")
    p.add_argument("--kernels", default="none", help=f"fused kernels: {', '.join(KERNELS)} joined by '+', or "
                   f"{' / '.join(k for k in KERNEL_SETS if k != 'none')} (liger: rms_norm+swiglu+rope, "
                   "apply_liger_kernel's defaults; unsloth: + its fused LoRA op); default none")
    p.add_argument("--long-context", action="store_true", help="--seq-len may exceed the model's max_position_embeddings "
                   "(training with RoPE scaling): a warning instead of an error")


def stack_options(args):
    """StackOptions from the flags; a bad value is one line naming the flag, exit 2."""
    from advisor.facts import parse_kernels
    from advisor.memory.setup import CHECKPOINTING, CLI_LOSSES, PRECISIONS, StackOptions, parse_offload

    loss = CLI_LOSSES[choice("--loss", args.loss, tuple(CLI_LOSSES))]
    ckpt = None if args.checkpointing is None else choice("--checkpointing", args.checkpointing, CHECKPOINTING)
    if args.grad_checkpointing is not None:
        alias = "full" if args.grad_checkpointing else "none"
        if ckpt is not None and ckpt != alias:
            flag = "--grad-checkpointing" if args.grad_checkpointing else "--no-grad-checkpointing"
            raise AdvisorError(f"--checkpointing: '{ckpt}' contradicts {flag} (= --checkpointing {alias}); give one")
        ckpt = alias
    precision = choice("--precision", getattr(args, "precision", "bf16"), PRECISIONS)
    kbit = getattr(args, "kbit_prep", None)
    try:
        kernels = parse_kernels(getattr(args, "kernels", "none"))
    except ValueError as e:
        raise AdvisorError(f"--kernels: {e}") from None
    return StackOptions(loss, ckpt, parse_offload(args.offload), precision, bool(args.float8), args.lora_experts, kbit, kernels)


__all__ = ["add_stack", "choice", "stack_options"]
