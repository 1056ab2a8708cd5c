"""``advisor estimate --simulate --gpu X``: the time of the simulated step, priced operator by operator.

``ops.trace`` runs the harness's step on fake tensors and records every operator's FLOPs and bytes;
``pricing.price`` turns them into seconds on the GPU's datasheet rates. The output has the analytic
estimate's ``step_time`` keys (``render.speed.step_dict``) plus ``"simulated": true`` and what the
time is made of.
"""

from __future__ import annotations


def device_for(gpu):
    """The GPU of an ``inputs.catalog.GpuBudget`` as ``speed.step.Rates`` (datasheet peak and bandwidth)."""
    from advisor.speed.step import gpu_rates

    return gpu_rates(gpu.card, gpu.tflops_basis)


def step_ops(setup, config: dict, *, trust_remote_code: bool = False):
    """The operators of one micro-batch and one optimizer step of ``setup`` (``advisor.memory.estimate.Setup``)."""
    from advisor.simulate import ops, step_spec

    return ops.trace(config, step_spec(setup, trust_remote_code=trust_remote_code, grad_accum=1))


def simulated_time(setup, config: dict, dev, *, tokens: float | None = None, optimizer_shards: int = 1,
                   trust_remote_code: bool = False):  # fmt: skip
    """(``pricing.Priced``, operator totals) of one optimizer step of ``setup`` on ``dev``.
    ``tokens``: the tokens a step counts (default: every position of every micro-batch)."""
    from advisor.simulate import ops, pricing

    traced = step_ops(setup, config, trust_remote_code=trust_remote_code)
    counted = tokens if tokens is not None else setup.batch_size * setup.seq_len * setup.grad_accum
    name = dev.name if dev.name != "GPU" else None
    priced = pricing.price(traced, dev, gpu_name=name, grad_accum=setup.grad_accum, tokens=counted,
                           causal=setup.attention == "flash", optimizer_shards=optimizer_shards, compile=setup.compile)  # fmt: skip
    return priced, ops.totals(traced)


def time_dict(priced, totals: dict, dev) -> dict:
    """The analytic ``step_time`` keys, plus ``simulated`` and the step's make-up."""
    from advisor.render.common import rounded
    from advisor.simulate import pricing

    micro = totals.get("micro", {})
    lo, hi = priced.tokens_per_s_range
    return {
        "seconds": rounded(priced.seconds, 3), "seconds_range": [rounded(priced.low, 3), rounded(priced.high, 3)],
        "tokens_per_step": priced.tokens, "tokens_per_s": rounded(priced.tokens_per_s, 0),
        "tokens_per_s_range": [rounded(lo, 0), rounded(hi, 0)],
        "basis": f"{dev.basis}; per-operator roofline of the simulated step (advisor/simulate/pricing.py)",
        "simulated": True,
        "flops_per_micro_batch": sum(k["flops"] for k in micro.values()),
        "bytes_per_micro_batch": sum(k["bytes"] for k in micro.values()),
        "kernels_per_step": priced.kernels,
        "seconds_by_kind": {"compute": rounded(priced.compute_s, 4), "memory": rounded(priced.memory_s, 4),
                            "host_issue": rounded(priced.host_s, 4)},
        "rates": {"matmul_of_peak": [pricing.MAMF_TABLE[0], pricing.MAMF.get(dev.name, pricing.MAMF_TABLE[1])],
                  "attention_of_peak": list(pricing.ATTENTION), "bandwidth_of_datasheet": list(pricing.BANDWIDTH),
                  "host_s_per_op": list(pricing.HOST_OP_S), "kernel_gap_s": pricing.KERNEL_GAP_S},
    }  # fmt: skip


def print_time(d: dict) -> None:
    lo, hi = d["tokens_per_s_range"]
    s_lo, s_hi = d["seconds_range"]
    k = d["seconds_by_kind"]
    print(f"\n  one optimizer step (simulated, priced per operator): ~{d['seconds']:.3g} s ({s_lo:.3g}–{s_hi:.3g} s), "
          f"{d['tokens_per_s']:,.0f} tokens/s ({lo:,.0f}–{hi:,.0f})")  # fmt: skip
    print(f"    {d['flops_per_micro_batch'] / 1e12:.2f} TFLOP and {d['bytes_per_micro_batch'] / 1e9:.2f} GB moved per micro-batch, "
          f"{d['kernels_per_step']:,} kernels per step; at the fast rates: compute {k['compute']:.3g} s, "
          f"memory-bound {k['memory']:.3g} s, host issue {k['host_issue']:.3g} s")  # fmt: skip
    print(f"    {d['basis']}")
