""""LoRA learns less and forgets less" (Biderman et al., 2024), measured on tunebench's own task.

An aggressive full fine-tune (lr 1e-3 = 50× the usual 2e-5, 3 epochs) and LoRA r=8 at its usual lr (2e-4) train on
`tickets` for the same 48 steps on SmolLM2-135M; both are scored on the task and on the forgetting
probes (general_mc, general_ppl) before and after. Expected: both learn the task; the full
fine-tune loses more on the probes (accuracy down / perplexity up).

    python benchmarks/forgetting.py            # SmolLM2-135M, est. ~15 min on 2 idle CPU cores
    python benchmarks/forgetting.py --quick    # tiny random model, ~1 min: checks the plumbing
    python benchmarks/forgetting.py --steps 100 --probe-limit 0   # longer, every probe document

Each run is `python -m harness …` in its own process and writes its record to --out; a run
whose record exists is not run again, so an interrupted benchmark resumes. The base model's task
score and probes are computed by the first run and read from the cache by the second.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PROBES = ("general_mc", "general_ppl")
# Same data, same steps, same batch for both; only the method and its learning rate differ.
# CPU cost on SmolLM2-135M (fp32, ~90-token tickets), in CPU-seconds measured on this 2-core
# machine while 5 other jobs shared it (so upper bounds; idle wall ≈ CPU-s / 2): a full-FT step
# of 8 ≈ 29 CPU-s (a LoRA step should cost ~2/3 of it: no weight gradients, but the contended
# measurement could not confirm it); general_mc ≈ 0.9 CPU-s per question (4 choices scored);
# general_ppl (46 paragraphs) ≈ 66 CPU-s. The base is evaluated once (cached), then per method.
# 64 tickets × 3 epochs = 48 steps of 4, chosen so that LoRA learns the labels. Measured here:
# full FT at lr 1e-4 (5× usual) learned the task without forgetting (general_mc 0.705 → 0.705,
# general_ppl 44.1 → 44.8), so the aggressive default is lr 1e-3 (--full-lr). ≈ 15 min on
# 2 idle cores; --steps / --probe-limit trade time for statistical power.
DEFAULTS = {"steps": 48, "batch": 4, "n_train": 64, "limit": 80, "probe_limit": 112}
FULL_LR = 1e-3


def runs(full_lr: float) -> dict[str, list[str]]:
    """The two runs compared: first the aggressive full fine-tune, then LoRA at its usual lr."""
    return {
        f"full lr={full_lr:g}": ["method=full", f"train.lr={full_lr:g}"],
        "lora r=8 lr=2e-4": ["method=lora", "method.r=8", "train.lr=2e-4"],
    }
QUICK = {"steps": 4, "batch": 4, "n_train": 32, "limit": 8, "probe_limit": 8}


def common(model: str, steps: int, batch: int, n_train: int, limit: int, probe_limit: int | None) -> list[str]:
    return [
        f"model={model}", "task=tickets", f"task.n_train={n_train}", "task.n_test=200",
        f"train.max_steps={steps}", f"train.batch_size={batch}", "train.save=none",
        f"eval.limit={limit}",                   # task score: 80 tickets → stderr ≈ 0.05 at p = 0.5
        f"eval.probe_limit={probe_limit if probe_limit else 'null'}",  # 112 = 16 MC questions per domain (se ≈ 0.043); all 46 paragraphs
        "eval.batch_size=16",
        f"eval.probes=[{','.join(PROBES)}]",
    ]


def run_point(name: str, overrides: list[str], out: Path) -> dict:
    from harness.config import load_spec
    from harness.record import read_record, record_path

    spec = load_spec(overrides)
    path = record_path(out, spec.run_id)
    if path.exists():
        print(f"[{name}] record exists, skipped: {path}", file=sys.stderr)
        return read_record(path)
    print(f"[{name}] python -m harness {' '.join(overrides)}", file=sys.stderr)
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "harness", *overrides], cwd=REPO)
    if not path.exists():
        raise SystemExit(f"forgetting: run '{name}' wrote no record (exit {res.returncode})")
    print(f"[{name}] {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return read_record(path)


def _pm(value, se, spec=".3f") -> str:
    if value is None:
        return "–"
    return f"{value:{spec}}" + (f"±{se:{spec}}" if isinstance(se, (int, float)) else "")


def table(records: dict[str, dict]) -> str:
    lines = []
    head = f"{'method':<18} {'task score base → tuned':<26}"
    for p in PROBES:
        head += f" {p + ' base → tuned (Δ, sig)':<44}"
    lines.append(head + f" {'train s':>8}")
    for name, rec in records.items():
        m = rec["metrics"]
        if rec["status"] != "ok":
            lines.append(f"{name:<18} {rec['status']}: {(rec.get('error') or {}).get('message', '')[:100]}")
            continue
        row = f"{name:<18} {_pm(m.get('task_score_base'), m.get('task_score_base_stderr'), '.2f')} → {_pm(m.get('task_score'), m.get('task_score_stderr'), '.2f'):<11}"
        for p in PROBES:
            f = m["forgetting"][p]
            fmt = ".3f" if f["higher_is_better"] else ".2f"
            cell = f"{_pm(f['base'], f['base_stderr'], fmt)} → {_pm(f['tuned'], f['tuned_stderr'], fmt)} (Δ {f['delta']:+{fmt}}{', sig' if f['significant'] else ''})"
            row += f" {cell:<44}"
        lines.append(row + f" {m.get('train_s', m.get('wall_s', 0)):>8.0f}")
    lines.append("")
    lines.append("eval seconds per probe (base → tuned):")
    for name, rec in records.items():
        if rec["status"] != "ok":
            continue
        m = rec["metrics"]
        parts = [f"task {m.get('task_eval_s', 0):.0f}"]
        parts += [f"{p} {m['forgetting'][p]['base_seconds']:.0f} → {m['forgetting'][p]['seconds']:.0f}" for p in PROBES]
        cached = m.get("base_probes_cached", {})
        lines.append(f"  {name:<18} " + " · ".join(parts) + ("  (base from cache)" if all(cached.values()) else ""))
    return "\n".join(lines)


def worse_by(f: dict) -> float:
    """How much worse the tuned model is on a probe, in the metric's units (> 0 = forgot)."""
    return f["delta"] if f["higher_is_better"] else -f["delta"]


def verdict(records: dict[str, dict]) -> list[str]:
    full, lora = records.values()
    if full["status"] != "ok" or lora["status"] != "ok":
        return ["verdict: a run failed; nothing to compare"]
    out = []
    for name, rec in (("full", full), ("lora", lora)):
        m = rec["metrics"]
        learned = m["task_score"] - m["task_score_base"] > 2 * (m["task_score_stderr"] ** 2 + m["task_score_base_stderr"] ** 2) ** 0.5
        out.append(f"{name} learned the task: {'yes' if learned else 'NO'} ({m['task_score_base']:.2f} → {m['task_score']:.2f})")
    for p in PROBES:
        fw, lw = worse_by(full["metrics"]["forgetting"][p]), worse_by(lora["metrics"]["forgetting"][p])
        unit = "acc points" if full["metrics"]["forgetting"][p]["higher_is_better"] else "ppl"
        out.append(f"{p}: full forgets {fw:+.3f} {unit}, lora {lw:+.3f} → full forgets more: {'yes' if fw > lw else 'NO'}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny model and a handful of steps: checks the script, measures nothing")
    ap.add_argument("--out", default="results/forgetting", help="where the run records go")
    ap.add_argument("--steps", type=int, help=f"optimizer steps per method (default {DEFAULTS['steps']})")
    ap.add_argument("--probe-limit", type=int, help=f"documents per probe, 0 = all (default {DEFAULTS['probe_limit']})")
    ap.add_argument("--full-lr", type=float, default=FULL_LR, help=f"the full fine-tune's learning rate (default {FULL_LR:g})")
    ap.add_argument("overrides", nargs="*", help="extra harness overrides for both runs, e.g. train.batch_size=8")
    args = ap.parse_args(argv)
    size = dict(QUICK if args.quick else DEFAULTS)
    if args.steps:
        size["steps"] = args.steps
    if args.probe_limit is not None:
        size["probe_limit"] = args.probe_limit or None
    out = Path(args.out).resolve()
    base = common("tiny" if args.quick else "smollm2-135m", **size)
    records = {}
    t = time.perf_counter()
    for name, extra in runs(args.full_lr).items():
        records[name] = run_point(name, [*base, *extra, *args.overrides, f"results_dir={out}"], out)
    text = table(records) + "\n\n" + "\n".join(verdict(records)) + f"\n\ntotal {time.perf_counter() - t:.0f} s"
    print(text)
    (out / "forgetting_table.txt").write_text(text + "\n")
    (out / "forgetting_summary.json").write_text(json.dumps(
        {name: {"run_id": r["run_id"], "status": r["status"], "task_score_base": r["metrics"].get("task_score_base"),
                "task_score": r["metrics"].get("task_score"), "forgetting": r["metrics"].get("forgetting")}
         for name, r in records.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
