"""GRPO learns on SmolLM2: the mean reward of the last quarter of steps exceeds the first quarter's
by more than two standard errors.

One run, ``python -m harness method=grpo task=arithmetic`` (single-digit addition, reward = the
exact-answer checker), logs the mean reward of every step's completions (``metrics.rewards``).
The steps of each quarter are the samples: mean ± standard error (sample sd / √k), and
z = (last − first) / √(se_first² + se_last²). Learning shown when z > 2.

    python benchmarks/grpo_learning.py            # SmolLM2-135M, 32 steps of 16 completions
    python benchmarks/grpo_learning.py --quick    # tiny random model: checks the plumbing only

Sized from one measurement on this 2-core machine: 30 steps of 16 took the reward 0.12 → 0.26
(z ≈ 3) in 571 s; the method matrix's 16 steps of 8 (0.17 → 0.21) were too few to tell.
The record goes to --out (a run whose record exists is read, not re-run); the summary is printed
and written beside it as grpo_learning.json.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# 16 completions a step = 4 prompts × 4 generations (the group baseline needs ≥ 2 per prompt).
DEFAULTS = {"model": "smollm2-135m", "steps": 32, "batch": 16, "limit": 40}
QUICK = {"model": "tiny", "steps": 8, "batch": 8, "limit": 4}
Z_NEEDED = 2.0


def overrides(model: str, steps: int, batch: int, limit: int, out: Path) -> list[str]:
    return [f"model={model}", "method=grpo", "task=arithmetic", f"train.max_steps={steps}", f"train.batch_size={batch}",
            "train.save=none", f"eval.limit={limit}", f"results_dir={out}"]


def quarter_stats(rewards: list[float]) -> dict:
    """First- and last-quarter means of the per-step rewards, their stderrs and z of the difference."""
    k = max(2, len(rewards) // 4)
    if len(rewards) < 2 * k:
        raise ValueError(f"need at least {2 * k} logged steps, got {len(rewards)}")

    def mean_se(xs):
        m = sum(xs) / len(xs)
        sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
        return m, sd / math.sqrt(len(xs))

    (f, fse), (last, lse) = mean_se(rewards[:k]), mean_se(rewards[-k:])
    se = math.hypot(fse, lse)
    z = (last - f) / se if se > 0 else (math.inf if last > f else 0.0)
    return {"steps_per_quarter": k, "first": f, "first_stderr": fse, "last": last, "last_stderr": lse,
            "diff": last - f, "z": z, "learned": z > Z_NEEDED}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny random model, a few steps: checks the script, measures nothing")
    ap.add_argument("--out", default="results/grpo_learning", help="where the run record and the summary go")
    ap.add_argument("--steps", type=int, help=f"optimizer steps (default {DEFAULTS['steps']})")
    args = ap.parse_args(argv)
    size = dict(QUICK if args.quick else DEFAULTS)
    if args.steps:
        size["steps"] = args.steps
    out = Path(args.out).resolve()
    ovs = overrides(out=out, **size)

    from harness.config import load_spec
    from harness.record import read_record, record_path

    path = record_path(out, load_spec(ovs).run_id)
    t = time.perf_counter()
    if not path.exists():
        print(f"python -m harness {' '.join(ovs)}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "harness", *ovs], cwd=REPO)
    if not path.exists():
        print(f"grpo_learning: the run wrote no record ({path})", file=sys.stderr)
        return 1
    rec = read_record(path)
    if rec["status"] != "ok":
        print(f"grpo_learning: the run ended '{rec['status']}': {(rec.get('error') or {}).get('message', '')[:200]}", file=sys.stderr)
        return 1
    m = rec["metrics"]
    stats = quarter_stats(m["rewards"])
    summary = {"run_id": rec["run_id"], "model": size["model"], "steps": len(m["rewards"]), "completions_per_step": size["batch"],
               **stats, "task_score_base": m.get("task_score_base"), "task_score": m.get("task_score"),
               "train_s": m.get("train_s"), "wall_s": m.get("wall_s"), "rewards": m["rewards"]}
    print(f"GRPO on {size['model']}, arithmetic, {summary['steps']} steps of {size['batch']} completions "
          f"({m.get('wall_s', 0):.0f} s; this run {time.perf_counter() - t:.0f} s)")
    print(f"  mean reward, first {stats['steps_per_quarter']} steps: {stats['first']:.3f} ± {stats['first_stderr']:.3f}")
    print(f"  mean reward, last  {stats['steps_per_quarter']} steps: {stats['last']:.3f} ± {stats['last_stderr']:.3f}")
    print(f"  difference {stats['diff']:+.3f}, z = {stats['z']:.2f} → learned (z > {Z_NEEDED:g}): {'yes' if stats['learned'] else 'NO'}")
    print(f"  task score (exact answer, {m.get('task_eval_n')} held-out sums): {m.get('task_score_base')} → {m.get('task_score')}")
    (out / "grpo_learning.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
