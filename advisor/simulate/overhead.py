"""What a GPU run holds beyond the simulated step: the advisor's one overhead model (``advisor.memory.overhead``),
applied to the simulated peak, plus the one tensor the tracker cannot see.

The simulation counts every tensor torch allocates in the step (``torch.cuda.max_memory_allocated``'s
quantity, less what hides inside fused ops). Around it, the terms are the analytic path's, each with
its mechanism and source (``advisor.memory.overhead.constants()``), so both paths answer with the same model:
- **cuBLAS / cuBLASLt workspaces** (``CUBLAS_WORKSPACE_GB``): torch's workspace sizes; allocated.
- **allocator fragmentation** (``FRAG`` × the churn): reserved − allocated is the share of the bytes
  freed and re-allocated every step in other sizes (activations, temporaries, gradients; ``churn_gb``)
  that stays cached; weights, states and adapters are allocated once and do not fragment.
- **the range** (``RANGES`` by peak phase): the model's error on the published rows, leave-one-source-out.
- **CUDA context and NCCL** (``outside_torch_gb``): outside torch's count, in the budget.
And one term of the simulation's own, a blind spot of the tracker, not of the allocator:
- **bitsandbytes' forward dequantize buffer**: backward dequantizes each 4-bit weight through
  ``F.dequantize_4bit`` (a torch tensor: in the simulated peak, checked in tests/test_simulate.py),
  but forward calls the fused ``gemm_4bit`` op, whose CUDA implementation dequantizes the weight
  to the compute dtype inside the op; its fake kernel returns only the output. At most one such
  buffer (the largest 4-bit weight) is live: added when the peak is in the forward phase, and to
  the range's high end always. (The analytic path counts the same buffer in ``quant_constants``.)

Before this module used ``advisor.memory.overhead``, it had its own: allocator block rounding of the
long-lived tensors plus a fragmentation of 0.10 (expected) / 0.35 (high end) of the activations and
temporaries — two assumed fractions beside the analytic path's fitted one. Now there is one ``FRAG``.
"""

from __future__ import annotations

from advisor.inputs.catalog import GIB
from advisor.memory import overhead as model


def range_phase(sim_phase: str) -> str:
    """The analytic model's peak phase a simulated phase falls in (``RANGES``' keys)."""
    return "optimizer step" if sim_phase == "optimizer step" else "backward start"


def reserved(items_gb: dict, allocated_gb: float, *, bnb_dequant_bytes: int = 0, peak_phase: str = "backward",
             gpus: int = 1) -> dict:  # fmt: skip
    """Reserved memory (GiB) from the simulated peak: ``items_gb`` are its ``memory.Breakdown`` items
    (what churns), ``allocated_gb`` its total. Expected value, range and each term."""
    dequant_all = bnb_dequant_bytes / GIB
    dequant = dequant_all if peak_phase == "forward" else 0.0
    cublas = model.CUBLAS_WORKSPACE_GB
    churn = model.churn_gb(items_gb)
    expected = model.reserved_gb(allocated_gb + cublas + dequant, churn)
    lo, hi = model.RANGES[range_phase(peak_phase)]
    high = (expected + dequant_all - dequant) * (1 + hi)
    terms = {
        "cublas_workspace_gb": (cublas, "cuBLAS + cuBLASLt workspaces, 32 MiB each (advisor.memory.overhead.CUBLAS_WORKSPACE_GB)"),
        "allocator_fragmentation_gb": (model.FRAG * churn, f"FRAG {model.FRAG} × {churn:.2f} GB freed and re-allocated each step "
                                                           "(activations, temporaries, gradients; advisor.memory.overhead, fitted LOSO)"),
        "bnb_dequant_gb": (dequant, f"the largest 4-bit weight dequantized inside forward's gemm_4bit op ({dequant_all:.3f} GB; "
                                    "counted at a forward peak, in the high end always)"),
        "range": ((lo, hi), f"the model's error at a '{range_phase(peak_phase)}' peak on the published rows (advisor.memory.overhead.RANGES)"),
    }  # fmt: skip
    return {
        "allocated_gb": allocated_gb,
        "reserved_gb": expected,
        "reserved_gb_range": (expected * (1 + lo), high),
        "outside_torch_gb": model.outside_torch_gb(gpus),
        "churn_gb": churn,
        "terms": {k: {"gb" if k != "range" else "relative": (round(v, 3) if k != "range" else list(v)), "mechanism": why}
                  for k, (v, why) in terms.items()},  # fmt: skip
    }
