"""Sizing one training option against a GPU budget: which micro-batch and checkpointing fit, and how long.

An *option* is what the decision rules choose (method, GPUs, rank); a *plan* is that option
made concrete: the fastest (micro-batch, gradient checkpointing) pair whose estimated peak
leaves HEADROOM of the budget free, its memory breakdown, and its time per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from advisor.inputs.catalog import GpuBudget, Model
from advisor.memory import overhead
from advisor.memory.estimate import Breakdown, estimate
from advisor.memory.rl import GRPO_DEFAULTS, Objective, SetupEstimate, estimate_setup
from advisor.memory.setup import Setup
from advisor.memory.setup import StackOptions

# Nothing extra kept free: a plan's peak is already the high end of the estimate's calibration range
# (the largest under-estimate over the published rows, leave-one-source-out) plus the CUDA context.
HEADROOM = 0.0
# A plan with less than 10% of the budget spare beyond its range's high end fits, but tightly: a batch
# of unusually long examples can tip it over. (The high end already carries the worst under-estimate
# seen on the published rows, so the spare asked for on top is small.)
COMFORT = 0.10
# Time per epoch comes from advisor/speed/step.py (matmul rooflines, memory traffic and per-op
# overhead on the GPU's datasheet peak and bandwidth, as a range); measured runs in --results replace it.
FSDP_SCALING = 0.90  # per-GPU efficiency left after FSDP's all-gathers and reduce-scatters
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
    generation_gb: float = 0.0  # GRPO: weights + KV cache while sampling rollouts (reserved)
    notes: tuple[str, ...] = field(default=())
    whole: SetupEstimate | None = None  # GRPO / DPO: every phase (advisor/memory/rl.py)
    objective: Objective | None = None

    @property
    def peak_gb(self) -> float:
        """What the budget must hold: the high end of the estimate's range + the CUDA context."""
        if self.whole is not None:
            return self.whole.peak_gb_high
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


def objective_of(opt: Option, seq_len: int) -> tuple[Objective, int]:
    """The objective of ``opt`` and the setup's sequence length: GRPO's prompt is what is left of
    --seq-len (prompt + answer) after the completion budget."""
    if opt.objective == "grpo":
        # TRL's completion budget, capped at half of --seq-len (prompt + answer)
        completion = min(GRPO_DEFAULTS["max_completion_len"], max(1, seq_len // 2))
        return Objective("grpo", GRPO_DEFAULTS["num_generations"], completion, GRPO_DEFAULTS["beta"]), seq_len - completion
    return Objective(opt.objective), seq_len


def _setup(model: Model, opt: Option, micro: int, ckpt: bool, seq_len: int, gpu: GpuBudget, accum: int,
           stack: StackOptions = StackOptions()) -> Setup:  # fmt: skip
    """micro: sequences (SFT), pairs (DPO: memory/rl.py doubles them), completions (GRPO)."""
    return Setup(
        arch=model.arch, method=opt.method, rank=opt.rank, targets=opt.targets, batch_size=micro,
        seq_len=seq_len, optimizer="adamw", gpus=opt.gpus, grad_accum=accum, **stack.setup_kwargs(ckpt),
    )  # fmt: skip


def size(model: Model, opt: Option, gpu: GpuBudget, seq_len: int, target_batch: int, stack: StackOptions = StackOptions()) -> Plan:
    """The fastest configuration of ``opt`` that fits ``gpu`` comfortably, else the fastest that
    fits at all, else (fits=False) the leanest."""
    if opt.objective == "grpo":  # a step trains on one prompt's G completions
        target_batch = GRPO_DEFAULTS["num_generations"]
    if opt.method == "qlora" and stack.float8:  # float8 linears need a bf16 base: QLoRA's 4-bit one is sized without
        stack = replace(stack, float8=False)
    plans = []
    for ckpt, micro in CONFIGS:
        if micro > target_batch or (stack.checkpointing and not ckpt and (True, micro) in CONFIGS):
            continue  # a fixed --checkpointing: one config per micro-batch
        accum = max(1, target_batch // micro)
        obj, model_seq = objective_of(opt, seq_len)
        setup = _setup(model, opt, micro, ckpt, model_seq, gpu, accum, stack)
        whole = None
        if opt.objective == "sft":
            mem, gen = estimate(setup), 0.0
        else:
            whole = estimate_setup(setup, obj)
            mem = whole.training
            g = whole.phase("generation")
            gen = overhead.reserved_gb(g.allocated_gb, overhead.churn_gb(g.items)) if g else 0.0
        peak = whole.peak_gb_high if whole else max(mem.peak_gb_high, gen)
        fits = peak <= gpu.per_gpu_gb * (1 - HEADROOM)
        plans.append(Plan(opt, model, setup, mem, gpu.per_gpu_gb, fits, micro, accum, gen, whole=whole, objective=obj))
    return (next((p for p in plans if p.comfortable), None) or next((p for p in plans if p.fits), None)
            or min(plans, key=lambda p: p.peak_gb))  # fmt: skip


@dataclass(frozen=True)
class EpochTime:
    seconds: float
    low: float
    high: float
    basis: str


def epoch_time(plan: Plan, examples: int, gpu: GpuBudget, measured_tokens_per_s: float | None = None) -> EpochTime:
    """Seconds per epoch as a range, and its basis (a measurement, or the time model's assumptions).

    Every example is priced at the full --seq-len (an upper bound when examples vary in length)."""
    from advisor.speed.step import gpu_rates, step_time

    opt, s, obj = plan.option, plan.setup, plan.objective or Objective("sft")
    scale = opt.gpus * (FSDP_SCALING if opt.gpus > 1 else 1.0)
    per_step = plan.micro_batch * plan.grad_accum  # examples (SFT), pairs (DPO), completions (GRPO)
    items = examples * (obj.num_generations if obj.name == "grpo" else 1)  # GRPO: G completions per prompt
    if measured_tokens_per_s:
        tokens = examples * s.seq_len * (2 if obj.name == "dpo" else 1)
        if obj.name == "grpo":
            tokens = items * (s.seq_len + obj.max_completion_len)
        sec = tokens / measured_tokens_per_s
        return EpochTime(sec, sec, sec, f"measured {measured_tokens_per_s:,.0f} tokens/s in a matching run")
    dev = gpu_rates(gpu.card, gpu.tflops_basis)
    st = step_time(s, obj, dev)
    steps = items / per_step / scale
    basis = (f"time model: {dev.basis}; matmul rooflines + memory traffic + per-op overhead, "
             f"every example at {s.seq_len} tokens")  # fmt: skip
    if obj.name == "grpo":
        basis += f" of prompt + {obj.max_completion_len} generated, {obj.num_generations} rollouts per prompt"
    return EpochTime(st.seconds * steps, st.low * steps, st.high * steps, basis)


def time_per_epoch(plan: Plan, examples: int, gpu: GpuBudget, measured_tokens_per_s: float | None = None) -> tuple[float, str]:
    """Seconds per epoch (the range's point) and the basis of the figure."""
    t = epoch_time(plan, examples, gpu, measured_tokens_per_s)
    return t.seconds, t.basis
