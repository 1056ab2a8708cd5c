"""Search, not just grids: ``harness search=<preset>`` runs an Optuna study whose trials are sweep points.

    python -m harness search=smoke results_dir=/tmp/s          # the tiny model, seconds per trial
    python -m harness search=tickets results_dir=results/search launcher.parallel=2
    python -m harness search=tickets search.storage=postgresql://u:p@db/optuna launcher=slurm

- ``space``: the preset (``sweeps/search/<name>.yaml``) → parameters, objectives and their
  directions, and how a record becomes the values Optuna is told;
- ``study``: the study database (SQLite under results_dir, or any SQLAlchemy URL), samplers,
  heartbeats and the count of trials that makes ``search.n_trials`` the study's total;
- ``runner``: ask → a sweep point in its own process → its record → tell, N at once;
- ``slurm``: N array tasks, each a runner, against one shared storage;
- ``report``: the report's "Search" section (Pareto front, objectives over trials, importances).

docs/search.md has the whole story and the measured study.
"""

from __future__ import annotations

from pathlib import Path


def run_search(cfg, overrides: list[str]) -> int:
    """Run (or submit) the study selected by ``search=<preset>``; exit code 1 if a trial ended in ``error``."""
    from omegaconf import OmegaConf
    from rich.console import Console

    from harness.search.runner import LocalSearch, make_base
    from harness.search.space import SearchSpec
    from harness.search.study import open_storage, open_study, storage_url
    from harness.sweep.display import Board, print_summary
    from harness.sweep.launcher import get_launcher

    search = SearchSpec.from_dict(OmegaConf.to_container(cfg.search, resolve=True))
    opts = OmegaConf.to_container(cfg.launcher, resolve=True) if cfg.get("launcher") else {}
    launcher = get_launcher(opts)  # a bad launcher setting fails first
    results_dir = Path(cfg.results_dir).expanduser().resolve()
    results_dir.mkdir(parents=True, exist_ok=True)
    base = make_base(search, overrides, results_dir)  # every corner of the space composes: before the database
    url = storage_url(search, results_dir)
    storage = open_storage(url, heartbeat_s=search.heartbeat_s, grace_s=search.grace_s)  # unreachable → exit 2 here
    study = open_study(search, storage)
    if launcher.name == "slurm":
        from harness.search.slurm import submit_workers

        return submit_workers(search, overrides, results_dir, url, opts)
    from harness.search.study import counts
    from harness.sweep.slots import detect_machine, slot_count

    machine = detect_machine()
    parallel = slot_count(opts.get("parallel", "auto"), machine)
    console = Console(stderr=True)
    before = counts(study.get_trials(deepcopy=False))
    console.print(f"[bold]search {search.name}[/] — {search.about}\n"
                  f"study {search.name} in {url}: {before.counted} of {search.n_trials} trials done, "
                  f"{before.running} running elsewhere; objectives {', '.join(search.objectives)}\n"
                  f"{parallel} at a time; records → {results_dir}")
    runner = LocalSearch(base, study, storage, machine, parallel, console)
    board = Board(console, f"search {search.name}", max(0, search.n_trials - before.counted - before.running), parallel)
    from harness.sweep.point import ctrl_c_reaches_the_runner

    with ctrl_c_reaches_the_runner():  # even when started with SIGINT ignored (`cmd &` in a script)
        interrupted = runner.run(board)
    if runner.points:
        print_summary(f"search {search.name} (this run)", runner.points, runner.outcomes)
    done = counts(study.get_trials(deepcopy=False)).counted
    console.print(f"study {search.name}: {done}/{search.n_trials} trials; see it with: harness report {results_dir}")
    if interrupted:
        return 130
    return 1 if any(o.record["status"] == "error" for o in runner.outcomes.values()) else 0
