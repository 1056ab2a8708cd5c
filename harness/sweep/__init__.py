"""A sweep: a preset file (``sweeps/sweep/<name>.yaml``) expanded into points, each run in its own process.

    python -m harness sweep=rank_ablation [key=value …] [retry_failed=true]
        [launcher.parallel=auto|N] [launcher=slurm]

- ``plan``: the preset → validated points, and which of them are already recorded;
- ``point``: one point in its own process, ending as exactly one record;
- ``slots``: which points run at once, on which GPUs and cores;
- ``launcher``: the interface, with ``local`` (child processes here, N at once) and ``slurm``
  (a job array) behind it; ``display``: what the person sees; ``child``: the child's entry point.

Idempotent and resumable: a point whose record exists is skipped (``retry_failed=true`` re-runs
those recorded ``oom``/``error``/``timeout``). Records are atomic (temp + rename), children die
with the parent and a lock keeps two runners of one sweep apart, so ``kill -9`` at any moment
loses only the points in flight and never duplicates one. docs/sweeps.md has the whole story.
"""

from harness.sweep.launcher import get_launcher, run_sweep
from harness.sweep.plan import Outcome, Point, SweepSpec, expand, override, pending, plan

__all__ = ["Outcome", "Point", "SweepSpec", "expand", "get_launcher", "override", "pending", "plan", "run_sweep"]
