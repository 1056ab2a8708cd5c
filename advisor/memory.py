"""Peak training memory of a Llama-style decoder: counted tensor by tensor, plus three fitted constants.

What is counted (bytes; T = batch × padded sequence tokens, a = activation bytes, 2 for bf16):
- weights: 2 B/param bf16, 4 fp32; NF4 0.5 B/param for the block linears (embeddings, norms and
  the LM head stay in the compute dtype, as bitsandbytes and torchtune leave them).
- gradients and optimizer states of whatever is trainable: AdamW keeps 2 states in the
  parameter's dtype (8 B/param fp32, 4 B/param pure bf16), 8-bit AdamW 2 B/param.
- activations: what autograd saves per layer, tensor by tensor (see ``layer_activation_bytes``),
  or with gradient checkpointing one layer input per layer plus one recomputed layer.
- logits: T × vocab × (a + 12) B at the start of backward with a plain cross-entropy (the logits,
  the fp32 log-softmax kept for backward, two fp32 gradients); 6.5 B with torchtune's 8-chunk loss,
  3.5 B when that loss is compiled (only the bf16 logits are kept; the rest is recomputed).
- adapters: LoRA's r·(d_in + d_out) per targeted matrix with their grads and states; peft keeps
  them in fp32 and casts each adapter's input to fp32 (a saved copy per targeted module).
- the two phases that can hold the peak: the start of backward (activations + logits live) and
  the optimizer step (all gradients + states + foreach AdamW's temporary copy of the params).

Constants (``advisor validate --fit`` re-derives the fitted ones from the measurements):
- ACT_FACTOR: scales the itemised activation count; 1.0, since the count matches autograd's saved tensors.
- RESERVED_FRAC: the CUDA caching allocator's reserved/allocated overhead (fragmentation).
- CUDA_RUNTIME_GB: allocations outside the training state (cuBLAS workspaces, RoPE caches, masks).
- CPU_SLACK_FRAC, CPU_RUNTIME_GB: the harness's CPU runs are measured as resident set size above a
  baseline taken before the model loads: glibc heap fragmentation, charged on the activation-sized
  tensors (weights, states and logits are mmapped and exact), plus a fixed runtime.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from advisor.catalog import GIB, Arch
from advisor.errors import AdvisorError, bad_choice

METHODS = ("full", "lora", "qlora", "dora")
TARGETS = ("q_proj+v_proj", "attn", "all-linear")
PRECISIONS = ("bf16", "fp32", "bf16-mixed")
OPTIMIZERS = ("adamw", "adamw8bit", "paged_adamw8bit", "sgd")
ATTENTION = ("sdpa", "eager")
LOSSES = ("full", "chunked")
DEVICES = ("cuda", "cpu")
LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_PRESETS = {
    "q_proj+v_proj": ("q_proj", "v_proj"),
    "attn": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "all-linear": LINEAR_NAMES,
}

# ACT_FACTOR is 1.0 because the itemised count is exact: summing the tensors autograd actually
# saves (torch.autograd.graph walk over Llama layers with peft LoRA/DoRA, bf16 and fp32) gives the
# per-layer bytes of `layer_activation_bytes` within 1% for LoRA and DoRA and 4% for full.
# The two allocator constants are fitted on the 12 published rows with a known metric
# (advisor/data/published_memory.csv; D5 excluded, see validate.py) by `advisor validate --fit`,
# RESERVED_FRAC searched over the physically plausible 3–15%: MAPE 6.3%.
ACT_FACTOR = 1.0
RESERVED_FRAC = 0.03  # reserved ≈ allocated × 1.03: the itemised peak already assumes every tensor live at once
CUDA_RUNTIME_GB = 0.0  # cuBLAS workspaces and RoPE tables: tens of MB, inside the noise
# CPU (the harness's fp32 runs, resident set above the pre-load baseline): fitted by
# `advisor validate DIR --fit` on 17 real harness CPU runs (14 tiny-model runs, whose RSS delta is
# nearly all runtime; 2 SmolLM2-135M full fine-tunes and 1 LoRA): MAPE 6.4%. A controlled check
# (6-layer SmolLM2 shape, RSS around forward) puts the heap slack at ~0.4 of the heap bytes too.
CPU_SLACK_FRAC = 0.35  # glibc heap fragmentation, as a fraction of activation-sized (heap) allocations
CPU_RUNTIME_GB = 0.14  # oneDNN/MKL scratch, thread stacks, tokenizer and dataset after the baseline

NF4_BYTES = 0.5  # 4 bits per weight
NF4_CONST_BYTES = 1 / 64 + 4 / (64 * 256)  # double quant: 1 int8 absmax per 64 weights + 1 fp32 per 256 blocks
CHUNKED_CE_CHUNKS = 8


@dataclass(frozen=True)
class Setup:
    """One training configuration. Defaults describe the harness's stack (transformers + peft)."""

    arch: Arch
    method: str = "lora"
    rank: int = 16
    targets: str = "all-linear"  # a preset, or module names joined by '+' (may include lm_head)
    batch_size: int = 1
    seq_len: int = 512  # padded length of the longest batch (where the peak happens)
    grad_checkpointing: bool = False
    precision: str = "bf16"
    optimizer: str = "adamw"
    gpus: int = 1  # > 1: FSDP, weights/grads/states sharded over this many GPUs
    grad_accum: int = 1  # > 1 keeps gradients alive through the next forward
    device: str = "cuda"
    adapter_dtype: str = "auto"  # auto: fp32 (peft upcasts adapters); or bf16 / fp32
    lora_dropout: float = 0.05  # > 0 saves a dropout output + mask per targeted module
    attention: str = "sdpa"  # sdpa/flash keep no seq² tensor; eager saves the softmax
    loss: str = "full"  # full | chunked
    optimizer_in_backward: bool = False  # torchtune's fused step: no full gradient buffer
    fused_optimizer: bool = False  # AdamW(fused=True): no foreach temporary copy of the params
    compile: bool = False  # torch.compile: the loss keeps only compute-dtype logits, recomputes the rest
    keep_logits: bool = False  # the loop still holds the model output during backward (HF Trainer drops it)

    def __post_init__(self):
        checks = (("--method", self.method, METHODS), ("--precision", self.precision, PRECISIONS),
                  ("--optimizer", self.optimizer, OPTIMIZERS), ("--attention", self.attention, ATTENTION),
                  ("--loss", self.loss, LOSSES), ("--device", self.device, DEVICES),
                  ("--adapter-dtype", self.adapter_dtype, ("auto", "bf16", "fp32")))  # fmt: skip
        for flag, value, choices in checks:
            if value not in choices:
                raise bad_choice(flag, value, choices)
        for flag, value, low in (("--rank", self.rank, 1), ("--batch-size", self.batch_size, 1),
                                 ("--seq-len", self.seq_len, 1), ("--gpus", self.gpus, 1),
                                 ("--grad-accum", self.grad_accum, 1)):  # fmt: skip
            if not isinstance(value, int) or value < low:
                raise AdvisorError(f"{flag}: '{value}' must be an integer >= {low}")
        if not 0 <= self.lora_dropout < 1:
            raise AdvisorError(f"--lora-dropout: '{self.lora_dropout}' must be in [0, 1)")
        self.target_modules  # validates the targets

    @property
    def adapted(self) -> bool:
        return self.method != "full"

    @property
    def target_modules(self) -> tuple[str, ...]:
        if not self.adapted:
            return ()
        parts = self.targets.split("+")
        if self.targets in _PRESETS:
            return _PRESETS[self.targets]
        out: list[str] = []
        for p in parts:
            if p in _PRESETS:
                out += _PRESETS[p]
            elif p in LINEAR_NAMES or p == "lm_head":
                out.append(p)
            else:
                raise AdvisorError(
                    f"--targets: '{self.targets}' is not {', '.join(TARGETS)} or module names "
                    f"({', '.join(LINEAR_NAMES)}, lm_head) joined by '+'"
                )
        return tuple(dict.fromkeys(out))

    # bytes per element
    @property
    def act_bytes(self) -> int:
        return 4 if self.precision == "fp32" else 2

    @property
    def weight_bytes(self) -> int:
        """Base weights as stored: bf16-mixed keeps fp32 masters."""
        return 2 if self.precision == "bf16" else 4

    @property
    def adapter_bytes(self) -> int:
        return 2 if self.adapter_dtype == "bf16" else 4


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
    per_gpu: bool  # figures are per GPU (FSDP)
    notes: tuple[str, ...] = field(default=())

    ITEMS = ("weights", "gradients", "optimizer_states", "activations", "adapter", "quant_constants", "logits", "runtime_overhead")

    @property
    def peak_gb(self) -> float:
        """The figure to compare with a budget: reserved on CUDA, resident on CPU."""
        return self.cpu_resident_gb if self.cpu_resident_gb is not None else self.peak_reserved_gb

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
    if not s.adapted:
        return 0
    shapes = s.arch.linears()
    n = 0
    for m in s.target_modules:
        d_in, d_out = (s.arch.hidden, s.arch.vocab) if m == "lm_head" else shapes[m]
        n += s.rank * (d_in + d_out) * (1 if m == "lm_head" else s.arch.layers)
        if s.method == "dora":  # magnitude vector, one per output feature
            n += d_out * (1 if m == "lm_head" else s.arch.layers)
    return n


def layer_activation_bytes(s: Setup) -> float:
    """Bytes autograd saves in one decoder layer, per token, without checkpointing."""
    a, f32 = s.act_bytes, 4
    arch = s.arch
    d, q, kv, ff = arch.hidden, arch.q_dim, arch.kv_dim, arch.intermediate
    full = not s.adapted
    mods = set(s.target_modules)
    ad = s.adapter_bytes
    cast = s.adapted and ad != a  # peft casts the adapter's input to the adapter dtype
    drop = s.adapted and s.lora_dropout > 0
    total = 0.0
    # 2 RMSNorms: the fp32 upcast of the input (pow/mul backward); the normalised bf16 copy only
    # when the norm weight trains.
    total += 2 * (f32 * d + (a * d if full else 0))
    # SDPA saves q, k, v (k, v repeated to every query head by repeat_kv) and its output.
    total += a * (q + 2 * q + q)
    if s.attention == "eager":  # fp32 softmax output + its bf16 copy, per head per key
        total += (f32 + a) * arch.heads * s.seq_len
    # Gated MLP: gate (for SiLU), SiLU output and up (for the product) — saved whatever trains.
    total += 3 * a * ff
    # Inputs of trainable base linears (full fine-tuning): shared by q/k/v and by gate/up.
    if full:
        total += a * (d + q + d + ff)  # attn in, o_proj in, mlp in, down_proj in
    # LoRA: lora_A needs its input; lora_B needs lora_A's output (r wide).
    inputs = {"q_proj": "x1", "k_proj": "x1", "v_proj": "x1", "o_proj": "attn", "gate_proj": "x2", "up_proj": "x2", "down_proj": "prod"}
    width = {"x1": d, "attn": q, "x2": d, "prod": ff}
    shared: set[str] = set()
    for m in mods - {"lm_head"}:
        d_in, d_out = arch.linears()[m]
        if cast or drop:  # a fresh tensor per module: the cast copy and/or the dropout output
            # + the dropout mask: bool on CUDA (native_dropout); on CPU a float mask in the input's dtype
            total += ad * d_in + ((ad if s.device == "cpu" else 1) * d_in if drop else 0)
        else:
            shared.add(inputs[m])
        total += ad * s.rank
        if s.method == "dora":  # base result (for the magnitude grad) + the lora result
            total += (a + ad) * d_out
    total += sum(a * width[i] for i in shared)
    return total


def head_activation_bytes(s: Setup) -> float:
    """Per token, after the last layer: final norm, and the LM head's input when it trains."""
    a, d = s.act_bytes, s.arch.hidden
    trains_head = not s.adapted or "lm_head" in s.target_modules
    return 4 * d + (2 * a * d if trains_head else 0)


def logits_bytes_per_element(s: Setup) -> float:
    a = s.act_bytes
    if s.loss == "chunked":
        if s.compile:  # compiled chunk loss saves only the logits; one chunk's fp32 work in flight
            return a + 12 / CHUNKED_CE_CHUNKS
        return a + 4 + 4 / CHUNKED_CE_CHUNKS  # logits + every chunk's fp32 log-softmax + one fp32 chunk
    # At log-softmax's backward: its fp32 output (saved) + the incoming and outgoing fp32 gradients,
    # plus the logits themselves if the training loop still holds the model output (a loop built on
    # HF Trainer, like the harness, returns only the loss and drops them before backward).
    return (a if s.keep_logits else 0) + 12


def adapter_temporaries_bytes(s: Setup) -> float:
    """Per token per layer: peft's `lora_B(...)` output and its `* scaling` copy, two d_out-wide
    tensors per adapted module, freed at once but leaving heap holes on CPU (see CPU_SLACK_FRAC)."""
    if not s.adapted:
        return 0.0
    shapes = s.arch.linears()
    return 2 * s.adapter_bytes * sum(shapes[m][1] for m in s.target_modules if m != "lm_head")


def estimate(s: Setup, *, act_factor: float | None = None, reserved_frac: float | None = None,
             runtime_gb: float | None = None, cpu_slack: float | None = None, cpu_runtime_gb: float | None = None) -> Breakdown:  # fmt: skip
    """Peak memory of one training step (per GPU under FSDP). Keyword overrides are for fitting."""
    act_factor = ACT_FACTOR if act_factor is None else act_factor
    reserved_frac = RESERVED_FRAC if reserved_frac is None else reserved_frac
    runtime_gb = CUDA_RUNTIME_GB if runtime_gb is None else runtime_gb
    cpu_slack = CPU_SLACK_FRAC if cpu_slack is None else cpu_slack
    cpu_runtime_gb = CPU_RUNTIME_GB if cpu_runtime_gb is None else cpu_runtime_gb
    arch, n = s.arch, s.gpus
    notes: list[str] = []
    P = arch.total_params
    lin = arch.linear_params
    other = P - lin
    wb = s.weight_bytes
    cpu = s.device == "cpu"

    # ---- base weights (sharded by FSDP) and what FSDP gathers
    if s.method == "qlora":
        weights = lin * NF4_BYTES + other * wb  # embeddings, norms, head stay in the compute dtype
        quant = lin * NF4_CONST_BYTES
        largest = max(i * o for i, o in arch.linears().values())
        dequant = largest * s.act_bytes  # one block linear dequantized for its matmul
    else:
        weights, quant, dequant = P * wb, 0.0, 0.0
    weights /= n
    quant /= n
    gathered = 0.0
    if n > 1:
        layer = arch.layer_linear_params * (NF4_BYTES if s.method == "qlora" else wb)
        root = (arch.embedding_params + arch.head_params) * wb
        gathered = 2 * layer + root  # current + prefetched layer, and the root unit (embeddings, head)
        notes.append(f"FSDP over {n} GPUs: states sharded 1/{n}; +{gathered / GIB:.1f} GB of gathered layers")
    autocast_copies = lin * 2 / n if s.precision == "bf16-mixed" else 0.0  # bf16 casts saved for backward

    # ---- trainable state
    trainable = P if not s.adapted else adapter_params(s)
    paged = 0.0
    if not s.adapted:
        grads_full = P * wb / n
        states = P * optimizer_bytes(s.optimizer, wb) / n
        biggest = max(arch.embedding_params, arch.layer_linear_params // 3)
        if s.optimizer_in_backward:
            grads_step = grads_a = biggest * wb  # one parameter's gradient at a time
        else:
            grads_step = grads_full
            # The LM head's gradient appears only after the logits' gradients are freed, so at the
            # backward-start peak no gradient is live unless accumulation keeps the previous ones.
            grads_a = grads_full if s.grad_accum > 1 else 0.0
            if n > 1:
                grads_step += arch.layer_linear_params * wb  # one unsharded layer before reduce-scatter
        foreach_tmp = 0.0
        if s.optimizer == "adamw" and not (s.optimizer_in_backward or s.fused_optimizer):
            # CUDA foreach AdamW materialises sqrt(exp_avg_sq) for every param at once; CPU loops per tensor.
            foreach_tmp = (biggest * wb) if cpu else P * wb / n
        if s.optimizer == "paged_adamw8bit":
            paged, states = states, 0.0
            notes.append(f"paged 8-bit states ({paged / GIB:.1f} GB) live in unified memory, outside torch's count")
        adapter_a = adapter_step = 0.0
    else:
        grads_full = grads_a = grads_step = states = foreach_tmp = 0.0
        ab = s.adapter_bytes
        per = ab + ab + optimizer_bytes(s.optimizer, ab)  # weights + grads + states
        adapter_a = trainable * per / n
        foreach = s.optimizer == "adamw" and not (cpu or s.fused_optimizer)
        adapter_step = adapter_a + (trainable * ab / n if foreach else 0)

    # ---- activations and logits (per GPU micro-batch, never sharded)
    tokens = s.batch_size * s.seq_len
    layer_act = layer_activation_bytes(s) * tokens
    head_act = head_activation_bytes(s) * tokens
    logits = logits_bytes_per_element(s) * tokens * arch.vocab
    if s.grad_checkpointing:
        kept = arch.layers * s.act_bytes * arch.hidden * tokens  # one layer input per layer
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
        "weights": weights + autocast_copies + gathered, "gradients": grads_a, "optimizer_states": states,
        "activations": activations, "adapter": adapter_a, "quant_constants": quant + dequant,
        "logits": logits_live, "runtime_overhead": runtime,
    }  # fmt: skip
    phase_b = {
        "weights": weights + gathered, "gradients": grads_step, "optimizer_states": states + foreach_tmp,
        "activations": 0.0, "adapter": adapter_step, "quant_constants": quant, "logits": 0.0, "runtime_overhead": runtime,
    }  # fmt: skip
    total_a, total_b = sum(phase_a.values()), sum(phase_b.values())
    if total_a >= total_b:
        phase, chosen, other_total = "backward start", phase_a, total_b
    else:
        phase, chosen, other_total = "optimizer step", phase_b, total_a
        if foreach_tmp:
            notes.append(f"optimizer states include foreach AdamW's temporary copy ({foreach_tmp / GIB:.1f} GB)")
    alloc = sum(chosen.values())
    gb = {k: v / GIB for k, v in chosen.items()}
    if cpu:
        # glibc serves the many activation-sized tensors from its heaps, which fragment; the big ones
        # (weights, optimizer states, logits) are mmapped and exact. Slack is charged on the former.
        heap = 0.0
        if phase == "backward start":
            heap = activations + adapter_temporaries_bytes(s) * arch.layers * tokens
        reserved, resident = None, (alloc - runtime + cpu_slack * heap) / GIB + cpu_runtime_gb
    else:
        reserved, resident = alloc * (1 + reserved_frac) / GIB, None
    return Breakdown(
        **gb,
        peak_allocated_gb=alloc / GIB,
        peak_reserved_gb=reserved,
        cpu_resident_gb=resident,
        peak_phase=phase,
        other_phase_gb=other_total / GIB,
        paged_optimizer_gb=paged / GIB,
        trainable_params=int(trainable),
        total_params=int(P),
        per_gpu=n > 1,
        notes=tuple(notes),
    )
