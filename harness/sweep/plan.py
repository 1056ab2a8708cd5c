"""Planning a sweep: a preset file expanded into validated points, and which of them still need to run.

Preset format (kept in step with ``sweeps/sweep/regression.yaml``)::

    sweep:
      name: rank_ablation          # records carry record["sweep"]["name"]
      about: "…"                   # what the sweep is for
      repeats: 1                   # each point measured k times (repeat=0..k-1: distinct run_ids)
      points: [{method: lora}, …]  # explicit points: dicts of overrides (pair method-specific values here)
      grid: {method.r: [1, 2, 4]}  # cartesian product applied to every point
      overrides: ["train.save=none"]  # applied to every point, before the user's command-line overrides
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from harness.errors import UserError, reject_unknown_keys
from harness.record import read_record, record_path
from harness.spec import RunSpec

STRAY_TMP_AGE_S = 600  # another writer's temp file older than this is debris (a record write takes ms)
# Command-line keys that steer the runner, not a run: never passed on to a point.
RUNNER_KEYS = ("sweep", "search", "launcher", "retry_failed", "results_dir", "repeat")


@dataclass(frozen=True)
class SweepSpec:
    name: str
    about: str = ""
    repeats: int = 1
    points: tuple[Mapping[str, Any], ...] = ({},)
    grid: Mapping[str, list] = field(default_factory=dict)
    overrides: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SweepSpec":
        reject_unknown_keys("sweep", data, set(cls.__dataclass_fields__))
        if not data.get("name"):
            raise UserError("sweep.name is required")
        points = data.get("points") or [{}]
        if not isinstance(points, (list, tuple)) or not all(isinstance(p, Mapping) for p in points):
            raise UserError(f"sweep {data['name']}: sweep.points must be a list of {{key: value}} dicts")
        grid = data.get("grid") or {}
        if not isinstance(grid, Mapping) or not all(isinstance(v, (list, tuple)) and v for v in grid.values()):
            raise UserError(f"sweep {data['name']}: sweep.grid must map keys to non-empty lists of values")
        repeats = data.get("repeats", 1)
        if not isinstance(repeats, int) or repeats < 1:
            raise UserError(f"sweep {data['name']}: sweep.repeats must be a positive integer (got {repeats!r})")
        return cls(
            name=str(data["name"]),
            about=str(data.get("about") or ""),
            repeats=repeats,
            points=tuple(dict(p) for p in points),
            grid={k: list(v) for k, v in grid.items()},
            overrides=tuple(str(o) for o in data.get("overrides") or ()),
        )


@dataclass(frozen=True)
class Point:
    index: int
    label: str  # the point's own overrides, for people: "method=lora method.r=4"
    overrides: tuple[str, ...]  # everything the child gets on its command line
    spec: RunSpec

    @property
    def run_id(self) -> str:
        return self.spec.run_id


def override(key: str, value: Any) -> str:
    """A Hydra command-line override for one value (``None`` → null, lists → [a,b])."""
    if value is None:
        return f"{key}=null"
    if isinstance(value, bool):
        return f"{key}={str(value).lower()}"
    if isinstance(value, (list, tuple)):
        return f"{key}=[{','.join(override('x', v)[2:] for v in value)}]"
    text = str(value)
    if any(c in text for c in " ,=[]{}()'\"\\:") or text == "":
        text = "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return f"{key}={text}"


def _key(ov: str) -> str:
    return ov.partition("=")[0].lstrip("+~")


def passthrough(user_overrides: list[str]) -> list[str]:
    """The user's overrides minus those that steer the runner (sweep=, launcher.*, results_dir=, …)."""
    return [o for o in user_overrides if _key(o).split(".")[0] not in RUNNER_KEYS]


def expand(sweep: SweepSpec, user_overrides: list[str], results_dir: Path) -> list[Point]:
    """Every (point × grid combination × repeat), composed and validated before anything runs."""
    from harness.config import load_spec

    keys = list(sweep.grid)
    user = passthrough(user_overrides)
    points, seen = [], {}
    for p in sweep.points:
        clash = set(p) & set(keys)
        if clash:
            raise UserError(f"sweep {sweep.name}: '{sorted(clash)[0]}' is set both in a point and in the grid; set it in one place")
        for combo in itertools.product(*(sweep.grid[k] for k in keys)):
            own = [override(k, v) for k, v in p.items()] + [override(k, v) for k, v in zip(keys, combo)]
            for rep in range(sweep.repeats):
                label = " ".join(own + ([f"repeat={rep}"] if sweep.repeats > 1 else [])) or "(defaults)"
                ovs = (*sweep.overrides, *own, *user, f"repeat={rep}", override("results_dir", str(results_dir)))
                try:
                    spec = load_spec(list(ovs))
                except UserError as e:
                    raise UserError(f"sweep {sweep.name}, point '{label}': {e}") from None
                if spec.run_id in seen:
                    raise UserError(f"sweep {sweep.name}: points '{seen[spec.run_id]}' and '{label}' are the same run ({spec.run_id})")
                seen[spec.run_id] = label
                points.append(Point(len(points), label, ovs, spec))
    return points


def plan(cfg, overrides: list[str]) -> tuple[SweepSpec, list[Point], Path]:
    from omegaconf import OmegaConf

    sweep = SweepSpec.from_dict(OmegaConf.to_container(cfg.sweep, resolve=True))
    results_dir = Path(cfg.results_dir).expanduser().resolve()
    return sweep, expand(sweep, overrides, results_dir), results_dir


# ---------------------------------------------------------------- what is already recorded


@dataclass
class Outcome:
    """A point's record, how long it took here, and whether it was recorded before (skipped)."""

    record: dict
    seconds: float
    skipped: bool = False


def existing(results_dir: Path, run_id: str) -> dict | None:
    path = record_path(results_dir, run_id)
    if not path.exists():
        return None
    try:
        return read_record(path)
    except ValueError:
        return None  # unreadable: run the point again and overwrite it


def clean_stray_tmp(results_dir: Path, run_ids: set[str]) -> list[Path]:
    """Remove temp files a killed writer left: ours always, anyone's once older than STRAY_TMP_AGE_S."""
    removed = []
    now = time.time()
    for tmp in results_dir.glob(".*.tmp"):
        owner = tmp.name[1:].split(".json.")[0]
        try:
            if owner in run_ids or now - tmp.stat().st_mtime > STRAY_TMP_AGE_S:
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            pass
    return removed


def pending(points: list[Point], results_dir: Path, retry_failed: bool) -> tuple[list[Point], dict[int, Outcome]]:
    """(points to run, outcomes of those already recorded): an ``ok`` record is final; a failed
    one is final too unless ``retry_failed``; a missing or unreadable one means run it."""
    todo, done = [], {}
    for p in points:
        rec = existing(results_dir, p.run_id)
        if rec is not None and (rec["status"] == "ok" or not retry_failed):
            done[p.index] = Outcome(rec, 0.0, skipped=True)
        else:
            todo.append(p)
    return todo, done


def lock(results_dir: Path, name: str):
    """One runner per sweep and results dir; the kernel drops the lock when the holder dies (kill -9 too)."""
    import fcntl

    path = results_dir / f".sweep-{name}.lock"
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise UserError(f"sweep '{name}' is already running on {results_dir} (lock {path.name} is held)") from None
    return f
