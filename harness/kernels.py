"""Fused kernels, written in PyTorch: ``train.kernels`` = any of rms_norm, swiglu, rope, lora.

rms_norm, swiglu and rope are what Liger's ``apply_liger_kernel_to_*`` turns on by default (with its
fused linear cross-entropy, ``train.loss=chunked`` here); Unsloth and fms-acceleration's fast kernels
patch in those and a fused LoRA op. What they change is memory: each one saves for backward what the Triton kernel saves,
and works ``BLOCKS`` row blocks at a time, so its temporaries stay a small fraction of its input
as a kernel's registers do. The maths is transformers' (tests/test_kernels.py checks outputs and
gradients against it); nothing here is faster than the eager ops on a CPU.

- **rms_norm** (Liger's ``LigerRMSNormFunction``, Unsloth's ``Fast_RMS_Layernorm``): saves its input
  in its own dtype and one fp32 inverse RMS per row. transformers' RMSNorm upcasts its input and
  autograd keeps that fp32 copy (4 B per element where the input is bf16), and full fine-tuning
  keeps the normalized product too, for the weight's gradient.
- **swiglu** (``LigerSiLUMulFunction``): ``silu(gate) * up`` saves gate and up; transformers' saves
  gate, ``silu(gate)`` and up. Backward writes the two gradients over the saved inputs, as Liger does.
- **lora** (Unsloth's ``matmul_lora``/``LoRA_QKV``, fms-acceleration's ``fused_lora``): peft's adapter
  path as one op. peft casts each adapted input to the fp32 adapters' dtype, keeps a dropout mask and
  lora_A's input and output; the fused op keeps the dropped-out input in the compute dtype only.
- **rope** (``LigerRopeFunction``, Unsloth's ``Fast_RoPE_Embedding``): rotates q and k in place,
  saving only cos and sin; transformers' forms ``q * cos + rotate_half(q) * sin`` through three
  q-sized temporaries.

Modules a kernel does not fit (an RMSNorm with a gate, a GELU MLP, a model whose RoPE is not the
rotate-half form) keep transformers' own code; ``apply`` returns how many modules each kernel patched
(the record's ``metrics.kernels_patched``; 0: none of this model's fit).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import sys
from typing import Any, NamedTuple

from advisor.facts import KERNELS, parse_kernels as parse

BLOCKS = 8  # row blocks per call: a block's fp32 temporaries are 1/8 of the rows (the memory sim runs each op, so few)


def _rows(t):
    """``t`` as a (rows, last dim) view of the same memory, or None where its layout has none."""
    try:
        return t.view(-1, t.shape[-1])
    except RuntimeError:
        return None


def _blocks(n: int):
    step = max(1, -(-n // BLOCKS))
    return [slice(i, min(n, i + step)) for i in range(0, n, step)]


def _rms_norm_function():
    import torch

    class RMSNorm(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, weight, eps: float, offset: float):
            d = x.shape[-1]
            x2 = x.reshape(-1, d)
            # returned whole: a view made here could not be changed in place later (Gemma 3's RoPE after its q/k norms)
            y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
            y2 = y.view(-1, d)
            rstd = torch.empty(x2.shape[0], dtype=torch.float32, device=x.device)
            w = weight.float() + offset
            for b in _blocks(x2.shape[0]):
                xb = x2[b].float()
                r = torch.rsqrt(xb.pow(2).mean(-1) + eps)
                rstd[b] = r
                y2[b] = (xb * r[:, None] * w).to(y.dtype)
            ctx.save_for_backward(x, weight, rstd)
            ctx.offset = offset
            return y

        @staticmethod
        def backward(ctx, dy):
            x, weight, rstd = ctx.saved_tensors
            d = x.shape[-1]
            x2, dy2 = x.reshape(-1, d), dy.reshape(-1, d)
            dx = torch.empty_like(x2)
            dw = torch.zeros(d, dtype=torch.float32, device=x.device) if ctx.needs_input_grad[1] else None
            w = weight.float() + ctx.offset
            for b in _blocks(x2.shape[0]):
                xhat = x2[b].float() * rstd[b][:, None]
                g = dy2[b].float()
                if dw is not None:
                    dw += (g * xhat).sum(0)
                gw = g * w
                dx[b] = (rstd[b][:, None] * (gw - xhat * (gw * xhat).mean(-1, keepdim=True))).to(dx.dtype)
            return dx.view(x.shape), None if dw is None else dw.to(weight.dtype), None, None

    return RMSNorm


def _silu_mul_function():
    import torch
    import torch.nn.functional as F

    class SiLUMul(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            # backward writes the gradients over a and b through row views: halves of one fused gate_up output
            # (Phi-3) are such views already; a layout without one is copied first
            a, b = (t if _rows(t) is not None else t.contiguous() for t in (a, b))
            a2, b2 = _rows(a), _rows(b)
            c = torch.empty(a.shape, dtype=a.dtype, device=a.device)
            c2 = c.view(-1, a.shape[-1])
            for r in _blocks(a2.shape[0]):
                c2[r] = F.silu(a2[r]) * b2[r]
            ctx.save_for_backward(a, b)
            return c

        @staticmethod
        def backward(ctx, dc):
            a, b = ctx.saved_tensors  # the gradients are written over them (Liger's swiglu_backward)
            a2, b2, dc2 = _rows(a), _rows(b), dc.reshape(-1, dc.shape[-1])
            for r in _blocks(a2.shape[0]):
                af, bf, g = a2[r].float(), b2[r].float(), dc2[r].float()  # fp32 inputs: views, so both grads first
                sig = torch.sigmoid(af)
                db = g * af * sig
                da = g * bf * sig * (1 + af * (1 - sig))
                b2[r], a2[r] = db, da
            return a, b

    return SiLUMul


def _rope_function():
    import torch

    class Rope(torch.autograd.Function):
        """One of q, k rotated in place (``ctx.mark_dirty``: autograd takes one in-place view per Function);
        the first ``cos.shape[-1]`` dims of each head (partial rotary)."""

        @staticmethod
        def forward(ctx, t, cos, sin):
            _rotate_(t, cos, sin, sign=1.0)
            ctx.mark_dirty(t)
            ctx.save_for_backward(cos, sin)
            return t

        @staticmethod
        def backward(ctx, dt):
            cos, sin = ctx.saved_tensors
            dt = dt.clone()  # the incoming gradient may be shared: rotated in the kernel's own output buffer
            _rotate_(dt, cos, sin, sign=-1.0)
            return dt, None, None

    return Rope


def _lora_function():
    import torch

    class LoRA(torch.autograd.Function):
        """``lora_B(lora_A(dropout(x))) * scaling`` as one op: x stays in its dtype, the adapters are cast to it
        per call; saves the dropped-out input only (its zeros are the mask) and recomputes lora_A's r-wide output."""

        @staticmethod
        def forward(ctx, x, A, B, scale: float, p: float):
            dtype = x.dtype
            xd = x
            if p:
                xd = x * torch.empty_like(x).bernoulli_(1 - p)
                xd.div_(1 - p)
            out = (xd @ A.t().to(dtype)) @ B.t().to(dtype)
            out.mul_(scale)
            ctx.save_for_backward(xd, A, B)
            ctx.scale, ctx.p = scale, p
            return out

        @staticmethod
        def backward(ctx, g):
            xd, A, B = ctx.saved_tensors
            dtype, d_in = xd.dtype, xd.shape[-1]
            a, b = A.to(dtype), B.to(dtype)
            x2, g2 = xd.reshape(-1, d_in), g.reshape(-1, g.shape[-1])
            gh = (g2 @ b).mul_(ctx.scale)  # r-wide
            dA = gh.t() @ x2
            dB = (g2.t() @ (x2 @ a.t())).mul_(ctx.scale)
            dx = gh @ a
            if ctx.p:
                dx.mul_(x2 != 0).div_(1 - ctx.p)
            return dx.view(xd.shape), dA.to(A.dtype), dB.to(B.dtype), None, None

    return LoRA

def _rotate_(t, cos, sin, *, sign: float) -> None:
    """In place, head block by head block: [x1, x2] → [x1·cos − x2·sin, x2·cos + x1·sin] (sign −1: the inverse).
    ``t``: (batch, heads, seq, head_dim); ``cos``/``sin``: (batch, seq, rot) broadcast over heads."""
    rot = cos.shape[-1]
    half = rot // 2
    c, s = cos.unsqueeze(1), sin.unsqueeze(1) * sign
    for hb in _blocks(t.shape[1]):
        x = t[:, hb, :, :rot]
        x1 = x[..., :half].clone()
        x2 = x[..., half:]
        x[..., :half] = x1 * c[..., :half] - x2 * s[..., :half]
        x[..., half:] = x2 * c[..., half:] + x1 * s[..., half:]


class Functions(NamedTuple):
    rms_norm: Any
    silu_mul: Any
    rope: Any
    lora: Any


@functools.cache
def functions() -> Functions:
    """The kernels' autograd Functions, built on first use (torch is imported then, not at module load)."""
    return Functions(_rms_norm_function(), _silu_mul_function(), _rope_function(), _lora_function())


def _plain_forward(module) -> bool:
    """forward(self, hidden_states) and nothing else (an RMSNorm with a gate argument is another kernel)."""
    params = list(inspect.signature(type(module).forward).parameters)
    return len(params) == 2


def _norm_forward(module):
    RMSNorm = functions().rms_norm
    eps = float(getattr(module, "variance_epsilon", getattr(module, "eps", 1e-6)))
    offset = 1.0 if type(module).__name__.startswith("Gemma") else 0.0  # Gemma scales by (1 + weight)
    return lambda hidden_states: RMSNorm.apply(hidden_states, module.weight, eps, offset)


def _mlp_forward(module):
    SiLUMul = functions().silu_mul
    if hasattr(module, "gate_up_proj"):  # Phi-3: one fused projection, gate then up (Liger's LigerPhi3SwiGLUMLP)
        def fused(x):
            gate, up = module.gate_up_proj(x).chunk(2, dim=-1)
            return module.down_proj(SiLUMul.apply(gate, up))

        return fused
    return lambda x: module.down_proj(SiLUMul.apply(module.gate_proj(x), module.up_proj(x)))


def _swiglu_mlp(m) -> bool:
    """A gated SiLU MLP in transformers' layout: gate_proj/up_proj/down_proj + act_fn (Llama, Qwen, Mistral, shared
    experts), or Phi-3's gate_up_proj/down_proj + activation_fn. Routed experts (3-D weights) keep their code."""
    if all(hasattr(m, n) for n in ("gate_proj", "up_proj", "down_proj", "act_fn")):
        return _is_silu(m.act_fn)
    return all(hasattr(m, n) for n in ("gate_up_proj", "down_proj", "activation_fn")) and _is_silu(m.activation_fn)


def _lora_forward(module):
    """peft's LoRA Linear (plain or 4-bit) with each active adapter through the fused op (DoRA keeps peft's)."""
    import torch

    LoRA = functions().lora

    def forward(x, *args, **kwargs):
        result = module.base_layer(x, *args, **kwargs)
        if getattr(module, "disable_adapters", False) or getattr(module, "merged", False):
            return result
        for name in module.active_adapters:
            if name not in module.lora_A:
                continue
            drop = module.lora_dropout[name]
            p = drop.p if isinstance(drop, torch.nn.Dropout) and module.training else 0.0
            result = result + LoRA.apply(x, module.lora_A[name].weight, module.lora_B[name].weight, float(module.scaling[name]), p)
        return result

    return forward


def _fusable_lora(m) -> bool:
    """peft's LoRA on a Linear (bitsandbytes' 4-bit one is a Linear too); not DoRA, not peft's ParamWrapper on a
    model's 3-D expert weights (those keep peft's path, as Unsloth's and fms-acceleration's ops do)."""
    import torch

    use_dora = getattr(m, "use_dora", {}) or {}
    return (all(hasattr(m, n) for n in ("lora_A", "lora_B", "base_layer", "scaling")) and not any(use_dora.values())
            and isinstance(m.base_layer, torch.nn.Linear))  # fmt: skip


def _is_silu(act) -> bool:
    import torch

    return isinstance(act, torch.nn.SiLU) or type(act).__name__ == "SiLUActivation"


def _rope_module(model):
    """The modeling module whose ``apply_rotary_pos_emb`` is transformers' rotate-half form, or None."""
    for m in model.modules():
        if type(m).__name__.endswith("Attention"):
            mod = sys.modules.get(type(m).__module__)
            fn = getattr(mod, "apply_rotary_pos_emb", None)
            fn = getattr(fn, "original", fn)
            if fn is None or not hasattr(mod, "rotate_half"):
                return None
            params = list(inspect.signature(fn).parameters)[:4]
            if params == ["q", "k", "cos", "sin"] and "rotate_half" in fn.__code__.co_names:
                return mod
            return None
    return None


_ROPE_ON = contextvars.ContextVar("tunebench_fused_rope", default=0)


def _install_rope(mod) -> None:
    """Put a dispatcher in place of ``mod.apply_rotary_pos_emb`` (once): the fused rotation while a patched
    model's attention runs (its forward hooks, which checkpointing's recompute fires again), transformers'
    own for every other model in the process."""
    fn = mod.apply_rotary_pos_emb
    if getattr(fn, "original", None) is not None:
        return

    def apply_rotary_pos_emb(q, k, cos, sin, *args, **kwargs):
        if not _ROPE_ON.get() or q.dim() != 4 or kwargs.get("unsqueeze_dim", 1) != 1 or len(args) > 1:
            return fn(q, k, cos, sin, *args, **kwargs)
        rope = functions().rope
        return rope.apply(q, cos, sin), rope.apply(k, cos, sin)

    apply_rotary_pos_emb.original = fn
    mod.apply_rotary_pos_emb = apply_rotary_pos_emb


def _rope_on(module, args):
    module._tunebench_rope_token = _ROPE_ON.set(1)


def _rope_off(module, args, output):
    token = module.__dict__.pop("_tunebench_rope_token", None)
    if token is not None:
        _ROPE_ON.reset(token)


def apply(model: Any, kernels) -> dict[str, int]:
    """Patch ``model`` (a transformers model, or PEFT around one) with ``kernels``, for good (as peft patches
    its layers); returns {kernel: modules patched}. Norms and MLPs get an instance ``forward``; RoPE, a
    module-level function in transformers, is dispatched per call to this model's attention modules."""
    names = parse(kernels)
    done: dict[str, int] = {k: 0 for k in names}
    for m in model.modules():
        cls = type(m).__name__
        if "rms_norm" in names and cls.endswith("RMSNorm") and hasattr(m, "weight") and _plain_forward(m):
            m.forward = _norm_forward(m)
            done["rms_norm"] += 1
        if "swiglu" in names and _swiglu_mlp(m):
            m.forward = _mlp_forward(m)
            done["swiglu"] += 1
        if "lora" in names and _fusable_lora(m):
            m.forward = _lora_forward(m)
            done["lora"] += 1
    mod = _rope_module(model) if "rope" in names else None
    if mod is not None:
        _install_rope(mod)
        for m in model.modules():
            if type(m).__name__.endswith("Attention"):
                m.register_forward_pre_hook(_rope_on)
                m.register_forward_hook(_rope_off)
                done["rope"] += 1
    return done


__all__ = ["BLOCKS", "KERNELS", "apply", "functions", "parse"]
