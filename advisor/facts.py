"""Facts that the harness and the advisor must agree on, written once.

Plain Python, no torch, no third-party import: the advisor reads it to answer instantly, and the
harness imports it (``harness`` may import ``advisor``; ``advisor`` never imports ``harness``).

- GPU datasheets: memory, dense bf16 tensor peak, bandwidth, and how a device name maps to a card
  (the harness's MFU divides by the same peak the advisor's time model starts from);
- the training FLOPs per token the harness reports MFU with;
- which direction is better for every metric the report, ``harness regress`` and the advisor compare;
- method names (what trains vs what wraps it), LoRA target presets, LoRA's default alpha and optimizer names;
- the fused kernels' names (``harness.kernels``, ``--kernels``), and when a CPU run's timing was shared.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

# ---------------------------------------------------------------- GPUs


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_gb: float  # as sold
    usable_gb: float  # what torch.cuda.get_device_properties(0).total_memory reports, in GiB
    bf16_tflops: float  # dense tensor-core peak, no sparsity (vendor datasheet)
    bf16: bool = True  # T4 (Turing) has no bf16: fp16 + loss scaling instead
    aliases: tuple[str, ...] = ()
    bandwidth: float | None = None  # HBM/GDDR bytes/s, vendor datasheet


# Usable memory: the card's total minus what the driver keeps (ECC, reserved pages), as torch sees it.
GPUS: dict[str, Gpu] = {g.name: g for g in [
    Gpu("T4", 16, 14.6, 65, bf16=False, bandwidth=320e9),  # 65 = fp16 tensor peak
    Gpu("L4", 24, 22.0, 121, bandwidth=300e9),
    Gpu("A10G", 24, 22.0, 70, aliases=("a10",), bandwidth=600e9),  # AWS g5: 23,028 MiB visible
    Gpu("RTX 3090", 24, 23.7, 71, aliases=("3090", "rtx3090"), bandwidth=936e9),
    Gpu("RTX 4090", 24, 23.6, 165, aliases=("4090", "rtx4090"), bandwidth=1008e9),
    Gpu("A6000", 48, 47.5, 155, aliases=("rtxa6000",), bandwidth=768e9),
    Gpu("L40S", 48, 44.4, 362, bandwidth=864e9),
    Gpu("A100-40GB", 40, 39.4, 312, aliases=("a10040g", "a10040gb", "a100 40gb"), bandwidth=1555e9),
    Gpu("A100-80GB", 80, 79.2, 312, aliases=("a10080g", "a10080gb", "a100 80gb"), bandwidth=2039e9),
    Gpu("H100", 80, 79.1, 989, aliases=("h100sxm", "h10080gb", "h10080g"), bandwidth=3350e9),  # SXM; PCIe is 756 TFLOP/s
    Gpu("H200", 141, 139.8, 989, bandwidth=4800e9),
]}  # fmt: skip


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def gpu_for_device_name(device_name: str) -> Gpu | None:
    """The catalog card a device reports itself as (``torch.cuda.get_device_name()``, e.g. ``NVIDIA
    A100-SXM4-80GB``, ``NVIDIA GeForce RTX 4090``, ``Tesla T4``), or None when it is not in the table.

    The longest catalog name inside the device's name wins (``L40S`` before ``L4``); an A100 is the
    80 GB card when its name says 80, else the 40 GB one (both 312 TFLOP/s bf16).
    """
    key = _key(device_name)
    if "a100" in key:
        return GPUS["A100-80GB" if "80" in key else "A100-40GB"]
    found = [name for name in GPUS if _key(name) in key]
    return GPUS[max(found, key=len)] if found else None


# ---------------------------------------------------------------- FLOPs


def matmul_params(arch: dict) -> int:
    """Parameters that take part in a matmul per token: layers + LM head (embedding lookup is free).

    ``arch`` is a Hugging Face config's main fields (the record's ``arch``)."""
    d, f, L = arch["hidden_size"], arch["intermediate_size"], arch["num_hidden_layers"]
    heads, kv = arch["num_attention_heads"], arch["num_key_value_heads"]
    head_dim = d // heads
    attn = d * d * 2 + 2 * d * kv * head_dim  # q, o + k, v (grouped-query)
    mlp = 3 * d * f  # gate, up, down
    return L * (attn + mlp) + d * arch["vocab_size"]


def flops_per_token(arch: dict, seq_len: float, *, trains_base: bool, adapter_params: int = 0) -> float:
    """Training FLOPs per token (the numerator of the harness's MFU).

    Forward = 2·N (N = matmul parameters) + attention scores 4·L·T·d (QKᵀ and AV at context T).
    Full fine-tuning: backward = 2× forward (input grads + weight grads) → 6N + 12·L·T·d (PaLM, App. B).
    Adapter methods: the frozen base still needs input grads but no weight grads → 4N + 12·L·T·d,
    plus 6 FLOPs per adapter parameter. Causal masking's halving is ignored, as PaLM does.
    """
    n = matmul_params(arch)
    attn = 12 * arch["num_hidden_layers"] * seq_len * arch["hidden_size"]
    base = 6 * n if trains_base else 4 * n
    return base + attn + 6 * adapter_params


# ---------------------------------------------------------------- metrics


# Every metric the report, `harness regress` and the advisor's evidence compare: is higher better?
HIGHER_IS_BETTER = {
    "peak_memory_gb": False,
    "tokens_per_s": True,
    "mfu": True,
    "task_score": True,  # also a task-score gain over the base model
    "forgetting": False,  # a probe's drop (positive = forgot)
    "forgot_share": False,
    "train_loss_last": False,
    "wall_s": False,
}


def best_first(metric: str, values: dict) -> list:
    """The keys of ``values`` (key → a value of ``metric``), best first by the metric's direction."""
    sign = -1 if HIGHER_IS_BETTER[metric] else 1
    return sorted(values, key=lambda k: sign * values[k])


# ---------------------------------------------------------------- methods and presets


SFT_METHODS = ("full", "lora", "qlora", "dora")  # what trains; the memory model sizes these
WRAPPER_METHODS = ("fsdp", "grpo", "dpo")  # wrap one of SFT_METHODS (``method.inner``)
METHODS = SFT_METHODS + WRAPPER_METHODS  # the `method=<name>`s the harness ships (besides SIZED_AS)
# Harness methods the memory model sizes as another one (a LoRA variant that changes only its scale
# costs what LoRA costs): name → one of SFT_METHODS. The harness's method table reads it.
SIZED_AS: dict[str, str] = {"rslora": "lora"}  # rsLoRA: only the scale differs (alpha/√r), same tensors
LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# What `method.targets` presets adapt in a Llama-style decoder layer.
TARGET_PRESETS = {
    "q_proj+v_proj": ("q_proj", "v_proj"),  # the LoRA paper's choice: fewest parameters
    "attn": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "all-linear": LINEAR_NAMES,  # peft: every Linear except the LM head (QLoRA paper's choice)
}
OPTIMIZERS = ("adamw", "adamw8bit", "paged_adamw8bit", "sgd")
# train.loss=chunked (harness/loss.py): the head and cross-entropy run this many tokens at a time,
# recomputed in backward; the advisor sizes it as a fused loss with this chunk (memory.setup).
LOSS_CHUNK_TOKENS = 1024


def default_lora_alpha(rank: int) -> int:
    """LoRA's alpha when none is set: 2 × r, so the update's scale alpha/r stays 2 when r changes
    (the harness's ``method.alpha: null`` and the advisor's recipe)."""
    return 2 * rank


# A CPU record's cpu_busy_elsewhere (harness/measure.py: the share of the CPUs other processes used while its
# steps were timed) above this: its tokens/s is not the setup's alone. The harness flags such runs when it
# prints them; `advisor validate` leaves them out of its time score.
BUSY_ELSEWHERE = 0.1


# fused kernels (harness/kernels.py runs them; the memory model counts what each saves)
KERNELS = ("rms_norm", "swiglu", "rope", "lora")
# liger: apply_liger_kernel_to_*'s defaults (its loss is --loss fused); unsloth: those and its fused LoRA op
KERNEL_SETS = {"liger": ("rms_norm", "swiglu", "rope"), "unsloth": KERNELS, "none": ()}


def parse_kernels(text) -> tuple[str, ...]:
    """``train.kernels`` / ``--kernels``: a list, or names joined by '+' or ','; or a set (KERNEL_SETS).
    Returns them in KERNELS' order; an unknown name raises ValueError naming it."""
    if text is None:
        return ()
    parts = text if isinstance(text, (list, tuple)) else str(text).replace(",", "+").split("+")
    out: set[str] = set()
    for p in (str(p).strip().lower() for p in parts):
        if p in KERNEL_SETS:
            out.update(KERNEL_SETS[p])
        elif p in KERNELS:
            out.add(p)
        elif p:
            close = difflib.get_close_matches(p, [*KERNEL_SETS, *KERNELS], n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ValueError(f"unknown kernel '{p}' ({', '.join(KERNEL_SETS)}, or {', '.join(KERNELS)} joined by '+'){hint}")
    return tuple(k for k in KERNELS if k in out)
