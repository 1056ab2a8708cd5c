"""What one process per point costs: process-and-load overhead as a share of each point's wall time.

    python benchmarks/sweep_overhead.py                 # runs `harness sweep=rank_ablation` (~25 min, 2-core CPU)
    python benchmarks/sweep_overhead.py --quick         # `sweep=smoke` on the tiny model: checks this script
    python benchmarks/sweep_overhead.py --from-dir D --sweep rank_ablation   # a sweep already run into D

A point's life, from the timestamps its child records:
    startup_s  process start → run start (interpreter, torch/transformers imports, config)
    load_s     model from the local cache into memory
    wall_s     run start → record written (load, base score, train, score)
and, seen from outside, the rest: the runner's planning (composing every point), spawning, and
each child's interpreter teardown = sweep wall time − Σ(startup_s + wall_s), shared out per point.

overhead = startup_s + load_s + (runner/teardown share);  point time = startup_s + wall_s + share.
Target: overhead < 15% of the point's time on the default model.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
TARGET = 0.15


def run(sweep: str, results_dir: Path, extra: list[str]) -> tuple[float, float]:
    cmd = [sys.executable, "-m", "harness", f"sweep={sweep}", f"results_dir={results_dir}", *extra]
    print("running:", " ".join(cmd), file=sys.stderr)
    t = time.time()
    res = subprocess.run(cmd, cwd=REPO)
    if res.returncode not in (0, 1):
        sys.exit(f"sweep failed with exit code {res.returncode}")
    return t, time.time() - t


def _ts(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def report(results_dir: Path, sweep: str, sweep_wall: float | None, since: float | None = None) -> int:
    from harness.results import load

    df = load(results_dir)
    df = df[(df["sweep"] == sweep) & (df["status"] == "ok")]
    if since is not None:  # points recorded before this run (resumed sweep) are not part of its wall time
        df = df[[_ts(s) >= since - 1 for s in df["provenance.started_at"]]]
    if df.empty:
        sys.exit(f"no ok records of sweep '{sweep}' in {results_dir}")
    startup, wall = df["metrics.startup_s"].astype(float), df["metrics.wall_s"].astype(float)
    load_s = df["metrics.load_s"].astype(float)
    if sweep_wall is None:  # from the records: first process start → last record (1 s timestamps)
        starts = [_ts(s) - st for s, st in zip(df["provenance.started_at"], startup)]
        sweep_wall = max(_ts(f) for f in df["provenance.finished_at"]) - min(starts)
    n = len(df)
    share = max(0.0, sweep_wall - float((startup + wall).sum())) / n
    overhead = startup + load_s + share
    total = startup + wall + share
    frac = overhead / total

    print(f"\nsweep {sweep}: {n} ok points, {sweep_wall:.0f} s in all; runner + teardown {share:.1f} s per point")
    print(f"{'point':<44} {'startup_s':>9} {'load_s':>7} {'wall_s':>8} {'overhead':>9} {'share':>6}")
    for (_, row), o, f, tt in zip(df.iterrows(), overhead, frac, total):
        label = f"{row['method']} r={row['r']:g}" if row["r"] == row["r"] else str(row["method"])
        label = f"{label} · {row['model']} · {row['task']}"
        print(f"{label:<44} {row['metrics.startup_s']:9.1f} {row['metrics.load_s']:7.2f} {tt:8.1f} {o:8.1f}s {100 * f:5.1f}%")
    worst = float(frac.max())
    mean = float(overhead.sum() / total.sum())
    verdict = "PASS" if worst < TARGET else "FAIL"
    print(f"\noverhead: {overhead.mean():.1f} s per point = {100 * mean:.1f}% of point time overall, "
          f"worst point {100 * worst:.1f}% (target < {100 * TARGET:.0f}%): {verdict}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="sweep=smoke on the tiny model (seconds per point): checks the script")
    p.add_argument("--sweep", default=None, help="sweep preset (default rank_ablation; smoke with --quick)")
    p.add_argument("--results-dir", type=Path, default=None, help="where the sweep writes (default: a fresh temp dir)")
    p.add_argument("--from-dir", type=Path, default=None, help="report on records already in this dir; run nothing")
    p.add_argument("overrides", nargs="*", help="extra key=value overrides for every point")
    args = p.parse_args(argv)
    sweep = args.sweep or ("smoke" if args.quick else "rank_ablation")
    if args.from_dir:
        return report(args.from_dir, sweep, None)
    results_dir = args.results_dir or Path(tempfile.mkdtemp(prefix=f"sweep-overhead-{sweep}-"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started, wall = run(sweep, results_dir.resolve(), args.overrides)
    return report(results_dir, sweep, wall, since=started)


if __name__ == "__main__":
    sys.exit(main())
