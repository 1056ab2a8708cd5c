"""Why a checkpointed CPU run's resident set exceeds the tensors it holds: glibc's heap, measured.

    python benchmarks/cpu_allocator.py                        # full checkpointing, the stack sweep's point (~6 min, 2-core CPU)
    python benchmarks/cpu_allocator.py train.checkpointing=none

Runs the same harness point twice on the default model: with glibc's default allocation policy, and
with ``MALLOC_MMAP_THRESHOLD_=65536`` (every allocation over 64 KiB mmapped, so its pages go back to
the kernel when freed). Prints each run's measured peak RSS above the baseline beside the simulated
allocated peak of the same step + the framework baseline (``advisor validate --simulate``'s terms).

The mechanism: glibc's mmap threshold is dynamic. Once a freed mmapped block is under 32 MiB, the
threshold rises to its size, and from then on every smaller allocation (a decoder layer's
activations, its recomputation under checkpointing, the gradients) is served from the heap, whose
freed pages stay resident. A step that allocates and frees many such tensors (checkpointing
allocates every layer's activations twice) leaves the resident set at the heap's high-water mark,
far above what is live at any one time. Pinning the threshold takes that term out: what remains is
the tensors. Memory only: the two runs' tokens/s compare only on idle cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
POINT = ["method=lora", "method.r=16", "train.loss=standard", "train.checkpointing=full", "train.max_steps=4",
         "train.batch_size=16", "eval.enabled=false", "train.save=none"]  # fmt: skip


def run(extra: list[str], env: dict, out: Path) -> dict:
    cmd = [sys.executable, "-m", "harness", *POINT, *extra, f"results_dir={out}"]
    res = subprocess.run(cmd, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"harness failed ({res.returncode}): {res.stderr.strip().splitlines()[-1] if res.stderr.strip() else ''}")
    return json.loads(next(out.glob("*.json")).read_text())


def main(argv: list[str]) -> int:
    from advisor.inputs.harness_runs import run_from_record
    from advisor.simulate.validate_sim import simulated_runs

    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for label, env in (("glibc default", {}), ("MALLOC_MMAP_THRESHOLD_=65536", {"MALLOC_MMAP_THRESHOLD_": "65536"})):
            record = run(argv, env, Path(tmp) / str(len(rows)))
            sim = simulated_runs([run_from_record(record)])[0]
            rows.append((label, record["metrics"]["peak_memory_gb"], sim["simulated_gb"] + sim["framework_gb"]))
    print(f"{'allocator':<30} {'measured RSS':>12} {'simulated + framework':>22} {'ratio':>6}")
    for label, measured, tensors in rows:
        print(f"{label:<30} {measured:12.2f} {tensors:22.2f} {measured / tensors:6.2f}")
    print(f"pinning the mmap threshold: {rows[1][1] / rows[0][1]:.2f} × the default's peak RSS")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
