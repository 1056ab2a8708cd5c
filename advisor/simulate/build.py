"""The model the harness would train, built without memory: meta device, then fake tensors.

1. ``AutoConfig.for_model`` + ``AutoModelForCausalLM.from_config`` on the meta device, in the
   precision's weight dtype (what ``harness.models.load`` asks ``from_pretrained`` for);
   ``trust_remote_code`` only when the caller passes it.
2. QLoRA: every ``nn.Linear`` but the LM head becomes bitsandbytes' real ``Linear4bit`` (NF4,
   double quantization: what ``BitsAndBytesConfig`` in ``harness.models.load`` gives; without it, as
   litgpt's ``bnb.nf4``, when the setup says so), built on meta.
3. The harness's own ``prepare`` (``harness.methods``) attaches adapters and freezes the base.
   PEFT leaves meta adapters on meta.
4. Every parameter and buffer becomes a fake CPU tensor of the same shape, dtype and
   ``requires_grad``, one fake per original tensor (tied weights stay tied). A 4-bit weight cannot
   be a ``Params4bit`` around a fake tensor and ``quantize_4bit`` raises
   ``DataDependentOutputException`` on one: it becomes a plain frozen uint8 parameter of
   ``[(out·in + 1) // 2, 1]`` (two NF4 codes per byte) carrying a fake nested quant state —
   uint8 absmax per 64 weights, fp32 absmax per 256 blocks, the 16-entry NF4 and 256-entry
   blockwise code tables (without double quantization: an fp32 absmax per 64 weights) — so the step runs through bitsandbytes' real autograd function and
   its registered fake kernels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

NF4_BLOCK, NESTED_BLOCK = 64, 256  # bitsandbytes' 4-bit blocksize and its double-quant blocksize
# Attention dropout inside SDPA: a GPU's flash and memory-efficient kernels apply it in the kernel and keep
# only the Philox seed and offset for backward, so it costs no memory; torch's CPU SDPA has no fused dropout
# and falls back to its math path (fp32 B × H × S × S scores, softmax and mask saved). The simulated step
# stands for the GPU's, so SDPA runs at p = 0 (GPTBigCode defaults attn_pdrop to 0.1; most families to 0).
ATTENTION_DROPOUT = ("attn_pdrop", "attention_dropout")


@dataclass
class Built:
    model: nn.Module
    quant_tensors: list  # the 4-bit layers' quant-state tensors (not parameters: tracked as "other")
    compute_dtype: torch.dtype


FLASH = "tunebench_fa2"  # the flash-attention-2 stand-in's attention-interface name ("flash" in it: a hub kernel)


def flash_attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """flash-attention-2 as transformers calls it, on the fake CPU step: torch's CPU flash kernel saves what
    flash-attn saves (q, the *unexpanded* k and v of a GQA model, the output, an fp32 logsumexp per head and
    position), where transformers' SDPA path repeats k and v to every query head first. Causal over the whole
    sequence, no padding mask: flash-attn runs the packed or unpadded (varlen) tokens, never an S × S mask."""
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, dropout_p=dropout if module.training else 0.0, scale=scaling, is_causal=query.shape[2] > 1,
        enable_gqa=key.shape[1] != query.shape[1])  # fmt: skip
    return out.transpose(1, 2).contiguous(), None


def _register_flash() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(FLASH, flash_attention_forward)
    AttentionMaskInterface.register(FLASH, lambda *args, **kwargs: None)  # no mask: flash-attn never builds one


def meta_model(config: dict, dtype: torch.dtype, *, trust_remote_code: bool = False, attention: str = "sdpa") -> nn.Module:
    """``attention``: sdpa (torch's fused kernels: q, k and v repeated to every head, the output and a
    logsumexp saved), flash (flash-attention-2: k and v unexpanded, no mask; ``flash_attention_forward``) or
    eager (transformers' own: the B × H × S × S probabilities saved per layer)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = dict(config)
    model_type = cfg.pop("model_type", "llama")
    hf = AutoConfig.for_model(model_type, **cfg)
    hf._attn_implementation = "sdpa" if attention != "eager" and _sdpa_ok(hf) else "eager"
    if attention == "flash" and hf._attn_implementation == "sdpa":
        _register_flash()
        hf._attn_implementation = FLASH
    for key in ATTENTION_DROPOUT:  # see ATTENTION_DROPOUT: a GPU's fused kernel keeps only its RNG seed
        if getattr(hf, key, 0) and hf._attn_implementation != "eager":
            setattr(hf, key, 0.0)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf, dtype=dtype, trust_remote_code=trust_remote_code)
    if getattr(model.config, "use_cache", None) is not None:
        model.config.use_cache = False  # the Trainer turns the KV cache off while training
    return model


def _sdpa_ok(hf) -> bool:
    from transformers import AutoModelForCausalLM

    cls = AutoModelForCausalLM._model_mapping.get(type(hf), None)
    return bool(getattr(cls, "_supports_sdpa", True)) if cls is not None else True


def quantize_linears(model: nn.Module, compute_dtype: torch.dtype, *, double_quant: bool = True) -> int:
    """Swap every ``nn.Linear`` but the output head for a meta ``bnb.nn.Linear4bit`` (NF4; double quant unless not)."""
    import bitsandbytes as bnb

    head = model.get_output_embeddings()
    swaps = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
             if isinstance(child, nn.Linear) and child is not head]  # fmt: skip
    for parent, name, lin in swaps:
        q = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=lin.bias is not None, compute_dtype=compute_dtype,
                              compress_statistics=double_quant, quant_type="nf4", device="meta")  # fmt: skip
        q.support_avx512bf16_for_cpu = False  # harness.models.keep_4bit_trainable: the training layout
        if lin.bias is not None:
            q.bias = nn.Parameter(torch.empty_like(lin.bias, device="meta"), requires_grad=False)
        setattr(parent, name, q)
    model.is_loaded_in_4bit = True  # what peft's prepare_model_for_kbit_training and dispatch read
    model.quantization_method = "bitsandbytes"
    return len(swaps)


def float8_linears(model: nn.Module) -> int:
    """torchao's ``convert_to_float8_training`` on every ``nn.Linear`` but the head whose sizes are
    multiples of 16 (what float8 matmuls need): fp8 casts of weight and input per matmul, bf16
    weights kept. torchao's ops have fake kernels: the step runs under ``FakeTensorMode`` on CPU."""
    try:
        from torchao.float8 import convert_to_float8_training
    except ImportError:
        from advisor.errors import AdvisorError

        raise AdvisorError("--float8 --simulate needs torchao: pip install 'torchao>=0.18'") from None
    head = model.get_output_embeddings()

    def eligible(mod: nn.Module, fqn: str) -> bool:
        return isinstance(mod, nn.Linear) and mod is not head and mod.in_features % 16 == 0 and mod.out_features % 16 == 0

    convert_to_float8_training(model, module_filter_fn=eligible)
    return sum(1 for m in model.modules() if type(m).__name__ == "Float8Linear")


def fake_quant_state(out_f: int, in_f: int, compute_dtype: torch.dtype, double_quant: bool = True):
    from bitsandbytes.functional import QuantState

    n = out_f * in_f
    blocks = math.ceil(n / NF4_BLOCK)
    if not double_quant:  # one fp32 absmax per block, no nested state
        return QuantState(absmax=torch.empty(blocks, dtype=torch.float32), shape=torch.Size([out_f, in_f]),
                          code=torch.empty(16, dtype=torch.float32), blocksize=NF4_BLOCK, quant_type="nf4",
                          dtype=compute_dtype)  # fmt: skip
    nested = QuantState(absmax=torch.empty(math.ceil(blocks / NESTED_BLOCK), dtype=torch.float32),
                        code=torch.empty(256, dtype=torch.float32), blocksize=NESTED_BLOCK, dtype=torch.float32)  # fmt: skip
    return QuantState(absmax=torch.empty(blocks, dtype=torch.uint8), shape=torch.Size([out_f, in_f]),
                      code=torch.empty(16, dtype=torch.float32), blocksize=NF4_BLOCK, quant_type="nf4",
                      dtype=compute_dtype, offset=torch.empty((), dtype=torch.float32), state2=nested)  # fmt: skip


def fakeify(model: nn.Module, compute_dtype: torch.dtype, *, real: bool = False) -> list:
    """Replace every meta parameter/buffer with a fake CPU tensor (call under ``FakeTensorMode``);
    ``real=True``: with real CPU tensors instead (random values, 4-bit weights quantized by
    bitsandbytes itself), to check the simulation against the same step on real tensors.
    Returns the quant-state tensors of the 4-bit weights."""
    memo: dict[int, torch.Tensor] = {}
    quant: list = []
    for module in model.modules():
        for name, p in list(module._parameters.items()):
            if p is None:
                continue
            if id(p) not in memo:
                memo[id(p)] = (_real_param if real else _fake_param)(module, p, compute_dtype, quant)
            module._parameters[name] = memo[id(p)]
        for name, b in list(module._buffers.items()):
            if b is not None:
                if id(b) not in memo:
                    memo[id(b)] = torch.zeros(b.shape, dtype=b.dtype) if real else torch.empty(b.shape, dtype=b.dtype)
                module._buffers[name] = memo[id(b)]
    return quant


def _fake_param(module: nn.Module, p: nn.Parameter, compute_dtype, quant: list) -> nn.Parameter:
    if p.__class__.__name__ == "Params4bit":
        out_f, in_f = module.out_features, module.in_features
        w = nn.Parameter(torch.empty(((out_f * in_f + 1) // 2, 1), dtype=torch.uint8), requires_grad=False)
        qs = fake_quant_state(out_f, in_f, compute_dtype, double_quant=bool(p.compress_statistics))
        w.quant_state = qs
        module.quant_state = qs
        quant += _quant_tensors(qs)
        return w
    return nn.Parameter(torch.empty(p.shape, dtype=p.dtype), requires_grad=p.requires_grad)


def _quant_tensors(qs) -> list:
    """The tensors of a 4-bit weight's quant state (with double quantization: its nested state's too)."""
    out = [qs.absmax, qs.code]
    if qs.nested:
        out += [qs.offset, qs.state2.absmax, qs.state2.code]
    return out


def _real_param(module: nn.Module, p: nn.Parameter, compute_dtype, quant: list) -> nn.Parameter:
    if p.__class__.__name__ == "Params4bit":
        from bitsandbytes.functional import quantize_4bit

        w = torch.randn(module.out_features, module.in_features, dtype=compute_dtype) * 0.02
        packed, qs = quantize_4bit(w, blocksize=NF4_BLOCK, compress_statistics=bool(p.compress_statistics), quant_type="nf4")
        param = nn.Parameter(packed, requires_grad=False)
        param.quant_state = qs
        module.quant_state = qs
        quant += _quant_tensors(qs)
        return param
    data = torch.randn(p.shape, dtype=p.dtype) * 0.02 if p.is_floating_point() else torch.zeros(p.shape, dtype=p.dtype)
    return nn.Parameter(data, requires_grad=p.requires_grad)
