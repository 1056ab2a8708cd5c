"""What runs inside a sweep's child processes (``python -m harness.sweep …``).

``point <overrides…>``: one point, as the local launcher starts it. It first ties its life to the
runner's (``PR_SET_PDEATHSIG``), takes the cores of its slot (affinity; the runner has set
``OMP_NUM_THREADS`` and ``CUDA_VISIBLE_DEVICES`` in its environment), then runs exactly what
``python -m harness <overrides…>`` runs, with its step progress going to a file the runner shows.
``array <plan.json>``: the Slurm array task ``$SLURM_ARRAY_TASK_ID`` (``harness/sweep/slurm.py``).

Neither goes through ``harness.cli``: the CLI starts sweeps, so a child that re-entered it would
close an import circle (cli → sweep → cli).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

EXECUTION_ENV = "TUNEBENCH_EXECUTION"  # the slot as JSON; run.new_record copies it into record["execution"]


def die_with_parent() -> None:
    """Linux: SIGKILL this process when the sweep runner dies, so a killed sweep leaves no orphan
    that could race a re-run for the same record."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    parent = os.environ.get("TUNEBENCH_PARENT_PID")
    if parent and os.getppid() != int(parent):  # the runner died before prctl took effect
        os._exit(1)


def take_cores() -> None:
    """Pin this process (and the threads torch will start) to its slot's cores, before torch loads."""
    cpus = json.loads(os.environ.get(EXECUTION_ENV) or "{}").get("cpus")
    if cpus and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, cpus)
        except OSError as e:  # a core that went away since the runner looked: run unpinned, say so
            print(f"harness: warning: could not pin to cores {cpus}: {e}", file=sys.stderr)


def run_point(overrides: list[str]) -> int:
    from harness.console import make_console, print_run, quiet_libraries
    from harness.run_outputs import execute_with, load_run
    from harness.sweep.progress import ProgressFile, progress_path

    quiet_libraries()
    spec, outputs = load_run(overrides)
    banner = f"[bold]tunebench[/] {spec.method.name} · {spec.model.short_name} · {spec.task.name} → {spec.results_dir}/{spec.run_id}.json"
    # The point's stdout is its log file: plain lines there; the runner shows the progress file.
    record = execute_with(spec, outputs, console=make_console(stderr=True), banner=banner,
                          progress=ProgressFile(progress_path(spec.results_dir, spec.run_id)))
    print_run(record)
    return 0 if record["status"] == "ok" else 1


def main(argv: list[str]) -> int:
    from harness.errors import run_cli

    if argv and argv[0] == "point":
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the runner stops a point with SIGINT (local.py)
        die_with_parent()
        take_cores()
        return run_cli("harness", lambda: run_point(argv[1:]))
    if argv and argv[0] == "array" and len(argv) == 2:
        from harness.sweep.slurm import array_task

        return run_cli("harness", lambda: array_task(Path(argv[1])))
    print("usage: python -m harness.sweep point <overrides…> | array <plan.json>", file=sys.stderr)
    return 2
