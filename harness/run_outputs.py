"""Where a run's progress and figures go besides its record: the screen (rich's bar on a terminal,
plain lines elsewhere; ``log.every``) and an experiment tracker (``logger=``).

Both are settings of the run's *output*, not of what it measures, so they stay out of ``RunSpec``
(and its run id) like the sweep launcher's: ``outputs_from`` reads them from the same config.
``execute_with`` is what ``harness`` and a sweep's point run: tracker first (a missing package or an
unreachable store fails before anything loads), then the run, then the tracker's final figures.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from harness.errors import UserError
from harness.trackers import LoggerSpec, logger_spec


@dataclass(frozen=True)
class Outputs:
    logger: LoggerSpec
    every: int | None  # log.every: a plain line every N steps (None: ~20 a phase, and only off a terminal)


def outputs_from(cfg: Mapping[str, Any]) -> Outputs:
    every = (cfg.get("log") or {}).get("every")
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise UserError(f"log.every must be a positive integer, or null for about 20 lines a phase (got {every!r})")
    return Outputs(logger_spec(cfg.get("logger")), every)


def load_run(overrides: list[str]):
    """(RunSpec, Outputs) from command-line overrides."""
    from omegaconf import OmegaConf

    from harness.config import compose, spec_from_dict

    cfg = OmegaConf.to_container(compose(overrides), resolve=True)
    return spec_from_dict(cfg), outputs_from(cfg)


def execute_with(spec, outputs: Outputs, *, console=None, progress: Any = None, banner: str | None = None) -> dict:
    """Run ``spec`` with its outputs. ``console``: a rich console for the bar (a terminal run) and the
    ``banner`` line, printed once the tracker has started; ``progress``: another sink (a sweep point's progress file)."""
    from harness.console import progress_bar
    from harness.plain_progress import PlainProgress, Tee, plain_wanted
    from harness.record import add_warning, record_path, write_record
    from harness.run import execute
    from harness.trackers import start_run

    tracking = start_run(outputs.logger, spec.results_dir, spec.run_id, spec.to_dict())
    if banner and console is not None:
        console.print(banner)
    plain = PlainProgress(outputs.every).start_heartbeat() if plain_wanted(outputs.every) else None
    bar = progress_bar(console) if console is not None and plain is None else nullcontext()
    try:
        with bar as shown:
            record = execute(spec, Tee(shown, plain, progress, tracking), tracker=tracking.info if tracking else None)
    finally:
        if plain is not None:
            plain.close()
    if tracking is not None:
        tracking.finish(record, record_path(spec.results_dir, record["run_id"]), Path(spec.results_dir) / "artifacts" / spec.run_id)
        if tracking.warning:  # the record says its tracker run is incomplete
            add_warning(record, tracking.warning)
            write_record(spec.results_dir, record)
    return record
