"""``harness search=<preset> launcher=slurm``: ``search.workers`` Slurm array tasks, each a local
search runner with one slot (``launcher=local launcher.parallel=1``) against the same storage.

The workers share nothing but the database: each asks for a trial, runs it, tells it, and stops
when the study holds ``n_trials``; a worker that dies has its trial retried by another (heartbeats,
``harness/search/study.py``). Use a server database (``search.storage=postgresql://…``): SQLite's
file locks are unreliable on the network file systems clusters share. ``launcher.timeout_min`` is
each worker's whole time (sbatch --time); a trial's own limit is ``timeout_s``.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

from harness.atomic import write_text
from harness.search.space import SearchSpec
from harness.sweep.plan import override
from harness.sweep.slurm import _check, _sbatch_lines, sbatch


def worker_command(search: SearchSpec, overrides: list[str], results_dir: Path, url: str, python: str) -> str:
    """The command each array task runs: this search, run locally, one trial at a time."""
    keep = [o for o in overrides if not o.partition("=")[0].lstrip("+~").split(".")[0] in ("launcher", "results_dir")]
    keep = [o for o in keep if not o.partition("=")[0].lstrip("+~") == "search.storage"]
    args = [*keep, override("results_dir", str(results_dir)), override("search.storage", url), "launcher=local", "launcher.parallel=1"]
    return " ".join(shlex.quote(a) for a in [python, "-m", "harness", *args])


def write_workers(search: SearchSpec, overrides: list[str], results_dir: Path, url: str, opts: dict) -> Path:
    _check(opts)
    n = search.workers or int(opts.get("array_parallelism") or 1)
    folder = results_dir / "slurm" / f"search-{search.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "workers.sbatch"
    body = [
        "#!/bin/bash",
        f"# tunebench search '{search.name}': {n} workers on one study ({url.split('://')[0]} storage), "
        f"{search.n_trials} trials in all.",
        *_sbatch_lines({**opts, "sweep": f"search-{search.name}", "array_parallelism": n}, n, folder),
        "set -euo pipefail",
        *[str(line) for line in opts.get("setup") or []],
        f"cd {shlex.quote(os.getcwd())}",
        "exec " + worker_command(search, overrides, results_dir, url, opts.get("python") or sys.executable),
    ]
    write_text(script, "\n".join(body) + "\n")
    return script


def submit_workers(search: SearchSpec, overrides: list[str], results_dir: Path, url: str, opts: dict) -> int:
    if url.startswith("sqlite"):
        print(f"search {search.name}: warning: SQLite storage ({url}) shared by Slurm workers needs a file system "
              f"with working locks; prefer search.storage=postgresql://…", file=sys.stderr)
    script = write_workers(search, overrides, results_dir, url, opts)
    job = sbatch(script, opts)
    if job is not None:
        print(f"submitted {job}: workers of search {search.name}; records land in {results_dir}; "
              f"follow with: harness report {results_dir}", file=sys.stderr)
    return 0
