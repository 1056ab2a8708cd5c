"""The same CPU sweep one point at a time and ``launcher.parallel=N`` points at once, side by side.

    python benchmarks/sweep_parallel.py                               # sweep=smoke, 30 steps a point, N=2
    python benchmarks/sweep_parallel.py --sweep rank_ablation --parallel 2 debug=smoke
    python benchmarks/sweep_parallel.py --pairs 2                     # sequential, parallel, parallel, sequential

Prints each run's wall time (command start → exit) and their ratio, then per point the time from
process start to record (``startup_s + wall_s``) and the steady-state tokens/s of both runs.
On a CPU the parallel points split the cores (affinity + OMP_NUM_THREADS) and share memory
bandwidth, so each point's tokens/s drops while the sweep may still finish sooner: the process
start-up, model load and scoring of one point overlap another's training. That drop is why
``harness regress`` refuses to compare concurrent CPU throughput with sequential throughput.
Each run gets a fresh results dir and its own model/score cache, so both pay the same first-time costs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEFAULT_OVERRIDES = ["train.max_steps=30"]  # smoke's 3 steps are all start-up; 30 make training count


def run(sweep: str, parallel: int, root: Path, tag: str, overrides: list[str]) -> tuple[float, Path]:
    results = root / tag / "runs"
    cmd = [sys.executable, "-m", "harness", f"sweep={sweep}", f"launcher.parallel={parallel}", f"results_dir={results}", *overrides]
    env = {**os.environ, "TUNEBENCH_CACHE": str(root / tag / "cache"), "PYTHONPATH": str(REPO)}
    print(f"[{tag}] {' '.join(cmd[1:])}", file=sys.stderr)
    t = time.perf_counter()
    res = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t
    if res.returncode not in (0, 1):
        sys.exit(f"[{tag}] sweep failed (exit {res.returncode}):\n{res.stderr[-2000:]}")
    return wall, results


def per_point(results: Path) -> dict[str, dict]:
    from harness.record import read_record

    out = {}
    for path in sorted(results.glob("*.json")):
        rec = read_record(path)
        m = rec["metrics"]
        cfg = rec["config"]["method"]
        label = cfg["name"] + (f" r={cfg['r']}" if cfg.get("r") and cfg["name"] != "full" else "")
        out[rec["run_id"]] = {"label": label, "status": rec["status"], "tokens_per_s": m.get("tokens_per_s"),
                              "seconds": (m.get("startup_s") or 0) + (m.get("wall_s") or 0),
                              "shared_with": (rec.get("execution") or {}).get("shared_with")}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweep", default="smoke")
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--pairs", type=int, default=1, help="sequential/parallel pairs, alternating order (ABBA…)")
    p.add_argument("overrides", nargs="*", help=f"key=value for every point (default: {' '.join(DEFAULT_OVERRIDES)})")
    args = p.parse_args(argv)
    overrides = args.overrides or DEFAULT_OVERRIDES
    root = Path(tempfile.mkdtemp(prefix="sweep-parallel-"))
    walls: dict[int, list[float]] = {1: [], args.parallel: []}
    points: dict[int, list[dict]] = {1: [], args.parallel: []}
    for i in range(args.pairs):
        order = (1, args.parallel) if i % 2 == 0 else (args.parallel, 1)
        for n in order:
            wall, results = run(args.sweep, n, root, f"pair{i}-parallel{n}", overrides)
            walls[n].append(wall)
            points[n].append(per_point(results))

    seq, par = statistics.median(walls[1]), statistics.median(walls[args.parallel])
    print(f"\nsweep={args.sweep} {' '.join(overrides)} on {os.cpu_count()} CPU core(s), {args.pairs} pair(s); "
          f"load average at the end {os.getloadavg()[0]:.1f} (other work on the machine slows both runs)")
    print(f"{'':28} {'sequential':>12} {f'parallel={args.parallel}':>12} {'ratio':>7}")
    print(f"{'sweep wall time (s)':28} {seq:12.1f} {par:12.1f} {par / seq:7.2f}")
    print(f"\n{'point':28} {'tokens/s seq':>12} {'tokens/s par':>12} {'ratio':>7} {'s seq':>7} {'s par':>7}")
    ratios = []
    for run_id in points[1][0]:
        label = points[1][0][run_id]["label"]

        def med(n, key):
            values = [pp[run_id][key] for pp in points[n] if run_id in pp and pp[run_id][key] is not None]
            return statistics.median(values) if values else None

        ts, tp = med(1, "tokens_per_s"), med(args.parallel, "tokens_per_s")
        ratio = tp / ts if ts and tp else None
        if ratio:
            ratios.append(ratio)
        print(f"{label:28} {ts or 0:12.1f} {tp or 0:12.1f} {ratio or 0:7.2f} {med(1, 'seconds') or 0:7.1f} "
              f"{med(args.parallel, 'seconds') or 0:7.1f}")
    if ratios:
        print(f"\nsweep finishes in {par / seq:.2f}x the sequential time; each point trains at "
              f"{statistics.median(ratios):.2f}x its sequential tokens/s (median over points)")
    print(f"records: {root}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
