"""Experiment trackers, each through its own library, chosen with ``logger=`` (``sweeps/logger/*.yaml``).

    harness logger=mlflow                      # sqlite:///<results_dir>/mlflow.db; logger.uri=http://… for a server
    harness logger=wandb                       # offline files under <results_dir>/wandb (logger.mode=online to sync live)
    harness logger=tensorboard | logger=trackio
    harness results --to mlflow results/main   # backfill records made earlier

A run gets its config as params, its per-step loss and tokens/s as metrics with steps, its final
figures (task score ± stderr, peak memory, MFU, forgetting per probe) and its record JSON and
artifacts folder. A sweep is one parent (an MLflow run, a W&B/trackio group, a TensorBoard folder)
with a child per point: the runner opens it and hands it to the points through ``PARENT_ENV``.

Each library sits behind the small ``Tracker`` protocol below, one adapter module per library,
looked up lazily by name (``TRACKERS``): the core install imports none of them. A tracker that is
missing or unreachable is a ``UserError`` when the run starts; once a run has started, a tracker
failure is a warning in the record, never a lost measurement (``Tracking``).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Protocol

from harness.errors import UserError, unknown

# name → "module:class"; the module imports its library only when a run asks for it
TRACKERS = {
    "mlflow": "harness.trackers.mlflow_tracker:MlflowTracker",
    "tensorboard": "harness.trackers.tensorboard_tracker:TensorboardTracker",
    "trackio": "harness.trackers.trackio_tracker:TrackioTracker",
    "wandb": "harness.trackers.wandb_tracker:WandbTracker",
}
NAMES = ("none", *TRACKERS)
EXTRA = {"mlflow": "mlflow", "tensorboard": "tensorboard", "trackio": "trackio", "wandb": "wandb"}  # pip extra
PARENT_ENV = "TUNEBENCH_TRACKER_PARENT"  # a sweep's parent run/group as JSON, for its points
MODES = ("offline", "online")


@dataclass(frozen=True)
class LoggerSpec:
    name: str  # none | mlflow | tensorboard | trackio | wandb
    uri: str | None  # mlflow tracking URI; None = sqlite:///<results_dir>/mlflow.db
    project: str  # MLflow experiment, W&B / trackio project
    mode: str  # wandb: offline | online
    dir: str | None  # files of tensorboard / wandb / trackio; None = <results_dir>/<name>

    def __post_init__(self):
        if self.name not in NAMES:
            raise unknown("logger", self.name, NAMES)
        if self.mode not in MODES:
            raise unknown("logger.mode", self.mode, MODES)
        if not str(self.project).strip():
            raise UserError("logger.project must be a name (got an empty string)")

    def folder(self, results_dir: str | Path) -> Path:
        return Path(self.dir).expanduser().resolve() if self.dir else Path(results_dir).expanduser().resolve() / self.name


def logger_spec(cfg: Mapping[str, Any] | None) -> LoggerSpec:
    """The ``logger`` section of a resolved config (absent in configs made before it: ``none``)."""
    data = dict(cfg or {"name": "none"})
    known = {"name", "uri", "project", "mode", "dir"}
    extra = sorted(set(data) - known)
    if extra:
        raise UserError(f"unknown setting 'logger.{extra[0]}'; logger settings: {', '.join(sorted(known))}")
    data.setdefault("uri", None), data.setdefault("project", "tunebench")
    data.setdefault("mode", "offline"), data.setdefault("dir", None)
    return LoggerSpec(**{k: (str(v) if v is not None and k != "name" else v) for k, v in data.items()})


class Tracker(Protocol):
    """One library's adapter. ``start`` returns what the record keeps (``{"name", "run_id", …}``)."""

    name: str

    def start(self, run_name: str, params: dict[str, str], *, parent: dict | None) -> dict: ...

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def finish(self, summary: dict[str, float], record_path: Path | None, artifacts_dir: Path | None, ok: bool) -> None: ...

    def open_group(self, name: str, params: dict[str, str]) -> dict:
        """A sweep's parent: what its points get through ``PARENT_ENV``."""
        ...

    def close_group(self, parent: dict, ok: bool) -> None: ...


def make(spec: LoggerSpec, results_dir: str | Path) -> Tracker | None:
    """The adapter for ``spec`` (None for ``logger=none``), checked: its library imports and its
    store answers. Anything else is one ``UserError`` line, before any work."""
    if spec.name == "none":
        return None
    module, _, cls = TRACKERS[spec.name].partition(":")
    try:
        tracker_cls = getattr(importlib.import_module(module), cls)
        tracker = tracker_cls(spec, Path(results_dir).expanduser().resolve())
    except ImportError as e:
        raise UserError(f"logger={spec.name} needs the {e.name or spec.name} package: "
                        f"pip install 'tunebench[{EXTRA[spec.name]}]'") from None
    tracker.check()
    return tracker


# ---------------------------------------------------------------- what gets logged


def flat_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"method.r": "16", "train.lr": "0.001", …}``: every config leaf as a string param."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flat_params(value, name + "."))
        else:
            out[name] = json.dumps(value) if isinstance(value, (list, tuple, Mapping)) else str(value)
    return out


def final_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """The figures a run ends with: task score ± stderr, peak memory, tokens/s, MFU, forgetting per probe."""
    m = record.get("metrics") or {}
    keys = ("task_score", "task_score_stderr", "task_score_base", "peak_memory_gb", "tokens_per_s", "samples_per_s",
            "mfu", "train_loss_last", "wall_s", "steps")
    out = {k: float(m[k]) for k in keys if _finite(m.get(k))}
    for probe, f in (m.get("forgetting") or {}).items():
        for k in ("base", "tuned", "delta", "stderr"):
            if _finite((f or {}).get(k)):
                out[f"forgetting/{probe}/{k}"] = float(f[k])
    return out


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class Tracking:
    """One run's tracker, safe to use after training: the first failure is a warning, then it stops.

    Also a progress sink (``add_task``/``update``, like ``rich.progress.Progress``): training steps
    become ``train/loss`` and ``train/tokens_per_s`` metrics at their step.
    """

    def __init__(self, tracker: Tracker, info: dict):
        self.tracker, self.info = tracker, info
        self.phase: str | None = None
        self.step = 0
        self.warning: str | None = None

    def _safely(self, what: str, fn, *args, **kwargs) -> None:
        if self.warning:
            return
        try:
            fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 — a tracker never costs a measurement
            self.warning = f"logger={self.tracker.name}: {what} failed ({type(e).__name__}: {str(e)[:200]}); the record is complete"
            print(f"harness: warning: {self.warning}", file=sys.stderr)

    def add_task(self, description: str, total: float | None = None, **fields) -> int:
        self.phase, self.step = description, 0
        return 0

    def update(self, task_id: int = 0, *, completed: float | None = None, **fields) -> None:
        if self.phase != "train":
            return
        if completed is not None:
            self.step = int(completed)
        metrics = {f"train/{k}": float(v) for k, v in fields.items() if k in ("loss", "tokens_per_s") and _finite(v)}
        if metrics and self.step > 0:
            self._safely("logging a step", self.tracker.log_metrics, metrics, self.step)

    def finish(self, record: dict, record_path: Path | None, artifacts_dir: Path | None) -> None:
        self._safely("logging the final figures", self.tracker.finish, final_metrics(record), record_path,
                     artifacts_dir if artifacts_dir and artifacts_dir.exists() else None, record.get("status") == "ok")


def start_run(spec: LoggerSpec, results_dir: str, run_id: str, config: Mapping[str, Any], label: str | None = None) -> Tracking | None:
    """Open the run's tracker run (a sweep point: under the parent in ``PARENT_ENV``); None for ``logger=none``."""
    tracker = make(spec, results_dir)
    if tracker is None:
        return None
    parent = json.loads(os.environ[PARENT_ENV]) if os.environ.get(PARENT_ENV) else None
    params = flat_params(config)
    params["run_id"] = run_id
    try:
        info = tracker.start(label or run_id, params, parent=parent)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 — an unreachable store, a refused login: say so now, before training
        raise UserError(f"logger={spec.name}: could not start a run ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    return Tracking(tracker, {"name": spec.name, **info})
