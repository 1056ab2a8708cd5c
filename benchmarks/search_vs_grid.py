"""A search against a grid at equal training compute, and the default recipe against the search's front.

    .venv/bin/python benchmarks/search_vs_grid.py [--study results/search] [--grid results/lr_rank]
        [--baseline lora:64:0.001] [--probe general_ppl]

Prints, from committed records only (nothing is trained here):

1. every trial of the study (the docs table): parameters, task score ± stderr, each probe's
   base → tuned with its drop ± stderr, peak memory, and whether it is on the Pareto front;
2. training compute (Σ tokens_trained × flops_per_token, the records' own FLOP count) of the
   study and of the grid, and the best task score each found: the study over its whole budget,
   the grid over the prefix of its points (in the preset's order, most informative first) that
   fits in the same compute, and the grid over all of its points;
3. the baseline trial (the default recipe, run inside the study on the study's budget) against
   every front member: Δ task score and Δ drop of ``--probe``, each ± its combined stderr, and
   whether the member scores within noise (|Δ| ≤ 2 se) and forgets significantly less (> 2 se).

The study and the grid score the same seed-1 test split (the study its first ``eval.limit``
examples, the grid the first 100), so their scores compare, with the study's wider stderr.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.forgetting import drop  # noqa: E402
from harness.record import read_record  # noqa: E402

Z = 2.0  # "within noise" and "significantly" both mean 2 combined standard errors, as harness/probes.py


def records(folder: Path) -> list[dict]:
    out = []
    for p in sorted(folder.glob("*.json")):
        try:
            out.append(read_record(p))
        except ValueError:
            pass
    return out


def flops(rec: dict) -> float:
    m = rec.get("metrics") or {}
    return float(m.get("tokens_trained") or 0) * float(m.get("flops_per_token") or 0)


def params(rec: dict) -> str:
    c = rec["config"]
    r = f" r={c['method']['r']}" if c["method"]["name"] in ("lora", "dora", "qlora") else ""
    return f"{c['method']['name']}{r} lr={c['train']['lr']:.2g} steps={c['train']['max_steps']}"


def score(rec: dict) -> tuple[float, float]:
    m = rec["metrics"]
    return float(m["task_score"]), float(m.get("task_score_stderr") or float("nan"))


def probe(rec: dict, name: str) -> dict | None:
    return ((rec.get("metrics") or {}).get("forgetting") or {}).get(name)


def study_trials(folder: Path):
    """(trial number, record, on the front) for the study in ``folder/search.db``, in trial order."""
    from harness.search.trials import load_studies

    views, notes = load_studies(folder)
    if not views:
        sys.exit(f"no study under {folder}: {'; '.join(notes) or 'no search.db'}")
    sv = views[0]
    return sv, [(t, t.record) for t in sorted(sv.trials, key=lambda t: t.number) if t.record]


def print_trials(sv, rows, probes: list[str]) -> None:
    print(f"## study {sv.name}: {len(sv.trials)} trials, objectives {', '.join(sv.objectives)}\n")
    print("| trial | recipe | status | task score | " + " | ".join(f"{p}: base → tuned (drop ± se)" for p in probes)
          + " | peak GB | wall s | front |")
    print("|---|---|---|---|" + "---|" * len(probes) + "---|---|---|")
    for t, rec in rows:
        cells = [str(t.number) + (" (baseline)" if _baseline(sv, t) else ""),
                 params(rec), rec["status"]]
        if rec["status"] == "ok":
            s, se = score(rec)
            cells.append(f"{s:.2f} ± {se:.2f}")
            for p in probes:
                e = probe(rec, p)
                cells.append("–" if not e else f"{e['base']:.3g} → {e['tuned']:.3g} ({drop(e):+.3g} ± {e['stderr']:.2g}{', sig' if e['significant'] else ''})")
            m = rec["metrics"]
            cells += [f"{m['peak_memory_gb']:.2f}", f"{m['wall_s']:.0f}", "yes" if t.front else ""]
        else:
            cells += ["–"] * (1 + len(probes)) + ["", f"{(rec.get('metrics') or {}).get('wall_s') or 0:.0f}", ""]
        print("| " + " | ".join(cells) + " |")
    print()


def _baseline(sv, t) -> bool:
    trial = sv.study.get_trials(deepcopy=False)[t.number]
    return bool(trial.user_attrs.get("baseline"))


def compare_compute(rows, grid: list[dict], grid_order: list[str]) -> None:
    ok = [rec for _, rec in rows if rec["status"] == "ok"]
    study_flops = sum(flops(rec) for _, rec in rows)
    best = max(ok, key=lambda r: score(r)[0])
    order = {rid: i for i, rid in enumerate(grid_order)}
    grid = sorted(grid, key=lambda r: order.get(r["run_id"], len(order)))
    prefix, used = [], 0.0
    for rec in grid:
        if used + flops(rec) > study_flops:
            break
        used += flops(rec)
        prefix.append(rec)
    grid_flops = sum(flops(r) for r in grid)
    gbest = max(grid, key=lambda r: score(r)[0])
    print("## equal training compute (Σ tokens_trained × flops_per_token)\n")
    print("| source | runs | training TFLOP | best task score | best recipe |")
    print("|---|---|---|---|---|")
    print(f"| study | {len(rows)} | {study_flops / 1e12:.1f} | {score(best)[0]:.2f} ± {score(best)[1]:.2f} | {params(best)} |")
    if prefix:
        pbest = max(prefix, key=lambda r: score(r)[0])
        print(f"| grid, first points within the study's compute | {len(prefix)} | {used / 1e12:.1f} | "
              f"{score(pbest)[0]:.2f} ± {score(pbest)[1]:.2f} | {params(pbest)} |")
    else:
        print(f"| grid, first points within the study's compute | 0 | 0 | – | its first point alone needs {flops(grid[0]) / 1e12:.1f} |")
    print(f"| grid, all points | {len(grid)} | {grid_flops / 1e12:.1f} | {score(gbest)[0]:.2f} ± {score(gbest)[1]:.2f} | {params(gbest)} |")
    print(f"\nthe study used {study_flops / grid_flops:.2f}× the grid's training compute\n")


def compare_default(sv, rows, baseline: str, probe_name: str) -> None:
    method, r, lr = baseline.split(":")
    base = [(t, rec) for t, rec in rows if rec["status"] == "ok" and rec["config"]["method"]["name"] == method
            and str(rec["config"]["method"]["r"]) == r and math.isclose(rec["config"]["train"]["lr"], float(lr))]
    if not base:
        print(f"no ok trial of the baseline {baseline} in the study\n")
        return
    bt, brec = max(base, key=lambda x: x[1]["config"]["train"]["max_steps"])
    bs, bse = score(brec)
    be = probe(brec, probe_name)
    print(f"## the baseline ({params(brec)}, trial {bt.number}) against the front\n")
    print(f"baseline: task score {bs:.2f} ± {bse:.2f}; {probe_name} {be['base']:.3g} → {be['tuned']:.3g} "
          f"(drop {drop(be):+.3g} ± {be['stderr']:.2g})\n")
    print(f"| front trial | recipe | Δ task score ± se | Δ {probe_name} drop ± se | score within noise | forgets significantly less |")
    print("|---|---|---|---|---|---|")
    for t, rec in rows:
        if not t.front or t.number == bt.number:
            continue
        s, se = score(rec)
        e = probe(rec, probe_name)
        ds, dse = s - bs, math.hypot(se, bse)
        dd, dde = drop(e) - drop(be), math.hypot(e["stderr"], be["stderr"])
        print(f"| {t.number} | {params(rec)} | {ds:+.2f} ± {dse:.2f} | {dd:+.3g} ± {dde:.2g} | "
              f"{'yes' if abs(ds) <= Z * dse or ds > 0 else 'no'} | {'yes' if -dd > Z * dde else 'no'} |")
    print()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", type=Path, default=REPO / "results/search")
    p.add_argument("--grid", type=Path, default=REPO / "results/lr_rank")
    p.add_argument("--baseline", default="lora:64:0.001", help="method:r:lr of the default recipe's trial")
    p.add_argument("--probe", default="general_ppl")
    a = p.parse_args()
    sv, rows = study_trials(a.study)
    probes = sorted({k for _, rec in rows for k in ((rec.get("metrics") or {}).get("forgetting") or {})})
    print_trials(sv, rows, probes)
    grid = [r for r in records(a.grid) if r["status"] == "ok"]
    if grid:
        from harness.config import load_spec
        import yaml

        preset = yaml.safe_load((REPO / "sweeps/sweep/lr_rank.yaml").read_text())["sweep"]
        ovs = list(preset["overrides"])
        order = []
        for point in preset["points"]:  # the preset's order: run ids as the sweep composed them
            own = [f"{k}={v}" for k, v in point.items()]
            order.append(load_spec([*ovs, *own, "repeat=0", f"results_dir={a.grid}"]).run_id)
        compare_compute(rows, grid, order)
    compare_default(sv, rows, a.baseline, a.probe)
    return 0


if __name__ == "__main__":
    sys.exit(main())
