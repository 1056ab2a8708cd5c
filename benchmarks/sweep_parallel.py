"""The same CPU sweep one point at a time and ``launcher.parallel=N`` points at once, side by side.

    python benchmarks/sweep_parallel.py                               # sweep=smoke, 30 steps a point, N=2
    python benchmarks/sweep_parallel.py --sweep rank_ablation --parallel 2 debug=smoke
    python benchmarks/sweep_parallel.py --rounds 2                    # sequential, parallel, parallel, sequential
    python benchmarks/sweep_parallel.py --control                     # + sequential at the parallel points' thread count

Prints each run's wall time (command start → exit) and their ratio, then per point the time from
process start to record (``startup_s + wall_s``) and the steady-state tokens/s of both runs.
On a CPU the parallel points split the cores (affinity + OMP_NUM_THREADS) and share memory
bandwidth, so each point's tokens/s drops while the sweep may still finish sooner: the process
start-up, model load and scoring of one point overlap another's training. That drop is why
``harness regress`` refuses to compare concurrent CPU throughput with sequential throughput.
Each run gets a fresh results dir and its own model/score cache, so both pay the same first-time costs.

``--control`` adds a third run: one point at a time, but each with the thread count a parallel
point gets (cores / N). Against it, the parallel points' tokens/s shows the cost of sharing the
machine alone; against the plain sequential run, that cost plus the change in threads per point.
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


def run(sweep: str, parallel: int, root: Path, tag: str, overrides: list[str], threads: int | None = None) -> tuple[float, Path]:
    results = root / tag / "runs"
    cmd = [sys.executable, "-m", "harness", f"sweep={sweep}", f"launcher.parallel={parallel}", f"results_dir={results}", *overrides]
    env = {**os.environ, "TUNEBENCH_CACHE": str(root / tag / "cache"), "PYTHONPATH": str(REPO)}
    if threads:  # a sequential CPU sweep leaves the user's thread settings to its points
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
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
    p.add_argument("--rounds", type=int, default=1, help="rounds of every arm, the order alternating (ABBA…)")
    p.add_argument("--control", action="store_true", help="also run one at a time with the parallel points' thread count")
    p.add_argument("overrides", nargs="*", help=f"key=value for every point (default: {' '.join(DEFAULT_OVERRIDES)})")
    args = p.parse_args(argv)
    overrides = args.overrides or DEFAULT_OVERRIDES
    root = Path(tempfile.mkdtemp(prefix="sweep-parallel-"))
    threads = max(1, len(os.sched_getaffinity(0)) // args.parallel)
    arms = {"sequential": (1, None), f"parallel={args.parallel}": (args.parallel, None)}
    if args.control:
        arms[f"seq, {threads} thr"] = (1, threads)
    walls: dict[str, list[float]] = {a: [] for a in arms}
    points: dict[str, list[dict]] = {a: [] for a in arms}
    for i in range(args.rounds):
        order = list(arms) if i % 2 == 0 else list(reversed(arms))
        for arm in order:
            n, thr = arms[arm]
            wall, results = run(args.sweep, n, root, f"round{i}-" + "".join(c if c.isalnum() else "-" for c in arm), overrides, thr)
            walls[arm].append(wall)
            points[arm].append(per_point(results))

    seq = statistics.median(walls["sequential"])
    print(f"\nsweep={args.sweep} {' '.join(overrides)} on {os.cpu_count()} CPU core(s), {args.rounds} round(s) in alternating "
          f"order; load average at the end {os.getloadavg()[0]:.1f} (other work on the machine slows every run)")
    print(f"{'':24}" + "".join(f"{a:>14}" for a in arms))
    print(f"{'sweep wall time (s)':24}" + "".join(f"{statistics.median(walls[a]):14.1f}" for a in arms))
    print(f"{'  ratio to sequential':24}" + "".join(f"{statistics.median(walls[a]) / seq:14.2f}" for a in arms))
    print(f"\n{'tokens/s per point':24}" + "".join(f"{a:>14}" for a in arms) + f"{'par/seq':>9}")
    ratios = []
    par = f"parallel={args.parallel}"
    for run_id in points["sequential"][0]:
        label = points["sequential"][0][run_id]["label"]

        def med(arm, key="tokens_per_s"):
            values = [pp[run_id][key] for pp in points[arm] if run_id in pp and pp[run_id][key] is not None]
            return statistics.median(values) if values else None

        tps = {a: med(a) for a in arms}
        ratio = tps[par] / tps["sequential"] if tps[par] and tps["sequential"] else None
        if ratio:
            ratios.append(ratio)
        print(f"{label:24}" + "".join(f"{tps[a] or 0:14.1f}" for a in arms) + f"{ratio or 0:9.2f}")
    if ratios:
        print(f"\nthe sweep finishes in {statistics.median(walls[par]) / seq:.2f}x the sequential time; each point trains at "
              f"{statistics.median(ratios):.2f}x its sequential tokens/s (median over points)")
    print(f"records: {root}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
