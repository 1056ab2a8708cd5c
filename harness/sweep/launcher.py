"""One interface for running a sweep's points, whichever machine runs them.

A launcher takes the planned points and makes sure each ends as one record in ``results_dir``:

- ``launcher=local`` (``harness/sweep/local.py``): child processes here, ``launcher.parallel`` at once;
- ``launcher=slurm`` (``harness/sweep/slurm.py``): one Slurm job array of the pending points.

Both skip points already recorded (``retry_failed=true`` re-runs the failed ones) and use the
same point execution (``harness/sweep/point.py``), so a record is the same wherever it was made.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol

from harness.errors import unknown
from harness.sweep.plan import Point, SweepSpec, plan

LAUNCHERS = ("local", "slurm")


class Launcher(Protocol):
    name: str

    def launch(self, sweep: SweepSpec, points: list[Point], results_dir: Path, *, retry_failed: bool) -> int:
        """Run (or submit) the points without a record; the exit code for the command."""
        ...


def get_launcher(opts: dict, every: int | None = None) -> Launcher:
    """The launcher a config's ``launcher`` group selects (``sweeps/launcher/<name>.yaml``);
    ``every``: ``log.every``, the runner's plain progress lines."""
    name = opts.get("name") or "local"
    if name == "local":
        from harness.sweep.local import LocalLauncher

        return LocalLauncher(parallel=opts.get("parallel", "auto"), every=every)
    if name == "slurm":
        from harness.sweep.slurm import SlurmLauncher

        return SlurmLauncher(opts)
    raise unknown("launcher", name, LAUNCHERS)


def run_sweep(cfg, overrides: list[str]) -> int:
    """Run every point of the sweep selected in ``cfg``; exit code 1 if any point ended in ``error``."""
    from omegaconf import OmegaConf

    from harness.run_outputs import outputs_from
    from harness.trackers import PARENT_ENV, flat_params, make

    opts = OmegaConf.to_container(cfg.launcher, resolve=True) if cfg.get("launcher") else {}
    outputs = outputs_from(OmegaConf.to_container(cfg, resolve=True))
    launcher = get_launcher(opts, outputs.every)  # a bad launcher setting fails before the points are composed
    sweep, points, results_dir = plan(cfg, overrides)
    results_dir.mkdir(parents=True, exist_ok=True)
    tracker = make(outputs.logger, results_dir)  # missing or unreachable: one line now, not at every point
    if tracker is None:
        return launcher.launch(sweep, points, results_dir, retry_failed=bool(cfg.get("retry_failed", False)))
    # One parent (an MLflow run, a W&B/trackio group) whose children are the points: they find it in the environment.
    parent = tracker.open_group(sweep.name, flat_params({"sweep": sweep.name, "about": sweep.about, "points": len(points),
                                                        "overrides": list(overrides)}))
    os.environ[PARENT_ENV] = json.dumps(parent)
    code = 1
    try:
        code = launcher.launch(sweep, points, results_dir, retry_failed=bool(cfg.get("retry_failed", False)))
    finally:
        os.environ.pop(PARENT_ENV, None)
        tracker.close_group(parent, ok=code == 0)
    return code
