"""The simulated step in the analytic estimate's terms: a ``memory.Breakdown`` and its JSON keys.

The tracker's kinds map onto the analytic items: parameters + buffers → weights (less the
adapters); adapters' parameters, gradients and optimizer states → adapter (LoRA-style methods);
the 4-bit quant states and the batch → quant_constants and activations; activations +
temporaries → activations (logits included: the analytic path's ``logits`` item is 0 here, the
``loss`` phase shows what the head and cross-entropy add).
"""

from __future__ import annotations

from advisor.inputs.catalog import GIB
from advisor.memory.estimate import CPU_RUNTIME_GB, CPU_SLACK_FRAC, Breakdown
from advisor.simulate import overhead

PHASE_ORDER = ("forward", "loss", "backward", "optimizer step")


def breakdown(result: dict, *, adapted: bool, per_gpu: bool, notes: tuple = (), device: str = "cuda", gpus: int = 1) -> Breakdown:
    peak, phases = result["peak"], result["phases"]
    g = {k: v / GIB for k, v in peak.items()}
    items = _items(result, adapted)
    name = peak_phase(result)
    other = max((p["total"] for n, p in phases.items() if n != name), default=0) / GIB
    res = _reserved(result, adapted, gpus)
    cpu = None
    if device == "cpu":  # the harness's CPU runs: resident set = tensors + glibc slack on the transient ones + runtime
        cpu = g["total"] + CPU_SLACK_FRAC * (g["activations"] + g["temporaries"]) + CPU_RUNTIME_GB
    return Breakdown(
        **items, peak_allocated_gb=g["total"],
        peak_reserved_gb=None if cpu is not None else res["reserved_gb"], cpu_resident_gb=cpu, peak_phase=name, other_phase_gb=other,
        paged_optimizer_gb=0.0, trainable_params=result["trainable_params"], total_params=result["total_params"],
        per_gpu=per_gpu, notes=tuple(notes), peak_allocated_gb_range=(g["total"], g["total"]),
        peak_reserved_gb_range=None if cpu is not None else res["reserved_gb_range"],
        cuda_context_gb=0.0 if cpu is not None else res["outside_torch_gb"], churn_gb=res["churn_gb"],
        reserved_basis="modelled: advisor.memory.overhead's terms (cuBLAS workspaces, FRAG × churn, RANGES) on the simulated step",
    )  # fmt: skip


def peak_phase(result: dict) -> str:
    return max(result["phases"], key=lambda n: result["phases"][n]["total"])


def _items(result: dict, adapted: bool) -> dict:
    """The peak's bytes in the analytic estimate's items (GiB): what ``advisor.memory.overhead`` reads as static or churn."""
    g = {k: v / GIB for k, v in result["peak"].items()}
    quant = result["quant_bytes"] / GIB
    adapter_params = result["trainable_bytes"] / GIB if adapted else 0.0
    return dict(weights=g["parameters"] + g["buffers"] - adapter_params, gradients=0.0 if adapted else g["gradients"],
                optimizer_states=0.0 if adapted else g["optimizer_states"],
                activations=g["activations"] + g["temporaries"] + g["other"] - quant,
                adapter=adapter_params + g["gradients"] + g["optimizer_states"] if adapted else 0.0, quant_constants=quant,
                logits=0.0, runtime_overhead=0.0)  # fmt: skip


def _reserved(result: dict, adapted: bool, gpus: int = 1) -> dict:
    return overhead.reserved(_items(result, adapted), result["peak"]["total"] / GIB,
                             bnb_dequant_bytes=result.get("bnb_dequant_bytes", 0), peak_phase=peak_phase(result), gpus=gpus)  # fmt: skip


def extras(result: dict, *, adapted: bool = True, gpus: int = 1) -> dict:
    """What only the simulation has: the peak by tracker kind, every phase's peak, the overhead terms."""
    peak = result["peak"]
    res = _reserved(result, adapted, gpus)
    kinds = {k: round(v / GIB, 4) for k, v in peak.items() if k != "total"}
    phases = {n: {"allocated_gb": round(p["total"] / GIB, 4), "kinds": {k: round(v / GIB, 4) for k, v in p.items() if k != "total"}}
              for n, p in sorted(result["phases"].items(), key=lambda kv: PHASE_ORDER.index(kv[0]) if kv[0] in PHASE_ORDER else 9)}  # fmt: skip
    return {
        "simulated": True,
        "kinds": kinds,
        "phases": phases,
        "overhead": {"modelled": True, "reserved_gb": round(res["reserved_gb"], 3),
                     "reserved_gb_range": [round(x, 3) for x in res["reserved_gb_range"]], "terms": res["terms"],
                     "cuda_context_gb": {"gb": res["outside_torch_gb"], "mechanism": "CUDA context (+ NCCL with several GPUs), outside "
                                                                                      "torch's count (advisor.memory.overhead.outside_torch_gb)"}},
        "simulation_s": round(result.get("seconds", 0.0), 1),
    }  # fmt: skip
