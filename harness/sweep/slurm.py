"""``launcher=slurm``: a sweep's pending points as one Slurm job array of plain command lines.

Why not hydra-submitit-launcher: it submits Hydra multirun jobs (a cartesian sweep, a pickled
task function); our points are paired lists and each must run in a fresh process anyway. An
sbatch array needs no extra package and no pickle, and each array task runs
``python -m harness.sweep array <plan.json>`` → ``harness.sweep.point.run_point`` on the node, the
same code as a local sweep: the child writes its record, or the task writes one for it.

Resuming is the same as locally: run the same command again and only points without a record
(plus failed ones with ``retry_failed=true``) are submitted.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from harness.atomic import write_json, write_text
from harness.errors import UserError
from harness.sweep.plan import Point, existing, pending

TIMEOUT_MARGIN_S = 60  # the task stops its point this long before Slurm's --time kills everything
# Defaults live in sweeps/launcher/slurm.yaml only; these keys must come from it (or the command line).
REQUIRED = ("timeout_min", "cpus_per_task")


def _check(opts: dict) -> None:
    for key in REQUIRED:
        if not isinstance(opts.get(key), int) or isinstance(opts.get(key), bool) or opts[key] < 1:
            raise UserError(f"launcher.{key} must be a positive integer (got {opts.get(key)!r})")


def _sbatch_lines(opts: dict, n: int, folder: Path) -> list[str]:
    lines = [
        f"--job-name=tunebench-{opts['sweep']}",
        f"--array=0-{n - 1}%{opts.get('array_parallelism') or n}",
        f"--time={opts['timeout_min']}",
        f"--output={folder}/%A_%a.out",
        f"--cpus-per-task={opts['cpus_per_task']}",
    ]
    if opts.get("mem_gb"):
        lines.append(f"--mem={int(opts['mem_gb'])}G")
    if opts.get("gpus_per_node"):
        lines.append(f"--gpus-per-node={int(opts['gpus_per_node'])}")
    for key in ("partition", "account", "qos"):
        if opts.get(key):
            lines.append(f"--{key}={opts[key]}")
    for key, value in (opts.get("additional_parameters") or {}).items():
        lines.append(f"--{key.replace('_', '-')}={value}")
    return [f"#SBATCH {line}" for line in lines]


def write_array(sweep_name: str, points, results_dir: Path, launcher: dict) -> tuple[Path, Path]:
    """Write ``plan.json`` and ``array.sbatch`` under ``<results_dir>/slurm/<sweep>-<time>/``."""
    _check(launcher)  # bad settings fail before anything is written
    folder = results_dir / "slurm" / f"{sweep_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=True)
    plan = folder / "plan.json"
    write_json(plan, {
        "sweep": sweep_name,
        "timeout_s": max(60, launcher["timeout_min"] * 60 - TIMEOUT_MARGIN_S),
        "points": [{"run_id": p.run_id, "label": p.label, "overrides": list(p.overrides)} for p in points],
    })
    python = launcher.get("python") or sys.executable
    script = folder / "array.sbatch"
    body = [
        "#!/bin/bash",
        f"# tunebench sweep '{sweep_name}': {len(points)} points, one per array task (plan.json lists them).",
        *_sbatch_lines({**launcher, "sweep": sweep_name}, len(points), folder),
        "set -euo pipefail",
        *[str(line) for line in launcher.get("setup") or []],
        f"cd {shlex.quote(os.getcwd())}",
        f"exec {shlex.quote(python)} -m harness.sweep array {shlex.quote(str(plan))}",
    ]
    write_text(script, "\n".join(body) + "\n")
    return plan, script


class SlurmLauncher:
    name = "slurm"

    def __init__(self, opts: dict):
        _check(opts)
        self.opts = dict(opts)

    def launch(self, sweep, points, results_dir: Path, *, retry_failed: bool) -> int:
        return submit(sweep, points, results_dir, self.opts, retry_failed=retry_failed)


def submit(sweep, points, results_dir: Path, opts: dict, *, retry_failed: bool) -> int:
    todo, done = pending(points, results_dir, retry_failed)
    print(f"sweep {sweep.name}: {len(points)} points, {len(done)} already recorded, {len(todo)} to submit", file=sys.stderr)
    if not todo:
        return 0
    plan, script = write_array(sweep.name, todo, results_dir, opts)
    job = sbatch(script, opts)
    if job is not None:
        print(f"submitted job array {job} ({len(todo)} tasks); records land in {results_dir}; "
              f"follow with: harness results {results_dir} --where sweep={sweep.name}", file=sys.stderr)
    return 0


def sbatch(script: Path, opts: dict) -> str | None:
    """Submit ``script`` and return its job id; None when ``launcher.submit=false`` (the script is only written)."""
    if not opts.get("submit", True):
        print(f"wrote {script}\nsubmit with: sbatch {script}", file=sys.stderr)
        return None
    if shutil.which("sbatch") is None:
        raise UserError(f"sbatch not found on PATH: run this on the cluster's login node, or submit {script} there yourself")
    res = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True)
    if res.returncode != 0:
        raise UserError(f"sbatch failed: {(res.stderr or res.stdout).strip().splitlines()[-1:]}")
    return res.stdout.strip()


def array_task(plan_path: Path) -> int:
    """One array task: the point ``$SLURM_ARRAY_TASK_ID`` of ``plan.json``, run as a local sweep runs it."""
    from harness.config import load_spec
    from harness.sweep.display import point_line
    from harness.sweep.point import run_point

    plan = json.loads(Path(plan_path).read_text())
    index = int(os.environ.get("SLURM_ARRAY_TASK_ID", "-1"))
    if not 0 <= index < len(plan["points"]):
        raise UserError(f"SLURM_ARRAY_TASK_ID={index} is not a point of {plan_path} (0…{len(plan['points']) - 1})")
    entry = plan["points"][index]
    point = Point(index, entry["label"], tuple(entry["overrides"]), load_spec(entry["overrides"]))
    rec = existing(Path(point.spec.results_dir), point.run_id)
    if rec is not None and rec["status"] == "ok":  # a resubmitted array never measures a point twice
        print(f"{point.label}: already recorded ok ({point.run_id})")
        return 0
    outcome = run_point(point, plan["sweep"], timeout_s=plan.get("timeout_s"))
    if outcome is None:
        raise KeyboardInterrupt  # the task was interrupted: no record, a resubmission runs it
    from rich.console import Console

    Console().print(point_line(point.label, outcome.record, outcome.seconds))
    return 1 if outcome.record["status"] == "error" else 0
