"""CUDA's autocast op policy and fused dropout, run on the simulated step's CPU tensors.

The simulated tensors are fake *CPU* tensors (fake CUDA tensors abort backward on a CPU build of torch), so
``torch.autocast`` dispatches through ``AutocastCPU``, whose op lists are not CUDA's. Both cast the matmuls,
linears and SDPA to bf16; only CUDA runs a second list in fp32 (``aten/src/ATen/autocast_mode.h``,
``AT_FORALL_FP32`` and ``AT_FORALL_FP32_SET_OPT_DTYPE``). On a GPU, under the Trainer's ``bf16=True``:
- ``layer_norm`` / ``group_norm`` cast their bf16 input to fp32, save that fp32 copy, and return fp32 (the
  next linear casts it back to bf16 and saves that copy too): GPT-NeoX, Falcon, Phi-2, GPT-2, OPT, StarCoder;
- ``pow``, ``exp``, ``log``, ``rsqrt``, ``softplus``, … return fp32: transformers' Python-written
  ``gelu_new`` (``x + 0.044715 * pow(x, 3)`` …) then keeps fp32 intermediates; Mamba's ``softplus``/``exp``;
- ``softmax``, ``log_softmax``, ``sum``, ``cumsum``, ``prod`` are given ``dtype=float32``;
while on CPU all of these run in bf16. This module registers, for as long as its context is open, CUDA's
policy as the ``AutocastCPU`` kernel of each of those operators (``torch.library``, the same place and the
same wrapper the C++ registers: exclude the autocast key, cast, redispatch), so the casts are ordinary
autograd-recorded ops and the tracker counts their copies. It acts only inside ``torch.autocast`` (the key is
in the thread's set only there) and leaves ops that already have a CPU autocast kernel alone: every one of
those is in CUDA's fp32 list too (``nll_loss``, ``mse_loss``, …), or is not in CUDA's lists at all.

**Dropout.** ``F.dropout`` on a CUDA tensor runs the fused ``native_dropout``, which keeps a bool mask (1 B an
element) for backward; on a CPU tensor ``at::dropout`` multiplies by a noise tensor in the input's dtype and saves
that (4 B an element on peft's fp32 LoRA inputs). While the policy is open, ``F.dropout`` in training is
``native_dropout``, as on the GPU.

The harness's own CPU records ran under CPU autocast (when they ran bf16 at all) and CPU dropout:
``StepSpec.amp="cpu"`` simulates those; ``"cuda"`` (the default) every GPU step.
"""

from __future__ import annotations

import contextlib

import torch

AMP_POLICIES = ("cuda", "cpu")

# CUDA's fp32 policy (autocast_mode.h AT_FORALL_FP32): every floating input cast to fp32
FP32 = ("acos", "asin", "cosh", "erfinv", "exp", "expm1", "log", "log10", "log2", "log1p", "reciprocal", "rsqrt", "sinh",
        "tan", "pow.Tensor_Scalar", "pow.Tensor_Tensor", "pow.Scalar", "softplus", "layer_norm", "native_layer_norm",
        "group_norm", "frobenius_norm.dim", "nuclear_norm", "nuclear_norm.dim", "cosine_similarity", "poisson_nll_loss",
        "cosine_embedding_loss", "nll_loss", "nll_loss2d", "hinge_embedding_loss", "kl_div", "l1_loss", "smooth_l1_loss",
        "huber_loss", "mse_loss", "margin_ranking_loss", "multilabel_margin_loss", "soft_margin_loss", "triplet_margin_loss",
        "multi_margin_loss", "binary_cross_entropy_with_logits", "dist", "pdist", "cdist", "renorm", "logsumexp")  # fmt: skip
# CUDA's fp32_set_opt_dtype policy (AT_FORALL_FP32_SET_OPT_DTYPE): dtype=float32 unless given or all inputs are fp32
FP32_SET_OPT_DTYPE = ("prod", "prod.dim_int", "softmax.int", "log_softmax.int", "cumprod", "cumsum", "linalg_vector_norm",
                      "linalg_matrix_norm", "linalg_matrix_norm.str_ord", "sum", "sum.dim_IntList")  # fmt: skip

_LOW = (torch.bfloat16, torch.float16)
_KEY = torch._C.DispatchKey.AutocastCPU
_open = [0]  # policy("cuda") contexts open (nested ones register nothing again)


def _exclude():
    return torch._C._ExcludeDispatchKeyGuard(torch._C.DispatchKeySet(_KEY))


def _cast(x):
    if isinstance(x, torch.Tensor) and x.dtype in _LOW:
        return x.to(torch.float32)
    if isinstance(x, (list, tuple)):
        return type(x)(_cast(v) for v in x)
    return x


def _low(x) -> bool:
    if isinstance(x, torch.Tensor):
        return x.dtype in _LOW
    return isinstance(x, (list, tuple)) and any(_low(v) for v in x)


def _overload(name: str):
    op, _, overload = name.partition(".")
    packet = getattr(torch.ops.aten, op, None)
    return getattr(packet, overload or "default", None) if packet is not None else None


def _fp32_kernel(op):
    def kernel(*args, **kwargs):
        with _exclude():
            return op(*_cast(args), **{k: _cast(v) for k, v in kwargs.items()})

    return kernel


def _set_opt_dtype_kernel(op):
    names = [a.name for a in op._schema.arguments]
    at = names.index("dtype")

    def kernel(*args, **kwargs):
        with _exclude():
            given = args[at] if len(args) > at else kwargs.get("dtype")
            if given is None and (_low(args) or _low(list(kwargs.values()))):
                if len(args) > at:
                    args = (*args[:at], torch.float32, *args[at + 1 :])
                else:
                    kwargs = {**kwargs, "dtype": torch.float32}
            return op(*args, **kwargs)

    return kernel


def _fused_dropout(cpu_dropout):
    """``F.dropout`` as on a CUDA tensor: training → ``torch.native_dropout`` (a bool mask saved), else as given."""

    def dropout(input, p: float = 0.5, training: bool = True, inplace: bool = False):
        if training and 0 < p < 1 and input.numel() > 0 and not inplace:
            return torch.native_dropout(input, p, True)[0]
        return cpu_dropout(input, p, training, inplace)

    return dropout


def _registrable(name: str):
    op = _overload(name)
    if op is None or torch._C._dispatch_has_kernel_for_dispatch_key(op.name(), "AutocastCPU"):
        return None  # not in this torch, or CPU autocast already has a policy for it
    return op


@contextlib.contextmanager
def policy(device: str = "cuda"):
    """While open, ``torch.autocast("cpu")`` follows ``device``'s op lists (``cuda``: CUDA's fp32 lists added).
    Open it around the whole step: activation checkpointing re-runs the forward under autocast in backward."""
    if device not in AMP_POLICIES:
        raise ValueError(f"amp policy: {device!r} is not one of {', '.join(AMP_POLICIES)}")
    if device == "cpu" or _open[0]:
        yield
        return
    _open[0] += 1
    lib = torch.library.Library("aten", "IMPL")  # noqa: TOR901 - a scoped override, destroyed on exit
    cpu_dropout = torch.nn.functional.dropout
    try:
        # the module attribute, not a TorchFunctionMode: checkpointing's recompute in backward must see it too
        torch.nn.functional.dropout = _fused_dropout(cpu_dropout)
        for name in FP32:
            if (op := _registrable(name)) is not None:
                lib.impl(name, _fp32_kernel(op), "AutocastCPU")
        for name in FP32_SET_OPT_DTYPE:
            if (op := _registrable(name)) is not None:
                lib.impl(name, _set_opt_dtype_kernel(op), "AutocastCPU")
        yield
    finally:
        torch.nn.functional.dropout = cpu_dropout
        lib._destroy()
        _open[0] -= 1


__all__ = ["AMP_POLICIES", "FP32", "FP32_SET_OPT_DTYPE", "policy"]
