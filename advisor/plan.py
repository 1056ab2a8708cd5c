"""Sizing one training option against a GPU budget: which micro-batch and checkpointing fit, and how long.

An *option* is what the decision rules choose (method, GPUs, rank); a *plan* is that option
made concrete: the fastest (micro-batch, gradient checkpointing) pair whose estimated peak
leaves HEADROOM of the budget free, its memory breakdown, and its time per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from advisor.catalog import GIB, GpuBudget, Model
from advisor.memory import Breakdown, Setup, estimate

# Nothing extra kept free: a plan's peak is already the high end of the estimate's calibration range
# (the largest under-estimate over the published rows, leave-one-source-out) plus the CUDA context.
HEADROOM = 0.0
# A plan with less than 10% of the budget spare beyond its range's high end fits, but tightly: a batch
# of unusually long examples can tip it over. (The high end already carries the worst under-estimate
# seen on the published rows, so the spare asked for on top is small.)
COMFORT = 0.10
# Model FLOPs utilisation assumed for time estimates: a plain HF/peft training loop on one GPU
# reaches ~30-45% at 1-8K tokens per micro-batch; measured runs in --results replace this.
MFU = 0.35
QLORA_SPEED = 0.70  # guides: QLoRA is 25-40% slower than LoRA (dequantising every matmul)
DORA_SPEED = 0.80  # guide: DoRA ~+25% time
FSDP_SCALING = 0.90  # per-GPU efficiency left after FSDP's all-gathers and reduce-scatters
GRPO_GENERATIONS = 8  # TRL's default num_generations: rollouts per prompt (guide: 4-16)
# (gradient checkpointing, micro-batch), fastest first: checkpointing costs ~+33% compute, so a
# smaller micro-batch without it is tried before a larger one with it.
CONFIGS = ((False, 8), (False, 4), (False, 2), (True, 8), (True, 4), (True, 2), (True, 1))


@dataclass(frozen=True)
class Option:
    """A candidate recipe before sizing: a training method on some GPUs for some objective."""

    method: str  # full | lora | qlora | dora (what trains)
    gpus: int = 1  # > 1 → FSDP over that many GPUs
    objective: str = "sft"  # sft | dpo | grpo
    rank: int = 16
    targets: str = "all-linear"

    @property
    def label(self) -> str:
        core = self.method if self.gpus == 1 else f"fsdp({self.gpus})+{self.method}"
        return core if self.objective == "sft" else f"{self.objective}+{core}"

    @property
    def top_method(self) -> str:
        """The recipe's `method` field: the outermost technique."""
        if self.objective != "sft":
            return self.objective
        return "fsdp" if self.gpus > 1 else self.method


@dataclass(frozen=True)
class Plan:
    option: Option
    model: Model
    setup: Setup
    memory: Breakdown
    budget_gb: float
    fits: bool
    micro_batch: int  # examples (DPO: pairs, GRPO: completions) per GPU per forward
    grad_accum: int
    generation_gb: float = 0.0  # GRPO: weights + KV cache while sampling rollouts
    notes: tuple[str, ...] = field(default=())

    @property
    def peak_gb(self) -> float:
        """What the budget must hold: the high end of the estimate's range + the CUDA context."""
        return max(self.memory.peak_gb_high, self.generation_gb)

    @property
    def usable_gb(self) -> float:
        return self.budget_gb * (1 - HEADROOM)

    @property
    def margin_gb(self) -> float:
        return self.budget_gb - self.peak_gb

    @property
    def comfortable(self) -> bool:
        return self.fits and self.margin_gb >= COMFORT * self.budget_gb


def _setup(model: Model, opt: Option, micro: int, ckpt: bool, seq_len: int, gpu: GpuBudget, accum: int) -> Setup:
    seqs = 2 * micro if opt.objective == "dpo" else micro  # DPO: chosen + rejected per pair
    return Setup(
        arch=model.arch, method=opt.method, rank=opt.rank, targets=opt.targets, batch_size=seqs,
        seq_len=seq_len, grad_checkpointing=ckpt, precision="bf16", optimizer="adamw", gpus=opt.gpus,
        grad_accum=accum,
    )  # fmt: skip


def kv_cache_gb(model: Model, tokens: int, gpus: int = 1) -> float:
    """bf16 K and V for every layer: 2 × layers × kv_dim × 2 B per token."""
    a = model.arch
    return 2 * a.layers * a.kv_dim * 2 * tokens / GIB


def size(model: Model, opt: Option, gpu: GpuBudget, seq_len: int, target_batch: int) -> Plan:
    """The fastest configuration of ``opt`` that fits ``gpu`` comfortably, else the fastest that
    fits at all, else (fits=False) the leanest."""
    if opt.objective == "grpo":  # a step trains on one prompt's G completions
        target_batch = GRPO_GENERATIONS
    plans = []
    for ckpt, micro in CONFIGS:
        if micro > target_batch:
            continue
        accum = max(1, target_batch // micro)
        setup = _setup(model, opt, micro, ckpt, seq_len, gpu, accum)
        mem = estimate(setup)
        gen = 0.0
        if opt.objective == "grpo":  # sampling: weights + KV cache of G rollouts, no activations kept
            kv = kv_cache_gb(model, GRPO_GENERATIONS * seq_len)
            gen = mem.weights + mem.quant_constants + mem.adapter + mem.runtime_overhead + kv
        fits = max(mem.peak_gb_high, gen) <= gpu.per_gpu_gb * (1 - HEADROOM)
        plans.append(Plan(opt, model, setup, mem, gpu.per_gpu_gb, fits, micro, accum, gen))
    return (next((p for p in plans if p.comfortable), None) or next((p for p in plans if p.fits), None)
            or min(plans, key=lambda p: p.peak_gb))  # fmt: skip


def flops_per_token(model: Model, seq_len: int, *, full: bool, ckpt: bool) -> float:
    """6N (full) or 4N (frozen base: no weight grads) + attention 12·L·T·d; checkpointing adds a forward."""
    a = model.arch
    n = a.linear_params + a.vocab * a.hidden  # matmul parameters, LM head included
    attn = 12 * a.layers * seq_len * a.hidden
    f = (6 if full else 4) * n + attn
    if ckpt:
        f += 2 * n + attn / 3
    return f


def time_per_epoch(plan: Plan, examples: int, gpu: GpuBudget, measured_tokens_per_s: float | None = None) -> tuple[float, str]:
    """Seconds per epoch and the basis of the figure (an assumption or a measurement)."""
    opt, s = plan.option, plan.setup
    tokens = examples * s.seq_len  # upper bound: every example padded to --seq-len
    if opt.objective == "dpo":
        tokens *= 2
    if opt.objective == "grpo":  # G rollouts per prompt, trained on, and sampled ~as slowly again
        tokens *= 2 * GRPO_GENERATIONS
    if measured_tokens_per_s:
        return tokens / measured_tokens_per_s, f"measured {measured_tokens_per_s:,.0f} tokens/s in a matching run"
    speed = {"qlora": QLORA_SPEED, "dora": DORA_SPEED}.get(opt.method, 1.0)
    scale = opt.gpus * (FSDP_SCALING if opt.gpus > 1 else 1.0)
    fpt = flops_per_token(plan.model, s.seq_len, full=opt.method == "full", ckpt=s.grad_checkpointing)
    rate = gpu.tflops * 1e12 * MFU * speed * scale / fpt
    basis = f"{MFU:.0%} MFU of {gpu.tflops:g} TFLOP/s ({gpu.tflops_basis}), every example at {s.seq_len} tokens"
    if opt.objective == "grpo":
        basis += f", {GRPO_GENERATIONS} rollouts per prompt"
    return tokens / rate, basis
