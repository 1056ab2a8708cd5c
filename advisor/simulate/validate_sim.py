"""``advisor validate DIR --simulate``: the simulated allocated peak of every SmolLM2 record beside
its measured CPU resident set, and what separates the two.

A harness CPU record measures ``cpu_rss_delta``: the process's resident set above its pre-load
baseline. The simulation counts the step's tensors (what torch allocates). Between them, each
term with its mechanism (the advisor's CPU constants, ``advisor.memory.estimate``):
- **allocator**: glibc keeps freed heap pages (activations are freed and re-allocated every step
  in other sizes): ``CPU_SLACK_FRAC`` × the simulated activations + temporaries;
- **framework and Python baseline**: oneDNN/MKL scratch, thread stacks, the tokenizer and the
  dataset loaded after the baseline: ``CPU_RUNTIME_GB``;
- **probes**: the records' before/after scoring (eval batch 16, no grad) runs in the same
  process; it peaks below training on these records (activations without autograd), so it is
  named, not added.
``residual`` = measured − (simulated + allocator + framework): what no term explains. On checkpointed
runs it is glibc's heap high-water mark (its mmap threshold rises to the size of freed blocks, so
every layer-sized tensor, allocated twice a step under checkpointing, comes from a heap that keeps
its pages): ``benchmarks/cpu_allocator.py`` measures the same run with the threshold pinned
(``MALLOC_MMAP_THRESHOLD_=65536``) at 1.01 × simulated + framework, 1.75 × with glibc's default.
"""

from __future__ import annotations

from dataclasses import replace

from advisor.inputs.catalog import GIB
from advisor.memory.estimate import CPU_RUNTIME_GB, CPU_SLACK_FRAC


def _simulate(run, cache: dict) -> tuple[dict | None, str]:
    from advisor.inputs.catalog import MODELS
    from advisor.memory.setup import setup_for_run
    from advisor.simulate import model_config
    from advisor.validate.speed import run_workload

    objective = None
    if run.method in ("grpo", "dpo"):
        setup, objective, _, why = run_workload(run, for_memory=True)
    else:
        setup, why = setup_for_run(run)
    if setup is None:
        return None, why
    # the simulated step, on the CPU's autocast lists and per-tensor AdamW; the CPU's own terms are added here
    cpu_step = {"amp": "cpu", "optimizer_impl": "default"}
    setup = replace(setup, device="cuda")
    key = (setup, objective)
    if key not in cache:
        model = MODELS["SmolLM2-135M"]
        cfg = model_config.from_arch(setup.arch)
        if objective is None:
            peak = _extrapolated_peak(setup, cfg, cpu_step)
            cache[key] = {"allocated_gb": peak["total"] / GIB, "transient_gb": (peak["activations"] + peak["temporaries"]) / GIB}
        else:
            from advisor.simulate.objectives import simulate_objective

            d = simulate_objective(setup, replace(model, arch=setup.arch), objective, spec_over=cpu_step)
            k = d["training_step"]["kinds"]
            cache[key] = {"allocated_gb": d["peak_allocated_gb"], "transient_gb": k["activations"] + k["temporaries"]}
    return cache[key], ""


def _extrapolated_peak(setup, cfg: dict, spec_over: dict) -> dict:
    """The supervised step's peak (bytes by kind) at the record's depth, from the step simulated at 2 and 3 decoder
    layers and extrapolated per phase and kind, as the published rows are (``advisor.simulate.published``: exact
    where checked, P1 and FA5 at full depth). SmolLM2's 30 layers cost ~40 s a record at full depth; 57 distinct
    setups made `validate results/ --simulate` take over 25 minutes."""
    from advisor.simulate.habits import add_not_run
    from advisor.simulate.published import DEPTHS, extrapolate, step_at_depth

    entry = {}
    for depth in DEPTHS:
        res = step_at_depth(setup, cfg, depth, **spec_over)
        entry[f"L{depth}"] = {**res, "bnb_dequant_bytes": res.get("bnb_dequant_bytes", 0)}
    return add_not_run(extrapolate(entry, setup.arch.layers), setup)["peak"]


def simulated_runs(runs) -> list[dict]:
    """One row per ok SmolLM2 record: measured, simulated, each term, residual."""
    rows, cache = [], {}
    for run in runs:
        if run.status != "ok" or "smollm2" not in run.model_name.lower():
            continue
        sim, why = _simulate(run, cache)
        measured = run.peak_memory_gb
        row = {"run_id": run.run_id, "method": run.method, "memory_kind": run.memory_kind, "measured_gb": measured}
        if sim is None or measured is None:
            rows.append({**row, "simulated_gb": None, "why_not": why or "no peak_memory_gb"})
            continue
        slack = CPU_SLACK_FRAC * sim["transient_gb"]
        explained = sim["allocated_gb"] + slack + CPU_RUNTIME_GB
        rows.append({**row, "simulated_gb": round(sim["allocated_gb"], 3), "allocator_gb": round(slack, 3),
                     "framework_gb": CPU_RUNTIME_GB, "explained_gb": round(explained, 3),
                     "residual_gb": round(measured - explained, 3), "error_pct": round(100 * (explained - measured) / measured, 1)})  # fmt: skip
    return rows


def print_rows(rows: list[dict]) -> None:
    print("\nSimulated step vs measured CPU RSS (SmolLM2 records; GB = GiB)")
    print(f"  {'run':<44} {'kind':<14} {'measured':>8} {'simulated':>9} {'+alloc':>7} {'+frame':>7} {'residual':>8} {'err%':>6}")
    for r in rows:
        if r.get("simulated_gb") is None:
            print(f"  {r['run_id']:<44} not simulated: {r.get('why_not')}")
            continue
        print(f"  {r['run_id']:<44} {str(r['memory_kind']):<14} {r['measured_gb']:8.3f} {r['simulated_gb']:9.3f} "
              f"{r['allocator_gb']:7.3f} {r['framework_gb']:7.3f} {r['residual_gb']:8.3f} {r['error_pct']:6.1f}")  # fmt: skip
    done = [r for r in rows if r.get("simulated_gb") is not None]
    if done:
        mape = sum(abs(r["error_pct"]) for r in done) / len(done)
        print(f"  {len(done)} records: simulated + allocator + framework is {mape:.1f}% off the measured RSS on average "
              f"(allocator = {CPU_SLACK_FRAC} × activations + temporaries; framework = {CPU_RUNTIME_GB} GB; probes peak below training)")  # fmt: skip
        print("  a checkpointed run's residual is glibc's heap high-water mark; benchmarks/cpu_allocator.py measures the run "
              "again with MALLOC_MMAP_THRESHOLD_=65536, which leaves only the tensors")
