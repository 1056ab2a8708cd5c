"""Peak training memory, counted tensor by tensor and phase by phase, with an honest range.

What is counted (bytes; T = batch × padded sequence tokens, a = activation bytes, 2 for bf16):
- weights: 2 B/param bf16, 4 fp32; NF4 0.5 B/param for the 4-bit linears (+ absmax constants).
  QLoRA on the HF stack runs ``prepare_model_for_kbit_training``, which upcasts every parameter
  that is not 4-bit (embeddings, norms, head, and gpt-oss's fused experts, which bitsandbytes does
  not quantize) to fp32. bitsandbytes dequantizes one weight to bf16 for each matmul, forward and
  backward: the largest such copy is live at the peak.
- gradients and optimizer states of whatever trains: AdamW keeps 2 states in the parameter's dtype
  (8 B/param fp32, 4 B/param pure bf16), 8-bit AdamW 2 B/param.
- activations (advisor/activations.py): what autograd saves per layer, or with gradient
  checkpointing one layer input per layer plus one recomputed layer; MoE: all experts' weights,
  the active experts' activations.
- logits: per token × vocab, by the stack's loss (fp32 upcast on HF, chunked on torchtune, bf16
  chunks on litgpt); at 128K-256K vocabularies this is the largest activation.
- several GPUs: FSDP full shard (= ZeRO-3) shards params, grads and states and gathers two layers
  (current + prefetched) plus the root unit; shard-grad-op (= ZeRO-2) keeps the gathered params
  from forward through backward; DDP keeps a full copy and a gradient bucket copy. CPU offload
  moves the sharded params and/or the optimizer states (and the step) to host memory.
- the two phases that can hold the peak: the start of backward (activations + logits live) and
  the optimizer step (all gradients + states + foreach AdamW's temporary copy of the params).
- outside torch's count: the CUDA context and the allocator's cache beyond RESERVED_FRAC
  (CUDA_CONTEXT_GB), compared with the budget, not reported as allocated or reserved.

The range: ``peak_*_gb_range`` = expected × (1 + low … 1 + high) for the peak's phase (RANGES), the
extreme relative residuals (measured/estimated − 1) over the published calibration rows, re-derived
leave-one-source-out by ``advisor validate`` (advisor/calibration.py); ``--fit`` prints the values below.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from advisor.activations import (CHUNKED_CE_CHUNKS, adapter_temporaries_bytes, head_activation_bytes,  # noqa: F401
                                 layer_activation_bytes, logits_bytes_per_element)  # fmt: skip
from advisor.catalog import GIB
from advisor.setup import (ATTENTION, DEVICES, LINEAR_NAMES, LOSSES, METHODS, OFFLOAD, OPTIMIZERS,  # noqa: F401
                           PRECISIONS, SHARDING, SHARDING_ALIASES, STACKS, TARGETS, Setup)  # fmt: skip

# ACT_FACTOR is 1.0 because the itemised count is exact: summing the tensors autograd actually
# saves (torch.autograd.graph walk over Llama layers with peft LoRA/DoRA, bf16 and fp32) gives the
# per-layer bytes of `layer_activation_bytes` within 1% for LoRA and DoRA and 4% for full.
ACT_FACTOR = 1.0
# Reserved over allocated: the caching allocator rounds blocks up to 2 MiB multiples and keeps freed
# blocks cached; at the backward-start peak the activations, freed and re-allocated in other sizes,
# fragment. No physics gives the fraction: fitted on the 14 published rows measured as *reserved*
# or unknown (P1-P4, T1, T3, T5, D1-D4, Q4a-c) by `advisor validate --fit`, over 1-15% (1%: the
# allocator's block rounding alone). The fit lands on the floor: on these rows the model's own error
# (+10% on peft's loop, -9% on torchtune's tutorial) outweighs the allocator's overhead, so
# fragmentation is carried by the range instead (its high end is what budgets are checked against).
RESERVED_FRAC = 0.01
CUDA_RUNTIME_GB = 0.0  # cuBLAS workspaces and RoPE tables: tens of MB, inside the noise
# Device memory outside the reserved estimate: the CUDA context (driver state, cuBLAS/cuDNN/flash-attn
# modules: ~0.3-0.6 GiB with CUDA 12 lazy loading, more without) and whatever the caching allocator holds
# beyond RESERVED_FRAC. Physics gives the first, not the second: fitted (`advisor validate --fit`) as the
# least that lifts the range's high end over nvidia-smi's reading on every single-GPU row that printed
# one (fms-acceleration FA1, FA3, FA5, FA7, FA10; nvidia-smi runs 4-8 GiB above max_allocated there).
# FA1 (full fine-tuning at its optimizer step, whose allocator still caches the backward's logits) sets it.
CUDA_CONTEXT_GB = 1.9
# The calibration range by peak phase, relative to the expected value: min and max of
# (measured/estimated − 1) over every scored published row whose estimated peak is in that phase
# (45 rows, 8 sources; `advisor validate`), widened by 1 point and rounded outwards. Backward-start
# peaks (activations, logits: where the stacks differ) spread widely; the high end comes from the rows
# the model under-estimates most (FA9, a 70B QLoRA under FSDP; LC6, Gemma-2-9B's QLoRA). Optimizer-step
# peaks are weights + gradients + states, exact to a few % (4 rows: F1, Q4a, FA1, FA2).
# Leave-one-source-out, 93% of the rows fall inside their range.
RANGES = {"backward start": (-0.14, 0.30), "optimizer step": (-0.04, 0.08)}
# CPU (the harness's fp32 runs, resident set above the pre-load baseline): fitted by
# `advisor validate DIR --fit` on 17 real harness CPU runs (14 tiny-model runs, whose RSS delta is
# nearly all runtime; 2 SmolLM2-135M full fine-tunes and 1 LoRA): MAPE 6.4%. A controlled check
# (6-layer SmolLM2 shape, RSS around forward) puts the heap slack at ~0.4 of the heap bytes too.
CPU_SLACK_FRAC = 0.35  # glibc heap fragmentation, as a fraction of activation-sized (heap) allocations
CPU_RUNTIME_GB = 0.14  # oneDNN/MKL scratch, thread stacks, tokenizer and dataset after the baseline

NF4_BYTES = 0.5  # 4 bits per weight
NF4_CONST_BYTES = 1 / 64 + 4 / (64 * 256)  # double quant: 1 int8 absmax per 64 weights + 1 fp32 per 256 blocks
NF4_CONST_BYTES_NO_DQ = 4 / 64  # one fp32 absmax per 64 weights


@dataclass(frozen=True)
class Breakdown:
    """GB (GiB) live at the peak; the items sum to ``peak_allocated_gb``."""

    weights: float
    gradients: float
    optimizer_states: float
    activations: float
    adapter: float
    quant_constants: float
    logits: float
    runtime_overhead: float
    peak_allocated_gb: float
    peak_reserved_gb: float | None  # CUDA caching allocator; None on CPU
    cpu_resident_gb: float | None  # CPU: resident set above the pre-load baseline; None on CUDA
    peak_phase: str  # "backward start" or "optimizer step"
    other_phase_gb: float  # the other phase's allocated total, for `explain`
    paged_optimizer_gb: float  # paged 8-bit states: unified memory, outside torch's count
    trainable_params: int
    total_params: int
    per_gpu: bool  # figures are per GPU (several GPUs)
    notes: tuple[str, ...] = field(default=())
    peak_allocated_gb_range: tuple[float, float] | None = None  # [low, high] from the calibration residuals
    peak_reserved_gb_range: tuple[float, float] | None = None
    cuda_context_gb: float = 0.0  # outside torch's count; counted against the budget
    cpu_offload_gb: float = 0.0  # host memory this process holds for offloaded params/states

    ITEMS = ("weights", "gradients", "optimizer_states", "activations", "adapter", "quant_constants", "logits", "runtime_overhead")

    @property
    def peak_gb(self) -> float:
        """The expected figure to compare with a budget: reserved on CUDA, resident on CPU."""
        return self.cpu_resident_gb if self.cpu_resident_gb is not None else self.peak_reserved_gb

    @property
    def peak_gb_high(self) -> float:
        """What a budget must hold: the range's high end of reserved + the CUDA context (CPU: resident)."""
        if self.cpu_resident_gb is not None:
            return self.cpu_resident_gb
        return self.peak_reserved_gb_range[1] + self.cuda_context_gb

    def items(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in self.ITEMS}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["notes"] = list(self.notes)
        return d


def optimizer_bytes(optimizer: str, param_bytes: int) -> float:
    """Optimizer state per trainable parameter."""
    if optimizer == "adamw":
        return 2 * param_bytes  # exp_avg + exp_avg_sq in the parameter's dtype
    if optimizer in ("adamw8bit", "paged_adamw8bit"):
        return 2 + 2 * 4 / 2048  # two uint8 states + an fp32 absmax per 2048-value block each
    return 0.0  # sgd without momentum


def adapter_params(s: Setup) -> int:
    """LoRA's r·(d_in + d_out) per targeted matrix (+ DoRA's magnitude); on MoE, per expert."""
    if not s.adapted:
        return 0
    arch, mods = s.arch, set(s.target_modules)

    def block(shapes: dict) -> int:
        return sum(s.rank * (i + o) + (o if s.method == "dora" else 0) for m, (i, o) in shapes.items() if m in mods)

    n = arch.layers * block(arch.attn_linears()) + arch.dense_layers * block(arch.mlp_linears())
    if arch.is_moe:
        experts = arch.experts * block(arch.mlp_linears(arch.expert_intermediate)) if s.lora_experts else 0
        shared = block(arch.mlp_linears(arch.shared_intermediate)) if arch.shared_intermediate else 0
        n += arch.moe_layers * (experts + shared)
    if "lm_head" in mods:
        n += s.rank * (arch.hidden + arch.vocab) + (arch.vocab if s.method == "dora" else 0)
    return n


def _weights(s: Setup) -> tuple[float, float, float, float]:
    """(resident weight bytes, quant constants, one dequantized weight, one gathered layer) before sharding."""
    arch, wb = s.arch, s.weight_bytes
    P, lin = arch.total_params, arch.linear_params
    if s.method != "qlora":
        return P * wb, 0.0, 0.0, arch.layer_linear_params * wb
    quantized = lin - (arch.expert_linear_params if arch.experts_fused else 0)
    rest = 4 if s.kbit_prep else wb  # prepare_model_for_kbit_training: every non-4-bit param → fp32
    weights = quantized * NF4_BYTES + (P - quantized) * rest
    const = quantized * (NF4_CONST_BYTES if s.double_quant else NF4_CONST_BYTES_NO_DQ)
    dequant = arch.largest_linear * s.act_bytes  # the 4-bit weight dequantized for its matmul
    layer = quantized / arch.layers * NF4_BYTES + (P - quantized - arch.embedding_params - arch.head_params) / arch.layers * rest
    return weights, const, dequant, layer


def estimate(s: Setup, *, act_factor: float | None = None, reserved_frac: float | None = None,
             runtime_gb: float | None = None, cpu_slack: float | None = None, cpu_runtime_gb: float | None = None,
             ranges: dict | None = None) -> Breakdown:  # fmt: skip
    """Peak memory of one training step (per GPU with several). Keyword overrides are for fitting."""
    act_factor = ACT_FACTOR if act_factor is None else act_factor
    reserved_frac = RESERVED_FRAC if reserved_frac is None else reserved_frac
    runtime_gb = CUDA_RUNTIME_GB if runtime_gb is None else runtime_gb
    cpu_slack = CPU_SLACK_FRAC if cpu_slack is None else cpu_slack
    cpu_runtime_gb = CPU_RUNTIME_GB if cpu_runtime_gb is None else cpu_runtime_gb
    arch, n = s.arch, s.gpus
    notes: list[str] = []
    P = arch.total_params
    wb = s.weight_bytes
    cpu = s.device == "cpu"
    shard = n if s.sharded else 1  # grads and optimizer states
    full_shard = n > 1 and s.sharding == "full"
    off_params = s.offload in ("params", "both")
    off_states = s.offload in ("optimizer", "both")
    host = 0.0

    # ---- base weights: resident shard, what is gathered, what is offloaded
    weights, quant, dequant, layer = _weights(s)
    root = (arch.embedding_params + arch.head_params) * (4 if s.kbit_prep else wb)
    weights_b = weights / (n if s.sharded else 1)
    weights_a = weights_b
    quant /= n if s.sharded else 1
    gathered = root_b = 0.0
    if full_shard or off_params:
        gathered = 2 * layer + root  # current + prefetched layer, and the root unit (embeddings, head)
        root_b = root  # FSDP never reshards the root unit
    if s.sharding == "grad-op" and s.sharded:  # the unsharded params stay from forward through backward
        weights_a = weights_b + weights
    if off_params:  # the shards and their NF4 constants live on the host; gathered layers come up one at a time
        host += weights_b + quant
        weights_a = weights_b = 0.0
        quant = 2 * quant * n / arch.layers if quant else 0.0  # the two gathered layers' constants
        notes.append(f"parameters offloaded to CPU ({host / GIB:.1f} GB of host memory per process); two layers gathered at a time")
    if n > 1:
        mode = {"full": "FSDP full shard (ZeRO-3)", "grad-op": "FSDP shard-grad-op (ZeRO-2)", "ddp": "DDP (a full copy per GPU)"}[s.sharding]
        notes.append(f"{mode} over {n} GPUs" + (f": states sharded 1/{n}" if s.sharded else "")
                     + (f"; +{gathered / GIB:.1f} GB of gathered layers" if gathered else ""))  # fmt: skip
    autocast_copies = arch.linear_params * 2 / (n if full_shard else 1) if s.precision == "bf16-mixed" else 0.0

    # ---- trainable state
    trainable = P if not s.adapted else adapter_params(s)
    paged = 0.0
    largest_param = max(arch.embedding_params, arch.largest_linear)
    if not s.adapted:
        grads_full = P * wb / shard
        states = P * optimizer_bytes(s.optimizer, wb) / shard
        if s.optimizer_in_backward:
            grads_step = grads_a = largest_param * wb  # one parameter's gradient at a time
        else:
            grads_step = grads_full
            # The LM head's gradient appears only after the logits' gradients are freed, so at the
            # backward-start peak no gradient is live unless accumulation keeps the previous ones.
            grads_a = grads_full if s.grad_accum > 1 else 0.0
            if s.sharded:
                grads_step += layer  # one unsharded layer's gradient before its reduce-scatter
            if n > 1 and s.sharding == "ddp":  # DDP's bucket views: a second copy of every gradient
                grads_step += P * wb
                grads_a += P * wb
        foreach_tmp = 0.0
        if s.optimizer == "adamw" and not (s.optimizer_in_backward or s.fused_optimizer):
            # CUDA foreach AdamW materialises sqrt(exp_avg_sq) for every param at once; CPU loops per tensor.
            foreach_tmp = (largest_param * wb) if cpu else P * wb / shard
        if s.optimizer == "paged_adamw8bit":
            paged, states = states, 0.0
            notes.append(f"paged 8-bit states ({paged / GIB:.1f} GB) live in unified memory, outside torch's count")
        if off_states:  # states and the step on CPU; gradients stream to host as they are reduced
            host += states + grads_full
            states, foreach_tmp = 0.0, 0.0
            grads_step = grads_a = layer if s.sharded else largest_param * wb
            notes.append("optimizer states and step offloaded to CPU")
        adapter_a = adapter_step = 0.0
    else:
        grads_full = grads_a = grads_step = states = foreach_tmp = 0.0
        ab = s.adapter_bytes
        opt = optimizer_bytes(s.optimizer, ab)
        if off_states:
            host += trainable * opt / shard
            opt = 0.0
        adapter_a = trainable * (ab + ab + opt) / shard  # weights + grads + states
        foreach = s.optimizer == "adamw" and not (cpu or s.fused_optimizer or off_states)
        adapter_step = adapter_a + (trainable * ab / shard if foreach else 0)

    # ---- activations and logits (per GPU micro-batch, never sharded)
    tokens = s.batch_size * s.seq_len
    layer_act = layer_activation_bytes(s) * tokens
    head_act = head_activation_bytes(s) * tokens
    logits = logits_bytes_per_element(s) * tokens * arch.vocab
    if s.grad_checkpointing:
        kept = arch.layers * (4 if s.kbit_prep else s.act_bytes) * arch.hidden * tokens  # one layer input per layer
        # Backward first runs the head (logits live), then recomputes one layer at a time.
        at_head = act_factor * (kept + head_act) + logits
        at_layer = act_factor * (kept + layer_act)
        if at_head >= at_layer:
            activations, logits_live = act_factor * (kept + head_act), logits
        else:
            activations, logits_live = at_layer, 0.0
    else:
        activations = act_factor * (arch.layers * layer_act + head_act)
        logits_live = logits

    runtime = (cpu_runtime_gb if cpu else runtime_gb) * GIB
    phase_a = {
        "weights": weights_a + autocast_copies + gathered, "gradients": grads_a, "optimizer_states": states,
        "activations": activations, "adapter": adapter_a, "quant_constants": quant + dequant,
        "logits": logits_live, "runtime_overhead": runtime,
    }  # fmt: skip
    phase_b = {
        "weights": weights_b + root_b, "gradients": grads_step,
        "optimizer_states": states + foreach_tmp, "activations": 0.0, "adapter": adapter_step, "quant_constants": quant,
        "logits": 0.0, "runtime_overhead": runtime,
    }  # fmt: skip
    total_a, total_b = sum(phase_a.values()), sum(phase_b.values())
    if total_a >= total_b:
        phase, chosen, other_total = "backward start", phase_a, total_b
    else:
        phase, chosen, other_total = "optimizer step", phase_b, total_a
        if foreach_tmp:
            notes.append(f"optimizer states include foreach AdamW's temporary copy ({foreach_tmp / GIB:.1f} GB)")
    if s.kbit_prep:
        notes.append("QLoRA via prepare_model_for_kbit_training: non-4-bit parameters and the residual stream in fp32")
    if arch.is_moe:
        notes.append(f"MoE: all {arch.experts} experts' weights held, {arch.experts_per_tok} active per token")
    alloc = sum(chosen.values())
    gb = {k: v / GIB for k, v in chosen.items()}
    a_gb = alloc / GIB
    if cpu:
        # glibc serves the many activation-sized tensors from its heaps, which fragment; the big ones
        # (weights, optimizer states, logits) are mmapped and exact. Slack is charged on the former.
        heap = 0.0
        if phase == "backward start":
            heap = activations + adapter_temporaries_bytes(s) * arch.layers * tokens
        reserved, resident = None, (alloc - runtime + cpu_slack * heap) / GIB + cpu_runtime_gb
        a_range = r_range = None
        context = 0.0
    else:
        reserved, resident = a_gb * (1 + reserved_frac), None
        lo, hi = (RANGES if ranges is None else ranges)[phase]
        a_range = (a_gb * (1 + lo), a_gb * (1 + hi))
        r_range = (reserved * (1 + lo), reserved * (1 + hi))
        context = CUDA_CONTEXT_GB
    return Breakdown(
        **gb,
        peak_allocated_gb=a_gb,
        peak_reserved_gb=reserved,
        cpu_resident_gb=resident,
        peak_phase=phase,
        other_phase_gb=other_total / GIB,
        paged_optimizer_gb=paged / GIB,
        trainable_params=int(trainable),
        total_params=int(P),
        per_gpu=n > 1,
        notes=tuple(notes),
        peak_allocated_gb_range=a_range,
        peak_reserved_gb_range=r_range,
        cuda_context_gb=context,
        cpu_offload_gb=host / GIB,
    )
