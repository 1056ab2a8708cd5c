"""Cold-start wall time of `advisor recommend`, each run a fresh process (the user's experience).

    .venv/bin/python benchmarks/advisor_cold_start.py [--runs 7] [--limit 1.0]

Prints every run, the median and the worst, next to a bare `python -c pass` for scale, and
exits 1 when the median is over the limit (1 s: the advisor imports no torch, transformers or
pandas, so it has no excuse to be slow).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ARGS = ["recommend", "--gpu", "24GB", "--examples", "3000", "--capability", "style"]


def wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if res.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()[-300:]}")
    return elapsed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--limit", type=float, default=1.0, help="seconds allowed for the median run")
    a = p.parse_args()
    script = shutil.which("advisor", path=str(Path(sys.executable).parent))
    variants = {"python -m advisor": [sys.executable, "-m", "advisor", *ARGS]}
    if script:
        variants["advisor (console script)"] = [script, *ARGS]
    variants["… --json"] = [sys.executable, "-m", "advisor", *ARGS, "--json"]
    base = statistics.median(wall([sys.executable, "-c", "pass"]) for _ in range(3))
    print(f"python -c pass: {base * 1000:.0f} ms (interpreter start, for scale)")
    worst_median = 0.0
    for name, cmd in variants.items():
        wall(cmd)  # one untimed run warms the OS page cache, as a second invocation would be
        times = [wall(cmd) for _ in range(a.runs)]
        med = statistics.median(times)
        worst_median = max(worst_median, med)
        print(f"{name:28s} median {med * 1000:5.0f} ms  max {max(times) * 1000:5.0f} ms  "
              f"runs: {' '.join(f'{t * 1000:.0f}' for t in times)}")  # fmt: skip
    verdict = "OK" if worst_median <= a.limit else "TOO SLOW"
    print(f"cold start: {worst_median:.3f} s (limit {a.limit:.1f} s) — {verdict}")
    return 0 if worst_median <= a.limit else 1


if __name__ == "__main__":
    sys.exit(main())
