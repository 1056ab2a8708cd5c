"""Peak training memory, counted tensor by tensor and phase by phase, with an honest range.

The step (allocated bytes; T = batch × padded sequence tokens):
- weights and trainable state (advisor/memory/state.py): bf16/fp32/NF4 weights, the 4-bit dequantize
  buffer, gradients and optimizer states of whatever trains.
- activations (advisor/memory/activations.py): what autograd saves per layer; with full checkpointing one
  layer input per layer plus one recomputed layer; selective checkpointing (op-level, the harness's and
  torchtitan's policy) keeps the matmul and attention outputs and recomputes the rest; activation offload
  (torchtune's OffloadActivations, ``save_on_cpu``) moves saved tensors to pinned host memory and
  keeps two layers' worth on the GPU (the one in use and the one prefetched).
- one layer's backward working set (activations.backward_working_bytes): gradients in flight.
- the loss: T × vocab logits and their fp32 temporaries, or with ``--loss fused`` (Liger / Cut
  Cross-Entropy) one chunk of logits and the head input's gradient (activations.loss_bytes).
- several GPUs: FSDP full shard (= ZeRO-3) shards params, grads and states and gathers two layers
  (current + prefetched) plus the root unit, in the compute dtype under bf16-mixed (FSDP2's
  MixedPrecisionPolicy casts at all-gather) and in fp8 with ``--float8`` (torchao's float8
  all-gather); shard-grad-op (= ZeRO-2) keeps the gathered params from forward through backward; DDP
  keeps a full copy and a gradient bucket copy. CPU offload moves the sharded params and/or the
  optimizer states (and the step) to host memory.
- bf16-mixed on one GPU: fp32 masters, fp32 gradients and states, and autocast's bf16 copy of every
  linear weight, saved by autograd for backward.
- the two phases that can hold the peak: backward (activations + the loss's tensors or one layer's
  working set) and the optimizer step (all gradients + states + foreach AdamW's temporary copy).

Around it (advisor/memory/overhead.py): cuBLAS workspaces (allocated), the allocator's fragmentation of the
churned bytes (reserved − allocated), the CUDA context and NCCL (outside torch), and the range.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from advisor.inputs.catalog import GIB
from advisor.memory import overhead
from advisor.memory.activations import (adapter_temporaries_bytes, backward_working_bytes, dora_norm_bytes, dora_weight_bytes,
                                        checkpointed_norm_alias, expert_merge_bytes, lora_forward_transient_bytes, first_layer_savings, residual_bytes, head_activation_bytes, layer_activation_bytes, loss_bytes, selective_layer_bytes)  # fmt: skip
from advisor.memory.setup import Setup
from advisor.memory.state import adapter_params, optimizer_bytes
from advisor.memory.state import weights as _weights

# CPU (the harness's fp32 runs, resident set above the pre-load baseline): fitted by
# `advisor validate DIR --fit` on 17 real harness CPU runs (14 tiny-model runs, whose RSS delta is
# nearly all runtime; 2 SmolLM2-135M full fine-tunes and 1 LoRA): MAPE 6.4%. A controlled check
# (6-layer SmolLM2 shape, RSS around forward) puts the heap slack at ~0.4 of the heap bytes too.
CPU_SLACK_FRAC = 0.35  # glibc heap fragmentation, as a fraction of activation-sized (heap) allocations
CPU_RUNTIME_GB = 0.14  # oneDNN/MKL scratch, thread stacks, tokenizer and dataset after the baseline


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
    cuda_context_gb: float = 0.0  # outside torch's count (CUDA context + NCCL); counted against the budget
    cpu_offload_gb: float = 0.0  # host memory this process holds for offloaded params/states/activations
    churn_gb: float = 0.0  # the peak's bytes freed and allocated again every step (what fragments)
    reserved_basis: str = ""  # how reserved was modelled, where not by the analytic churn (a simulation)

    ITEMS = ("weights", "gradients", "optimizer_states", "activations", "adapter", "quant_constants", "logits", "runtime_overhead")

    @property
    def peak_gb(self) -> float:
        """The expected figure to compare with a budget: reserved on CUDA, resident on CPU."""
        return self.cpu_resident_gb if self.cpu_resident_gb is not None else self.peak_reserved_gb

    @property
    def peak_gb_high(self) -> float:
        """What a budget must hold: the range's high end of reserved + the CUDA context and NCCL (CPU: resident)."""
        if self.cpu_resident_gb is not None:
            return self.cpu_resident_gb
        return self.peak_reserved_gb_range[1] + self.cuda_context_gb + overhead.UNTRACKED_GB

    def items(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in self.ITEMS}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["notes"] = list(self.notes)
        if not d["reserved_basis"]:  # analytic: the JSON keeps its keys
            del d["reserved_basis"]
        return d


def _base(s: Setup, notes: list) -> dict:
    """Base weights per GPU: resident at backward (a) and at the step (b), gathered layers, constants, host bytes."""
    arch, n = s.arch, s.gpus
    resident, quant, dequant, layer = _weights(s)
    root = (arch.embedding_params + arch.head_params) * (4 if s.kbit_prep else s.weight_bytes)
    div = n if s.sharded else 1
    w = {"a": resident / div, "b": resident / div, "quant": quant / div, "dequant": dequant, "gathered": 0.0, "root": 0.0, "host": 0.0}
    full_shard = n > 1 and s.sharding == "full"
    off_params = "params" in s.offloads
    if full_shard or off_params:
        gather = layer
        if s.method != "qlora" and (s.precision == "bf16-mixed" or s.float8):
            # FSDP2 MixedPrecisionPolicy all-gathers in bf16; torchao's float8 all-gather sends the linears in fp8
            gather = layer * (1 if s.float8 else s.act_bytes) / s.weight_bytes
            root = root * s.act_bytes / s.weight_bytes
        w["gathered"] = 2 * gather + root  # current + prefetched layer, and the root unit (embeddings, head)
        w["root"] = root  # FSDP never reshards the root unit
    if s.sharding == "grad-op" and s.sharded:  # the unsharded params stay from forward through backward
        w["a"] += resident
    if off_params:  # the shards and their NF4 constants live on the host; gathered layers come up one at a time
        w["host"] = w["b"] + w["quant"]
        w["a"] = w["b"] = 0.0
        w["quant"] = 2 * quant / arch.layers if quant else 0.0  # the two gathered layers' constants
        notes.append(f"parameters offloaded to CPU ({w['host'] / GIB:.1f} GB of host memory per process); two layers gathered at a time")
    if n > 1:
        mode = {"full": "FSDP full shard (ZeRO-3)", "grad-op": "FSDP shard-grad-op (ZeRO-2)", "ddp": "DDP (a full copy per GPU)"}[s.sharding]
        notes.append(f"{mode} over {n} GPUs" + (f": states sharded 1/{n}" if s.sharded else "")
                     + (f"; +{w['gathered'] / GIB:.1f} GB of gathered layers" if w["gathered"] else ""))  # fmt: skip
    # bf16-mixed without sharding: torch.autocast casts each linear weight to bf16 and autograd saves the copy
    w["autocast"] = arch.linear_params * 2 if s.precision == "bf16-mixed" and not s.sharded else 0.0
    return w


def _trainable(s: Setup, layer: float, notes: list) -> dict:
    """Gradients, optimizer states and adapters per GPU, at backward (a) and at the step (b)."""
    arch, n, wb, cpu = s.arch, s.gpus, s.weight_bytes, s.device == "cpu"
    shard = n if s.sharded else 1
    off_states = "optimizer" in s.offloads
    t = {"grads_a": 0.0, "grads_b": 0.0, "states": 0.0, "foreach": 0.0, "adapter_a": 0.0, "adapter_b": 0.0,
         "paged": 0.0, "host": 0.0, "head_grad": 0.0, "grads_end": 0.0, "trainable": arch.total_params}  # fmt: skip
    if s.adapted:
        t["trainable"] = trainable = adapter_params(s)
        ab = s.adapter_bytes
        opt = optimizer_bytes(s.optimizer, ab)
        if off_states:
            t["host"] = trainable * opt / shard
            opt = 0.0
        t["adapter_a"] = trainable * (ab + ab + opt) / shard  # weights + grads + states
        foreach = s.optimizer == "adamw" and not (cpu or s.fused_optimizer or off_states)
        t["adapter_b"] = t["adapter_a"] + (trainable * ab / shard if foreach else 0)
        return t
    P = arch.total_params
    largest = arch.largest_tensor(stacked_experts=s.stack == "hf")  # transformers >= 5: 3-D experts
    grads_full = P * wb / shard
    t["states"] = P * optimizer_bytes(s.optimizer, wb) / shard
    if s.optimizer_in_backward:
        t["grads_a"] = t["grads_b"] = largest * wb  # one parameter's gradient at a time
    else:
        t["grads_b"] = grads_full + (layer if s.sharded else 0)  # + one unsharded layer's gradient before its reduce-scatter
        # At backward's start no gradient is live unless accumulation keeps the previous ones; once the
        # loss's tensors are freed, the LM head's gradient is (counted with the layer working set).
        t["grads_a"] = grads_full if s.grad_accum > 1 else 0.0
        t["head_grad"] = 0.0 if s.grad_accum > 1 else arch.hidden * arch.vocab * wb / shard
        if s.sharded:  # FSDP: a layer's gradient is unsharded (full size) until its reduce-scatter, during its backward
            t["head_grad"] += layer
        if not s.sharded and s.grad_accum == 1:  # backward reaches the first layer with every later layer's
            # gradients (and the head's) allocated: all but the first layer's and the input embedding's
            t["grads_end"] = max(0.0, grads_full - layer - (0 if arch.tied else arch.embedding_params * wb))
        if n > 1 and s.sharding == "ddp":  # DDP's bucket views: a second copy of every gradient
            t["grads_b"] += P * wb
            t["grads_a"] += P * wb
    if s.optimizer == "adamw" and not (s.optimizer_in_backward or s.fused_optimizer):
        # CUDA foreach AdamW materialises sqrt(exp_avg_sq) for every param at once; CPU loops per tensor,
        # its denominator (exp_avg_sq.sqrt() / bias_correction2_sqrt) two temporaries of one parameter.
        t["foreach"] = 2 * largest * wb if cpu else P * wb / shard
    if s.optimizer == "paged_adamw8bit":
        t["paged"], t["states"] = t["states"], 0.0
        notes.append(f"paged 8-bit states ({t['paged'] / GIB:.1f} GB) live in unified memory, outside torch's count")
    if off_states:  # states and the step on CPU; gradients stream to host as they are reduced
        t["host"] = t["states"] + grads_full
        t["states"] = t["foreach"] = 0.0
        t["grads_b"] = t["grads_a"] = layer if s.sharded else largest * wb
        t["grads_end"] = 0.0
        notes.append("optimizer states and step offloaded to CPU")
    return t


def _activations(s: Setup, notes: list) -> dict:
    """Saved activations and the loss at backward's two moments: the loss (head) and the deepest layer's backward."""
    arch, L = s.arch, s.arch.layers
    tokens = s.batch_size * s.seq_len
    layer = layer_activation_bytes(s) * tokens + dora_weight_bytes(s) + expert_merge_bytes(s)
    head = head_activation_bytes(s) * tokens
    work = backward_working_bytes(s) * tokens
    loss = loss_bytes(s, tokens)
    kept = residual_bytes(s) * arch.hidden * tokens  # one layer input per checkpointed layer
    per_layer = {"none": layer, "full": kept, "selective": selective_layer_bytes(s) * tokens + dora_weight_bytes(s)}[s.ckpt]
    recompute = 0.0 if s.ckpt == "none" else layer + dora_norm_bytes(s)  # backward recomputes one checkpointed layer at a time
    recompute -= checkpointed_norm_alias(s) * tokens
    host = 0.0
    saved_first = first_layer_savings(s) * tokens
    if "activations" in s.offloads:  # saved tensors go to pinned host memory; two layers' worth stay on the GPU
        host = L * per_layer
        saved = min(L, 2) * per_layer
        notes.append(f"activations offloaded to CPU ({host / GIB:.1f} GB of pinned host memory); two layers kept on the GPU")
    else:
        saved = L * per_layer - saved_first
    if s.ckpt == "selective":
        notes.append("selective checkpointing: matmul and attention outputs saved, norms and activations recomputed")
    # An fp32 LM head (QLoRA's prepare_model_for_kbit_training, bf16-mixed's masters) under autocast: its bf16
    # copy is saved by the head's matmul until the head's backward.
    head_cast = arch.vocab * arch.hidden * s.act_bytes if s.autocast and (s.kbit_prep or s.precision == "bf16-mixed") else 0.0
    # peft's LoRA forward holds its fp32 input cast and dropout output for a moment (lora_forward_transient_bytes):
    # at the end of forward without checkpointing, or in the recomputed layer's forward before its backward
    fwd = lora_forward_transient_bytes(s) * tokens
    at_loss = {"activations": saved + head + head_cast, "logits": loss}
    at_fwd = {"activations": saved + (fwd if s.ckpt == "none" else 0.0), "logits": 0.0}  # the last layer's forward
    at_layer = {"activations": saved + head + recompute + (max(work, fwd) if s.ckpt == "full" else work), "logits": 0.0}
    # the first layer's backward, when every later layer's gradients exist (see _trainable's grads_end)
    at_end = {"activations": (layer - saved_first if s.ckpt == "none" else per_layer + recompute) + work, "logits": 0.0}
    return {"at_loss": at_loss, "at_fwd": at_fwd, "at_layer": at_layer, "at_end": at_end, "host": host, "tokens": tokens}


def estimate(s: Setup, *, frag: float | None = None, cpu_slack: float | None = None, cpu_runtime_gb: float | None = None,
             ranges: dict | None = None) -> Breakdown:  # fmt: skip
    """Peak memory of one training step (per GPU with several). Keyword overrides are for fitting."""
    cpu_slack = CPU_SLACK_FRAC if cpu_slack is None else cpu_slack
    cpu_runtime_gb = CPU_RUNTIME_GB if cpu_runtime_gb is None else cpu_runtime_gb
    arch, cpu = s.arch, s.device == "cpu"
    notes: list[str] = []
    w = _base(s, notes)
    t = _trainable(s, _weights(s)[3], notes)
    act = _activations(s, notes)
    runtime = (cpu_runtime_gb if cpu else overhead.CUBLAS_WORKSPACE_GB) * GIB
    static_a = {"weights": w["a"] + w["autocast"] + w["gathered"], "optimizer_states": t["states"], "adapter": t["adapter_a"],
                "quant_constants": w["quant"] + w["dequant"], "runtime_overhead": runtime}  # fmt: skip
    at_loss = {**static_a, "gradients": t["grads_a"], **act["at_loss"]}
    at_fwd = {**static_a, "gradients": t["grads_a"], **act["at_fwd"]}
    at_layer = {**static_a, "gradients": t["grads_a"] + t["head_grad"], **act["at_layer"]}
    at_end = {**static_a, "gradients": t["grads_a"] + t["grads_end"], **act["at_end"]}
    phase_a = max(at_loss, at_fwd, at_layer, at_end, key=lambda d: sum(d.values()))
    phase_b = {
        "weights": w["b"] + w["root"], "gradients": t["grads_b"], "optimizer_states": t["states"] + t["foreach"],
        "activations": 0.0, "adapter": t["adapter_b"], "quant_constants": w["quant"], "logits": 0.0, "runtime_overhead": runtime,
    }  # fmt: skip
    total_a, total_b = sum(phase_a.values()), sum(phase_b.values())
    if total_a >= total_b:
        phase, chosen, other_total = "backward start", phase_a, total_b
    else:
        phase, chosen, other_total = "optimizer step", phase_b, total_a
        if t["foreach"]:
            notes.append(f"optimizer states include foreach AdamW's temporary copy ({t['foreach'] / GIB:.1f} GB)")
    if s.kbit_prep:
        notes.append("QLoRA via prepare_model_for_kbit_training: non-4-bit parameters and the residual stream in fp32")
    if arch.is_moe:
        notes.append(f"MoE: all {arch.experts} experts' weights held, {arch.experts_per_tok} active per token"
                     + ("" if not s.adapted else "; LoRA on every expert too" if s.adapts_experts
                        else "; LoRA on attention and shared experts (all-linear does not reach fused experts)"))  # fmt: skip
    if s.float8:
        notes.append("float8 linears (torchao): fp8 matmuls; eager Float8Linear saves its high-precision input, so activations are unchanged")
    gb = {k: v / GIB for k, v in chosen.items()}
    gb = {k: gb[k] for k in Breakdown.ITEMS}
    a_gb = sum(gb.values())
    churn = overhead.churn_gb(gb)
    host = (w["host"] + t["host"] + act["host"]) / GIB
    if cpu:
        # glibc serves the many activation-sized tensors from its heaps, which fragment; the big ones
        # (weights, optimizer states, logits) are mmapped and exact. Slack is charged on the former.
        heap = 0.0
        if phase == "backward start":
            heap = chosen["activations"] + adapter_temporaries_bytes(s) * arch.layers * act["tokens"]
        reserved, resident = None, a_gb + cpu_slack * heap / GIB
        a_range = r_range = None
        context = 0.0
    else:
        reserved, resident = overhead.reserved_gb(a_gb, churn, frag), None
        lo, hi = (overhead.RANGES if ranges is None else ranges)[phase]
        a_range = (a_gb * (1 + lo), a_gb * (1 + hi))
        r_range = (reserved * (1 + lo), reserved * (1 + hi))
        context = overhead.outside_torch_gb(s.gpus)
    return Breakdown(
        **gb, peak_allocated_gb=a_gb, peak_reserved_gb=reserved, cpu_resident_gb=resident, peak_phase=phase,
        other_phase_gb=other_total / GIB, paged_optimizer_gb=t["paged"] / GIB, trainable_params=int(t["trainable"]),
        total_params=int(arch.total_params), per_gpu=s.gpus > 1, notes=tuple(notes), peak_allocated_gb_range=a_range,
        peak_reserved_gb_range=r_range, cuda_context_gb=context, cpu_offload_gb=host, churn_gb=churn,
    )  # fmt: skip
