"""Peak memory of a whole GRPO or DPO setup: what TRL holds besides the supervised training step.

Built on ``advisor.memory.estimate.estimate`` (the forward/backward/optimizer phases of one micro-batch);
this module adds what the objective brings, phase by phase, and reports the largest.

GRPO (TRL's GRPOTrainer, one GPU): a step first *generates* completions for the whole generation
batch (per-device batch × ``steps_per_generation``, which TRL defaults to the accumulation steps),
then scores them under the *reference* (β > 0), then trains one micro-batch at a time on
prompt + completion with logits only for the completion (``logits_to_keep``).
- generation: weights, adapters and optimizer states stay resident (gradients are freed by
  ``zero_grad``), plus the KV cache, 2 × layers × kv_dim × bytes per token of every sequence in
  the generation batch, plus one layer's prefill activations and the sampling logits;
- reference: PEFT runs the same model with adapters switched off (no second copy); full
  fine-tuning keeps a frozen copy of the weights, resident through every phase. β = 0 → none;
- training: ``memory.estimate.estimate`` at prompt + completion, the logits term cut to completion + 1
  positions (TRL's ``logits_to_keep``).

DPO (TRL's DPOTrainer): chosen and rejected are concatenated, so one micro-batch of B pairs trains
on 2B sequences; the reference log-probs come from a no-grad forward of the same 2B sequences
(PEFT: adapters off; full: the frozen copy) just before the policy's forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from advisor.errors import AdvisorError
from advisor.inputs.catalog import GIB
from advisor.memory import overhead
from advisor.memory.estimate import Breakdown, estimate
from advisor.memory.setup import Setup
from advisor.memory.state import adapter_params

OBJECTIVES = ("sft", "grpo", "dpo")
GRPO_DEFAULTS = {"num_generations": 8, "max_completion_len": 256, "beta": 0.04}  # TRL defaults; β is the harness default (TRL: 0.0)


@dataclass(frozen=True)
class Phase:
    name: str  # generation | reference | training | optimizer step
    items: dict  # GB (GiB) by component
    allocated_gb: float
    cpu_resident_gb: float | None = None  # CPU: resident set above the baseline (None on CUDA)

    def to_dict(self) -> dict:
        return {"name": self.name, "items": {k: round(v, 3) for k, v in self.items.items()}, "allocated_gb": round(self.allocated_gb, 3)}


@dataclass(frozen=True)
class Objective:
    """What the training objective adds to a supervised setup."""

    name: str = "sft"  # sft | grpo | dpo
    num_generations: int = 8  # GRPO: completions per prompt
    max_completion_len: int = 256  # GRPO: tokens generated per completion
    beta: float = 0.04  # KL weight; 0 → no reference forward at all

    def __post_init__(self):
        if self.name not in OBJECTIVES:
            raise AdvisorError(f"--method: '{self.name}' is not an objective ({', '.join(OBJECTIVES)})")
        for flag, value in (("--num-generations", self.num_generations), ("--max-completion-len", self.max_completion_len)):
            if not isinstance(value, int) or value < 1:
                raise AdvisorError(f"{flag}: '{value}' must be an integer >= 1")
        if self.name == "grpo" and self.num_generations < 2:
            raise AdvisorError(f"--num-generations: '{self.num_generations}' must be >= 2 (GRPO's group baseline needs two)")
        if not self.beta >= 0:
            raise AdvisorError(f"--beta: '{self.beta}' must be >= 0")

    @property
    def needs_reference(self) -> bool:
        return self.name == "dpo" or (self.name == "grpo" and self.beta > 0)


@dataclass(frozen=True)
class SetupEstimate:
    """The whole setup's peak: every phase, the largest, and the supervised step it contains."""

    objective: Objective
    setup: Setup  # the supervised micro-step (GRPO: completions × (prompt + completion); DPO: 2 × pairs)
    training: Breakdown  # memory_estimate.estimate of that step, logits cut to the scored positions
    phases: tuple[Phase, ...]
    reference: str  # "none" | "adapters off" | "frozen copy"
    generation_batch: int  # GRPO: sequences generated at once
    notes: tuple[str, ...] = field(default=())

    @property
    def peak_phase(self) -> Phase:
        cpu = self.setup.device == "cpu"
        return max(self.phases, key=lambda p: p.cpu_resident_gb if cpu else p.allocated_gb)

    @property
    def peak_allocated_gb(self) -> float:
        return self.peak_phase.allocated_gb

    @property
    def peak_reserved_gb(self) -> float | None:
        if self.setup.device == "cpu":
            return None
        return overhead.reserved_gb(self.peak_allocated_gb, overhead.churn_gb(self.peak_phase.items))

    @property
    def cpu_resident_gb(self) -> float | None:
        return self.peak_phase.cpu_resident_gb

    @property
    def peak_gb(self) -> float:
        """The figure to compare with a budget: reserved on CUDA, resident on CPU."""
        return self.cpu_resident_gb if self.setup.device == "cpu" else self.peak_reserved_gb

    @property
    def peak_gb_high(self) -> float:
        """What a budget must hold: reserved at the supervised step's calibration high end + the CUDA
        context, NCCL and the untracked residue (CPU: resident). The range is the training step's (overhead.RANGES),
        applied to the whole peak."""
        if self.setup.device == "cpu":
            return self.cpu_resident_gb
        b = self.training
        high = b.peak_reserved_gb_range[1] / b.peak_reserved_gb if b.peak_reserved_gb_range and b.peak_reserved_gb else 1.0
        return self.peak_reserved_gb * high + b.cuda_context_gb + overhead.UNTRACKED_GB

    def phase(self, name: str) -> Phase | None:
        return next((p for p in self.phases if p.name == name), None)

    def to_dict(self) -> dict:
        return {
            "objective": self.objective.name, "reference": self.reference, "generation_batch": self.generation_batch,
            "peak_phase": self.peak_phase.name, "peak_allocated_gb": round(self.peak_allocated_gb, 3),
            "peak_reserved_gb": None if self.peak_reserved_gb is None else round(self.peak_reserved_gb, 3),
            "cpu_resident_gb": None if self.cpu_resident_gb is None else round(self.cpu_resident_gb, 3),
            "peak_gb_high": round(self.peak_gb_high, 3),
            "phases": [p.to_dict() for p in self.phases], "notes": list(self.notes),
        }  # fmt: skip


def _resident_state(s: Setup) -> dict:
    """GB held between steps (no gradients, no activations): weights, quantization constants,
    optimizer states and adapters with their states. Read off ``estimate`` at a 1-token batch
    with a fused optimizer (no foreach temporaries), minus the gradients it counts."""
    b = estimate(replace(s, batch_size=1, seq_len=1, grad_accum=1, fused_optimizer=True))
    adapter_grads = adapter_params(s) * s.adapter_bytes / s.gpus / GIB if s.adapted else 0.0
    return {"weights": b.weights, "quant_constants": b.quant_constants, "optimizer_states": b.optimizer_states,
            "adapter": max(0.0, b.adapter - adapter_grads), "runtime_overhead": b.runtime_overhead}  # fmt: skip


def _layer_transient_gb(s: Setup, tokens: int) -> float:
    """One decoder layer's forward intermediates without autograd (no_grad prefill / reference):
    q, k, v, attention output and the MLP's gate, up and product, freed layer by layer."""
    a = s.arch
    return s.act_bytes * tokens * (2 * a.q_dim + 2 * a.kv_dim + 3 * a.intermediate + a.hidden) / GIB


def _phase(s: Setup, name: str, items: dict, heap: float) -> Phase:
    """A phase from its items; on CPU its resident set as memory/estimate.py counts it: glibc slack on the
    heap-allocated (activation-like) tensors, the runtime constant in place of CUDA's."""
    from advisor.memory import estimate as memory_estimate

    alloc = sum(items.values())
    resident = None
    if s.device == "cpu":
        resident = alloc - items.get("runtime_overhead", 0.0) + memory_estimate.CPU_SLACK_FRAC * heap + memory_estimate.CPU_RUNTIME_GB
    return Phase(name, items, alloc, resident)


def _training_phase(b: Breakdown, keep: float, ref_weights: float) -> Phase:
    """memory.estimate.estimate's step with the logits scaled by ``keep`` (the scored fraction of positions)
    and the reference copy added. When its peak is the optimizer step, the backward-start phase
    (where logits live) was already the smaller one and cutting its logits keeps it so."""
    items = b.items()
    cut = items["logits"] * (1 - keep) if b.peak_phase == "backward start" else 0.0
    items["logits"] -= cut
    items["reference_weights"] = ref_weights
    resident = None if b.cpu_resident_gb is None else b.cpu_resident_gb - cut + ref_weights
    return Phase("training", items, b.peak_allocated_gb - cut + ref_weights, resident)


def estimate_setup(s: Setup, objective: Objective) -> SetupEstimate:
    """Peak memory of ``objective`` trained with ``s``.

    ``s.batch_size``: GRPO completions per micro-batch (TRL's per_device_train_batch_size), DPO
    pairs per micro-batch; ``s.seq_len``: GRPO prompt length, DPO/SFT sequence length."""
    if objective.name == "sft":
        b = estimate(s)
        return SetupEstimate(objective, s, b, (_training_phase(b, 1.0, 0.0),), "none", 0, b.notes)
    ref_full = objective.needs_reference and not s.adapted
    reference = "none" if not objective.needs_reference else ("frozen copy" if ref_full else "adapters off")
    state = _resident_state(s)
    ref_weights = s.arch.total_params * s.act_bytes / s.gpus / GIB if ref_full else 0.0  # a frozen copy in the compute dtype
    notes: list[str] = []
    if ref_full:
        notes.append(f"full fine-tuning keeps a frozen reference copy: +{ref_weights:.2f} GB of weights in every phase")
    elif reference == "adapters off":
        notes.append("reference = the same model with adapters switched off: no second copy")
    phases: list[Phase] = []
    vocab = s.arch.vocab
    if objective.name == "grpo":
        completion, prompt = objective.max_completion_len, s.seq_len
        total = prompt + completion
        if (s.batch_size * s.grad_accum) % objective.num_generations:
            raise AdvisorError(f"--batch-size × --grad-accum ({s.batch_size * s.grad_accum}) must be a multiple of "
                               f"--num-generations ({objective.num_generations}), as TRL requires")  # fmt: skip
        gen_batch = s.batch_size * s.grad_accum  # TRL: steps_per_generation defaults to gradient_accumulation_steps
        a = s.arch
        kv = gen_batch * total * 2 * a.layers * a.kv_dim * s.act_bytes / GIB
        prefill = _layer_transient_gb(s, gen_batch * prompt)
        sampling = gen_batch * vocab * 4 * 2 / GIB  # fp32 logits of the last position and their softmax
        phases.append(_phase(s, "generation", {**state, "reference_weights": ref_weights, "kv_cache": kv,
                                            "activations": prefill + sampling}, kv + prefill))  # fmt: skip
        notes.append(f"generation: {gen_batch} sequences × {total} tokens in the KV cache at once "
                     f"({s.batch_size} per micro-batch × {s.grad_accum} accumulation steps)")  # fmt: skip
        train_setup = replace(s, seq_len=total)
        scored = completion + 1  # logits_to_keep = completion + 1
        if objective.needs_reference:
            ref_tokens = s.batch_size * total
            ref_logits = s.batch_size * scored * vocab * (s.act_bytes + 4) / GIB
            phases.append(_phase(s, "reference", {**state, "reference_weights": ref_weights, "kv_cache": 0.0,
                                               "activations": _layer_transient_gb(s, ref_tokens), "logits": ref_logits},
                                 _layer_transient_gb(s, ref_tokens)))  # fmt: skip
        keep = scored / total
    else:  # dpo
        gen_batch = 0
        train_setup = replace(s, batch_size=2 * s.batch_size)
        ref_tokens = train_setup.batch_size * s.seq_len
        ref_logits = ref_tokens * vocab * (s.act_bytes + 4) / GIB
        phases.append(_phase(s, "reference", {**state, "reference_weights": ref_weights,
                                           "activations": _layer_transient_gb(s, ref_tokens), "logits": ref_logits},
                             _layer_transient_gb(s, ref_tokens)))  # fmt: skip
        keep = 1.0
        notes.append(f"{s.batch_size} pair(s) per micro-batch = {2 * s.batch_size} sequences (chosen + rejected)")
    b = estimate(train_setup)
    phases.append(_training_phase(b, keep, ref_weights))
    return SetupEstimate(objective, train_setup, b, tuple(phases), reference, gen_batch, tuple(notes) + b.notes)


def for_objective(s: Setup, name: str, **kw) -> SetupEstimate:
    return estimate_setup(s, Objective(name, **kw))
