"""The simulated path on the published memory rows, leave-one-source-out (torch-free: reads the cache).

``benchmarks/simulated_published.py`` simulates each row's step at 2 and 3 decoder layers (real widths)
and caches the bytes by phase and kind in ``advisor/data/simulated_published.json``. Full depth is
extrapolated linearly per phase and per kind: ``x(L) = x2 + (L − 2)·(x3 − x2)``. The mechanism: each
decoder layer adds its weights, gradients, optimizer states and saved activations; the embeddings,
the head and the logits do not depend on the depth. The peak phase is chosen at full depth.

Around the simulated allocated peak, reserved memory is ``advisor.memory.overhead``'s model, as
``advisor.simulate.overhead.reserved`` applies it (cuBLAS workspaces, the forward 4-bit dequantize
buffer at a forward peak, FRAG × the churn); FRAG is re-fitted leave-one-source-out on the grid, and
each row is compared like with like (allocated or reserved), exactly as ``validate.memory.validate_loso``.
"""

from __future__ import annotations

import json

from advisor.inputs import DATA
from advisor.inputs.catalog import GIB

CACHE = DATA / "simulated_published.json"
DEPTHS = (2, 3)


def extrapolate(entry: dict, layers: int) -> dict:
    """The full-depth step from the 2- and 3-layer ones: every phase's bytes by kind, and the facts."""
    a, b = entry[f"L{DEPTHS[0]}"], entry[f"L{DEPTHS[1]}"]
    n = layers - DEPTHS[0]

    def lin(x, y):
        return x + n * (y - x)

    phases = {ph: {k: lin(v, b["phases"][ph].get(k, 0)) for k, v in kinds.items()} for ph, kinds in a["phases"].items()}
    peak_phase = max(phases, key=lambda ph: phases[ph]["total"])
    facts = {k: lin(a[k], b[k]) for k in ("trainable_params", "total_params", "trainable_bytes", "quant_bytes")}
    # one 4-bit weight (the largest), the same shape in every layer: does not grow with depth
    return {"phases": phases, "peak": phases[peak_phase], "peak_phase": peak_phase, **facts,
            "bnb_dequant_bytes": b["bnb_dequant_bytes"]}  # fmt: skip


def step_at_depth(setup, cfg: dict, layers: int | None, **spec_over) -> dict:
    """``step.run`` (one FSDP2 rank's ``sharded.run`` when sharded) of ``setup`` with ``layers`` decoder layers at its
    real widths (None: as built): what ``extrapolate`` reads at each of ``DEPTHS``. ``spec_over``: StepSpec fields."""
    from dataclasses import replace

    from advisor.simulate import model_config, sharded, step, step_spec

    at, c = setup, cfg
    if layers is not None:
        at = replace(setup, arch=replace(setup.arch, layers=layers, moe_layers=setup.arch.moe_layers and layers))
        c = model_config.with_layers(cfg, layers)
    spec = step_spec(at, **spec_over)
    return sharded.run(c, spec, at.gpus, at.sharding) if at.gpus > 1 and at.sharding != "ddp" else step.run(c, spec)


def load_cache(path=None) -> dict:
    from advisor.errors import AdvisorError

    p = path or CACHE
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise AdvisorError(f"simulated published rows: cannot read {p} ({type(e).__name__}); "
                           "regenerate it with python benchmarks/simulated_published.py") from None  # fmt: skip


def unexpressed(setup) -> str:
    """Why the simulated step is not this row's step ('' when it is): options of the setup the harness's step,
    and so the simulation, does not have (scoring it would score another step)."""
    why = []
    if setup.optimizer_in_backward:
        why.append("optimizer in backward (torchtune: each gradient freed as its parameter steps)")
    if setup.optimizer.startswith("paged_"):
        why.append(f"a paged optimizer ({setup.optimizer}: states paged to host memory)")
    return "the simulated step has no " + " nor ".join(why) if why else ""


def _parts(result: dict, adapted: bool) -> tuple[float, float, float]:
    """(allocated GiB, churn GiB, dequant GiB counted in the expected value) of an extrapolated step."""
    from advisor.memory import overhead as model
    from advisor.simulate.report import _items

    items = _items(result, adapted)
    dequant = result["bnb_dequant_bytes"] / GIB if result["peak_phase"] == "forward" else 0.0
    return result["peak"]["total"] / GIB, model.churn_gb(items), dequant


def rows_by_frac(cache: dict, *, overhead_term: bool = True) -> tuple[dict, list]:
    """{FRAG: [validate.memory.Row]} for the simulated path, and the rows not simulated (id, why).
    ``overhead_term``: False leaves out the overhead model (reserved = allocated), for the tests' break."""
    from dataclasses import replace

    from advisor.memory import overhead as model
    from advisor.simulate.habits import add_not_run
    from advisor.validate import memory as vm

    analytic = {r.id: r for r in vm.validate_published()}
    parts, skipped = {}, []
    for r in vm.published_rows():
        entry = cache["rows"].get(r["id"])
        if entry is None or "error" in entry:
            skipped.append((r["id"], entry["error"] if entry else "not in the cache (not simulated yet)"))
            continue
        setup = vm.published_setup(r)
        if unexpressed(setup):
            skipped.append((r["id"], unexpressed(setup)))
            continue
        res = add_not_run(extrapolate(entry, setup.arch.layers), setup)
        parts[r["id"]] = (_parts(res, setup.adapted), res["peak_phase"])
    out = {}
    for f in model.FRAG_GRID:
        rows = []
        for rid, ((alloc, churn, dequant), phase) in parts.items():
            a = analytic[rid]
            if a.metric == "allocated" or not overhead_term:
                pred = alloc + (model.CUBLAS_WORKSPACE_GB if overhead_term else 0.0)
            else:
                pred = model.reserved_gb(alloc + model.CUBLAS_WORKSPACE_GB + dequant, churn, frag=f)
            rng = "optimizer step" if phase == "optimizer step" else "backward start"
            rows.append(replace(a, predicted_gb=pred, error_pct=100 * (pred - a.measured_gb) / a.measured_gb,
                                phase=rng, range_gb=None, in_range=None))  # fmt: skip
        out[f] = rows
    return out, skipped


def loso(cache: dict | None = None, *, overhead_term: bool = True) -> dict:
    """Per-source LOSO scores of both paths on the rows the simulator built, and the rows it did not."""
    from advisor.validate import calibration
    from advisor.validate import memory as vm

    cache = cache if cache is not None else load_cache()
    by_frac, skipped = rows_by_frac(cache, overhead_term=overhead_term)
    _, sim = calibration.loso(by_frac)
    ids = {r.id for r in next(iter(by_frac.values()))}
    from advisor.memory import overhead as model

    ana_by_frac = {f: [r for r in vm.validate_published(frag=f) if r.id in ids] for f in model.FRAG_GRID}
    _, ana = calibration.loso(ana_by_frac)
    return {"simulated": [s.to_dict() for s in sim], "analytic": [s.to_dict() for s in ana],
            "skipped": [{"id": i, "why": w} for i, w in skipped],
            "versions": cache.get("versions", {}), "command": cache.get("command", ""),
            "basis": f"simulated at {DEPTHS[0]} and {DEPTHS[1]} layers, extrapolated linearly per phase and kind; "
                     "reserved = advisor.memory.overhead's model, FRAG re-fitted leave-one-source-out"}  # fmt: skip


def _total(scores: list[dict]) -> dict:
    n = sum(s["n"] for s in scores)
    if not n:
        return {"n": 0, "mae_pct": 0.0, "bias_pct": 0.0, "under_high": 0}
    return {"n": n, "mae_pct": sum(s["mae_pct"] * s["n"] for s in scores) / n,
            "bias_pct": sum(s["bias_pct"] * s["n"] for s in scores) / n, "under_high": sum(s["under_high"] for s in scores)}


def print_report(d: dict) -> None:
    from advisor.render.common import console

    c = console()
    c.print()
    c.print("Memory, simulated vs analytic: published rows, leave-one-source-out")
    c.print(f"  {'source':<20} {'n':>3} {'sim MAE':>8} {'bias':>7} {'≤ high':>7}   {'ana MAE':>8} {'bias':>7} {'≤ high':>7}")
    ana = {s["source"]: s for s in d["analytic"]}
    for s in d["simulated"] + [{"source": "all", **_total(d["simulated"])}]:
        a = ana.get(s["source"]) or {"source": "all", **_total(d["analytic"])}
        c.print(f"  {s['source']:<20} {s['n']:>3} {s['mae_pct']:>7.1f}% {s['bias_pct']:>+6.1f}% {s['under_high'] / s['n']:>7.0%}   "
                f"{a['mae_pct']:>7.1f}% {a['bias_pct']:>+6.1f}% {a['under_high'] / a['n']:>7.0%}")  # fmt: skip
    for s in d["skipped"]:
        c.print(f"  [dim]{s['id']} not simulated: {s['why']}[/]")
    v = d["versions"]
    c.print(f"[dim]{d['basis']}; cache: torch {v.get('torch', '?')}, transformers {v.get('transformers', '?')}; "
            f"regenerate: {d['command']}[/]")  # fmt: skip


__all__ = ["CACHE", "DEPTHS", "extrapolate", "load_cache", "loso", "print_report", "rows_by_frac", "step_at_depth"]
