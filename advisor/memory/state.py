"""What the step holds between steps: base weights (bf16, fp32 masters, NF4 + constants) and what trains.

- weights: 2 B/param bf16, 4 fp32 (and bf16-mixed's fp32 masters); NF4 0.5 B/param for the 4-bit
  linears (+ absmax constants). QLoRA on the HF stack runs ``prepare_model_for_kbit_training``, which
  upcasts every parameter that is not 4-bit (embeddings, norms, head, and gpt-oss's fused experts,
  which bitsandbytes does not quantize) to fp32. bitsandbytes dequantizes one weight to bf16 for each
  matmul, forward and backward: the largest such copy is live at the peak.
- trainable state: AdamW keeps 2 states in the parameter's dtype (8 B/param fp32, 4 B/param pure
  bf16), 8-bit AdamW 2 B/param; LoRA trains r·(d_in + d_out) per targeted matrix.
"""

from __future__ import annotations

NF4_BYTES = 0.5  # 4 bits per weight
NF4_CONST_BYTES = 1 / 64 + 4 / (64 * 256)  # double quant: 1 int8 absmax per 64 weights + 1 fp32 per 256 blocks
NF4_CONST_BYTES_NO_DQ = 4 / 64  # one fp32 absmax per 64 weights


def optimizer_bytes(optimizer: str, param_bytes: int) -> float:
    """Optimizer state per trainable parameter."""
    if optimizer == "adamw":
        return 2 * param_bytes  # exp_avg + exp_avg_sq in the parameter's dtype
    if optimizer in ("adamw8bit", "paged_adamw8bit"):
        return 2 + 2 * 4 / 2048  # two uint8 states + an fp32 absmax per 2048-value block each
    return 0.0  # sgd without momentum


def adapter_params(s) -> int:
    """LoRA's r·(d_in + d_out) per targeted matrix (+ DoRA's magnitude). MoE: with ``lora_experts``
    the MLP targets adapt every routed expert (PEFT's all-linear reaches each expert's linears);
    without, only attention and the shared expert's MLP train."""
    if not s.adapted:
        return 0
    arch, mods = s.arch, set(s.target_modules)

    def block(shapes: dict) -> int:
        return sum(s.rank * (i + o) + (o if s.method == "dora" else 0) for m, (i, o) in shapes.items() if m in mods)

    n = arch.layers * block(arch.attn_linears()) + arch.dense_layers * block(arch.mlp_linears())
    if arch.is_moe:
        experts = arch.experts * block(arch.mlp_linears(arch.expert_intermediate)) if s.adapts_experts else 0
        shared = block(arch.mlp_linears(arch.shared_intermediate)) if arch.shared_intermediate else 0
        n += arch.moe_layers * (experts + shared)
    if "lm_head" in mods:
        n += s.rank * (arch.hidden + arch.vocab) + (arch.vocab if s.method == "dora" else 0)
    return n


def weights(s) -> tuple[float, float, float, float]:
    """(resident weight bytes, quant constants, one dequantized weight, one layer as stored) before sharding."""
    arch, wb = s.arch, s.weight_bytes
    P, lin = arch.total_params, arch.linear_params
    if s.method != "qlora":
        return P * wb, 0.0, 0.0, arch.layer_linear_params * wb
    quantized = lin - (arch.expert_linear_params if arch.experts_fused else 0)
    rest = 4 if s.kbit_prep else wb  # prepare_model_for_kbit_training: every non-4-bit param → fp32
    resident = quantized * NF4_BYTES + (P - quantized) * rest
    const = quantized * (NF4_CONST_BYTES if s.double_quant else NF4_CONST_BYTES_NO_DQ)
    dequant = arch.largest_linear * s.act_bytes  # the 4-bit weight dequantized for its matmul
    layer = quantized / arch.layers * NF4_BYTES + (P - quantized - arch.embedding_params - arch.head_params) / arch.layers * rest
    return resident, const, dequant, layer
