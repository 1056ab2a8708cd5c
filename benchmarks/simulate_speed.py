"""Wall time, CPU time and memory of `advisor estimate --simulate` on a 7B and a 70B step (issue 22:
a 7B step in <= 60 s and a 70B step in <= 5 min on a 2-core CPU), each in a fresh process.

    .venv/bin/python benchmarks/simulate_speed.py [--only 7b|70b] [--reps 1]

Prints, per command: wall seconds, CPU seconds (user + system of the child), the child's peak
resident set, the simulated allocated peak, and the wall time as a fraction of its limit. Exits 1
when a median wall time is over its limit. Wall time is only meaningful on idle cores: run it
alone (the CPU time is the figure to compare across loaded runs).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CASES = {
    "7b": (["--model", "Llama-2-7B", "--method", "lora", "--batch-size", "4", "--seq-len", "2048"], 60.0),
    "70b": (["--model", "Llama-2-70B", "--method", "lora", "--batch-size", "1", "--seq-len", "2048"], 300.0),
}


def run_once(args: list[str]) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    cmd = [sys.executable, "-m", "advisor", "estimate", *args, "--simulate", "--json"]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()[-400:]}")
    out = json.loads(res.stdout)
    return {"wall_s": wall, "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "child_peak_rss_gb": after.ru_maxrss / 2**20, "allocated_gb": out.get("peak_allocated_gb")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=sorted(CASES))
    ap.add_argument("--reps", type=int, default=1)
    a = ap.parse_args()
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPU cores, load average {load:.1f} at start" + (" (not idle: wall times are inflated)" if load > 1.0 else ""))
    over = False
    for name, (args, limit) in CASES.items():
        if a.only and name != a.only:
            continue
        runs = [run_once(args) for _ in range(a.reps)]
        wall = statistics.median(r["wall_s"] for r in runs)
        over |= wall > limit
        r = runs[-1]
        print(f"{name:>4}: wall {wall:6.1f} s ({wall / limit:.2f} of the {limit:.0f} s limit) · CPU {r['cpu_s']:6.1f} s · "
              f"peak RSS {r['child_peak_rss_gb']:.2f} GB · simulated allocated {r['allocated_gb']} GiB  "
              f"[advisor estimate {' '.join(args)} --simulate]")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
