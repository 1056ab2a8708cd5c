"""GPU ground truth for the harness's CUDA path and the advisor's estimates, on one CUDA GPU in < 8 min.

    .venv/bin/python benchmarks/gpu_check.py [--dry-run] [--out DIR] [--budget-s 450] [--only NAME,...]

What it runs, each point a fresh `python -m harness …` process (memory isolated per point):
- the embedded SmolLM2-135M in bf16: LoRA, QLoRA, DoRA and full fine-tuning (task=tickets), and
  one GRPO run (LoRA, task=arithmetic, 4 generations × 16 tokens);
- cost-only random-init shapes of ~1B, 3B and 8B (sweeps/model/cost-*.yaml), built from their
  config directly on the GPU (harness/models.py: no download, nothing on disk), full fine-tuning
  and LoRA; a point the advisor estimates above 90% of the free GPU memory is skipped, not run.
Each point leaves a harness record (torch.cuda allocated and reserved peaks, tokens/s) under
OUT/runs; then `python -m advisor validate OUT/runs` prints the estimator's memory and time
error per record (and OUT/validate.json keeps it).

Without CUDA (or with --dry-run) it prints the plan and the exact commands, and exits 0.
Evaluation is off (eval.enabled=false) and nothing is saved (train.save=none): this measures
cost, not quality. The time budget is enforced: a point that would start after it is skipped,
and a running point is stopped at it (its record is then missing, and the summary says so).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# Shared by every point: bf16 on the GPU, no evaluation, no artifacts, 2 warm-up steps excluded.
COMMON = ["train.dtype=bf16", "eval.enabled=false", "train.save=none", "train.measure_skip_steps=2"]
SMOL = ["model=smollm2-135m", "task=tickets", "train.max_steps=12", "train.batch_size=8", "train.max_seq_len=256"]
COST = ["task=tickets", "train.max_steps=6", "train.batch_size=4", "train.max_seq_len=256"]
# Tickets examples are ≤ 129 SmolLM2 tokens (advisor/inputs/harness_runs.py); the fit check prices 160.
FIT_SEQ = 160
STARTUP_S = 25  # imports + CUDA context per process, before any training


@dataclass(frozen=True)
class Point:
    name: str
    overrides: list
    model: str  # advisor catalog name / cost model for the fit check
    method: str  # full | lora | qlora | dora | grpo
    batch: int
    cost_only: bool = False
    notes: str = ""
    extra: list = field(default_factory=list)

    def command(self, out: Path) -> list[str]:
        return [sys.executable, "-m", "harness", *self.overrides, *COMMON, f"results_dir={out / 'runs'}", *self.extra]


def plan() -> list[Point]:
    pts = [Point(f"smollm2-{m}", SMOL + [f"method={m}"], "SmolLM2-135M", m, 8) for m in ("lora", "qlora", "dora", "full")]
    pts.append(Point("smollm2-grpo", ["model=smollm2-135m", "method=grpo", "task=arithmetic", "train.max_steps=8",
                                      "train.batch_size=8", "train.max_seq_len=256"], "SmolLM2-135M", "grpo", 8,
                     notes="2 prompts × 4 generations × 16 tokens per step"))  # fmt: skip
    # LoRA at every size first, then full fine-tuning: if the time budget runs short, sizes are covered first.
    for m in ("lora", "full"):
        for size, model in (("1b", "Llama-3.2-1B"), ("3b", "Llama-3.2-3B"), ("8b", "Llama-3.1-8B")):
            pts.append(Point(f"cost-{size}-{m}", COST + [f"model=cost-{size}", f"method={m}"], model, m, 4, cost_only=True))
    return pts


def estimate_gb(p: Point) -> float:
    """The advisor's peak (reserved) for the point, at the longest tickets batch."""
    from advisor.inputs.catalog import resolve_model
    from advisor.memory.rl import Objective, estimate_setup
    from advisor.memory.setup import Setup

    arch = resolve_model(p.model).arch
    if p.method == "grpo":
        s = Setup(arch=arch, method="lora", batch_size=p.batch, seq_len=64, lora_dropout=0.0)
        return estimate_setup(s, Objective("grpo", 4, 16)).peak_gb
    s = Setup(arch=arch, method=p.method, batch_size=p.batch, seq_len=FIT_SEQ, lora_dropout=0.0 if p.method == "full" else 0.05)
    return estimate_setup(s, Objective("sft")).peak_gb


def free_gb() -> tuple[float, str] | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    return free / 2**30, f"{torch.cuda.get_device_name()} ({total / 2**30:.0f} GiB, {free / 2**30:.0f} free)"


def print_plan(points: list[Point], out: Path, free: float | None) -> None:
    print(f"{'point':18} {'est. peak GB':>12}  {'fits':5} command")
    for p in points:
        est = estimate_gb(p)
        fits = "?" if free is None else ("yes" if est <= 0.9 * free else "skip")
        print(f"{p.name:18} {est:12.1f}  {fits:5} {shlex.join(p.command(out))}")
    print(f"then: {shlex.join([sys.executable, '-m', 'advisor', 'validate', str(out / 'runs')])}")


def run_point(p: Point, out: Path, deadline: float, budget_gb: float) -> str:
    cmd = p.command(out) + [f"budget_gb={budget_gb:.1f}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    log = out / "logs" / f"{p.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            return f"stopped at the time budget after {time.perf_counter() - t:.0f} s (log {log})"
    return f"exit {rc} in {time.perf_counter() - t:.0f} s" + ("" if rc == 0 else f" (log {log})")


def summary(out: Path) -> None:
    rows = []
    for f in sorted((out / "runs").glob("*.json")):
        d = json.loads(f.read_text())
        m = d.get("metrics", {})
        rows.append((d["run_id"], d["status"], m.get("peak_memory_gb"), m.get("peak_reserved_gb"), m.get("tokens_per_s"), m.get("mfu")))
    print(f"\n{'run':46} {'status':7} {'alloc GB':>9} {'reserved':>9} {'tokens/s':>10} {'MFU':>6}")
    fmt = lambda v, s: "–" if v is None else format(v, s)  # noqa: E731
    for r in rows:
        print(f"{r[0]:46} {r[1]:7} {fmt(r[2], '9.2f')} {fmt(r[3], '9.2f')} {fmt(r[4], '10,.0f')} {fmt(r[5], '6.1%')}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="print the plan and the commands; run nothing")
    ap.add_argument("--out", help="where records go (default results/gpu_check/<UTC time>)")
    ap.add_argument("--budget-s", type=float, default=450, help="wall-clock budget for all points (default 450 s, under 8 min)")
    ap.add_argument("--only", help="comma-separated point names (default: all)")
    a = ap.parse_args()
    out = Path(a.out or REPO / "results" / "gpu_check" / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")).resolve()
    points = plan()
    if a.only:
        names = {n.strip() for n in a.only.split(",")}
        unknown = names - {p.name for p in points}
        if unknown:
            print(f"gpu_check: error: --only: unknown point(s) {', '.join(sorted(unknown))}; known: {', '.join(p.name for p in points)}", file=sys.stderr)
            return 2
        points = [p for p in points if p.name in names]
    if a.budget_s <= 0:
        print(f"gpu_check: error: --budget-s: '{a.budget_s:g}' must be > 0", file=sys.stderr)
        return 2
    gpu = None if a.dry_run else free_gb()
    if gpu is None:
        why = "--dry-run" if a.dry_run else "no CUDA GPU here"
        print(f"gpu_check: {why}: nothing measured. The plan, on one CUDA GPU within {a.budget_s:.0f} s:\n")
        print_plan(points, out, None)
        return 0
    free, label = gpu
    print(f"gpu_check on {label}; records → {out / 'runs'}\n")
    print_plan(points, out, free)
    deadline = time.monotonic() + a.budget_s
    skipped = []
    for p in points:
        est = estimate_gb(p)
        if est > 0.9 * free:
            skipped.append(f"{p.name}: estimated {est:.1f} GB > 90% of {free:.0f} GB free")
            print(f"- {p.name}: skipped ({skipped[-1].split(': ', 1)[1]})")
            continue
        if deadline - time.monotonic() < STARTUP_S + 15:
            skipped.append(f"{p.name}: time budget spent")
            print(f"- {p.name}: skipped (time budget spent)")
            continue
        print(f"- {p.name}: {run_point(p, out, deadline, free)}", flush=True)
    summary(out)
    for s in skipped:
        print(f"  skipped {s}")
    print()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "advisor", "validate", str(out / "runs")], cwd=REPO, env=env)
    js = subprocess.run([sys.executable, "-m", "advisor", "validate", str(out / "runs"), "--json"], cwd=REPO, env=env,
                        capture_output=True, text=True)  # fmt: skip
    (out / "validate.json").write_text(js.stdout)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # `gpu_check.py --dry-run | head`
        sys.exit(0)
