"""Parse and dispatch. The work happens in importable modules; this file only routes."""

from __future__ import annotations

import importlib
import sys

from harness.errors import UserError, run_cli

# command → module with ``main(argv) -> int``
COMMANDS = {
    "results": "harness.results",
    "report": "harness.report",
    "regress": "harness.regress",
    "eval": "harness.eval_command",
    "export": "harness.export",
}

USAGE = """usage: harness [key=value …]            one measured run (Hydra overrides)
       harness sweep=<name> [key=value …]   a sweep: every point in its own process
       harness search=<name> [key=value …]  an Optuna study: every trial a sweep point (docs/search.md)
       harness <command> [--help]           results | report | regress | eval | export

examples:
  harness model=smollm2-135m method=lora task=tickets method.r=16 train.max_steps=40
  harness debug=smoke method=dora
  harness sweep=rank_ablation
  harness results results/runs --where method=lora --sort tokens_per_s
"""


def dispatch(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help", "help"):
        from harness.method_table import METHODS

        print(USAGE)
        print("methods (method=<name>; docs/methods.md, docs/extending.md):")
        for name, entry in METHODS.items():
            print(f"  {name:<8} {entry.summary}")
        return 0
    if argv and argv[0] in COMMANDS:
        return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])
    if argv and not "=" in argv[0] and not argv[0].startswith("-"):
        from harness.errors import did_you_mean

        print(f"harness: error: unknown command '{argv[0]}'{did_you_mean(argv[0], COMMANDS)}; "
              f"commands: {', '.join(COMMANDS)}, or key=value overrides", file=sys.stderr)
        return 2
    return run_cli("harness", lambda: run_from_overrides(argv))


def run_from_overrides(overrides: list[str]) -> int:
    from omegaconf import OmegaConf

    from harness.config import compose, spec_from_dict
    from harness.paths import check_writable
    from harness.console import quiet_libraries
    from harness.run_outputs import outputs_from

    quiet_libraries()
    cfg = compose(overrides)
    if cfg.get("search"):
        from harness.errors import UserError
        from harness.search import run_search

        if cfg.get("sweep"):
            raise UserError("give either sweep=<name> (a grid) or search=<name> (a study), not both")
        check_writable(str(cfg.results_dir))
        return run_search(cfg, overrides)
    if cfg.get("sweep"):
        from harness.sweep.launcher import run_sweep

        check_writable(str(cfg.results_dir))  # before planning: a sweep must not run points it cannot record
        return run_sweep(cfg, overrides)
    plain = OmegaConf.to_container(cfg, resolve=True)
    spec = spec_from_dict(plain)  # every value checked, nothing loaded yet
    outputs = outputs_from(plain)
    check_writable(spec.results_dir)  # a run that cannot write its record would lose the measurement
    return run_single(spec, outputs)


def run_single(spec, outputs=None) -> int:
    from harness.console import make_console, print_run
    from harness.run_outputs import Outputs, execute_with
    from harness.trackers import logger_spec

    outputs = outputs or Outputs(logger_spec(None), None)
    console = make_console(stderr=True)
    banner = f"[bold]tunebench[/] {spec.method.name} · {spec.model.short_name} · {spec.task.name} → {spec.results_dir}/{spec.run_id}.json"
    record = execute_with(spec, outputs, console=console, banner=banner)
    print_run(record)
    return 0 if record["status"] == "ok" else 1
