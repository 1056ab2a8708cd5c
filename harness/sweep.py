"""A sweep: a preset file (``sweeps/sweep/<name>.yaml``) expanded into points, each run in its own process.

    python -m harness sweep=rank_ablation [key=value …] [retry_failed=true] [launcher=slurm]

One process per point isolates memory peaks and makes every failure a result: the child writes
its own record (``ok``/``oom``/``error``); if it dies without one (killed, segfault, ``timeout_s``,
a bad input), this parent writes it, under the same ``run_id``, with the end of the child's log.

Idempotent and resumable: a point whose record exists is skipped (``retry_failed=true`` re-runs
those recorded ``oom``/``error``/``timeout``). Records are atomic (temp + rename), children die
with the parent (``PR_SET_PDEATHSIG``) and a lock keeps two runners of one sweep apart, so
``kill -9`` at any moment loses only the point in flight and never duplicates one.

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
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from harness.config import RunSpec
from harness.errors import UserError, did_you_mean
from harness.record import read_record, record_path, write_record

LOG_TAIL = 3000  # characters of a dead child's log kept in the record the parent writes
KILL_GRACE_S = 10.0  # SIGTERM → SIGKILL after a timeout
STRAY_TMP_AGE_S = 600  # another writer's temp file older than this is debris (a record write takes ms)
# Command-line keys that steer the runner, not a run: never passed on to a point.
RUNNER_KEYS = ("sweep", "launcher", "retry_failed", "results_dir", "repeat")


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
        known = set(cls.__dataclass_fields__)
        for key in data:
            if key not in known:
                raise UserError(f"unknown sweep setting 'sweep.{key}'{did_you_mean(key, known)}")
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


# ---------------------------------------------------------------- planning


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
                ovs = (*sweep.overrides, *own, *user, f"repeat={rep}", f"results_dir={results_dir}")
                try:
                    spec = load_spec(list(ovs))
                except UserError as e:
                    raise UserError(f"sweep {sweep.name}, point '{label}': {e}") from None
                if spec.run_id in seen:
                    raise UserError(f"sweep {sweep.name}: points '{seen[spec.run_id]}' and '{label}' are the same run ({spec.run_id})")
                seen[spec.run_id] = label
                points.append(Point(len(points), label, ovs, spec))
    return points


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


# ---------------------------------------------------------------- one point in its own process


def child_argv(point: Point) -> list[str]:
    # Not `-m harness` directly: `point` first ties the child's life to ours (see _die_with_parent).
    return [sys.executable, "-m", "harness.sweep", "point", *point.overrides]


def _tail(path: Path, n: int = LOG_TAIL) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - n))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _classify(returncode: int, timed_out: float | None, tail: str) -> tuple[str, str, str]:
    """(status, error type, message) for a child that left no record."""
    from harness.watchdog import EXIT_OOM

    last = next((ln.strip() for ln in reversed(tail.splitlines()) if ln.strip()), "")
    if timed_out is not None:
        return "timeout", "Timeout", f"no record after timeout_s={timed_out:g}: the run was stopped"
    if returncode == 2 and "error:" in last:  # a UserError: the child printed one line and left
        return "error", "UserError", last.split("error:", 1)[1].strip()
    if returncode == EXIT_OOM or "MemoryError" in tail or "out of memory" in tail.lower():
        return "oom", "OutOfMemory", last or f"exit code {returncode}"
    if returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (the kernel's OOM killer sends SIGKILL when the machine runs out of memory)" if name == "SIGKILL" else ""
        return "error", "Killed", f"the run process died of {name} without a record{hint}"
    return "error", "ProcessError", f"exit code {returncode} without a record: {last}"


def record_for_dead_child(point: Point, sweep_name: str, status: str, err_type: str, message: str, tail: str,
                          started: float, seconds: float) -> dict:
    import datetime as dt

    from harness.measure import device_of
    from harness.record import build_record, error_info, finished

    started_at = dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(timespec="seconds")
    record = build_record(point.spec, device_of(), sweep=sweep_name, started_at=started_at)
    record = finished(record, status, error=error_info(type=err_type, message=message, tail=tail),
                      metrics={"wall_s": seconds}, recorded_by="sweep")  # the child left nothing: the parent's figures
    write_record(point.spec.results_dir, record)
    return record


def run_point(point: Point, sweep_name: str, on_poll=None, timeout_s: float | None = None) -> Outcome:
    """Run one point as a child process; return its record, writing one if the child could not.

    The point's own ``timeout_s`` (else ``timeout_s`` here) stops a child that runs too long → ``timeout``.
    """
    results_dir = Path(point.spec.results_dir)
    log = results_dir / "logs" / f"{point.run_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TUNEBENCH_SWEEP": sweep_name, "PYTHONUNBUFFERED": "1", "TUNEBENCH_PARENT_PID": str(os.getpid())}
    started = time.time()
    timed_out = None
    with open(log, "wb") as out:
        proc = subprocess.Popen(child_argv(point), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        try:
            while True:
                try:
                    proc.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    if on_poll:
                        on_poll()
                    limit = point.spec.timeout_s or timeout_s
                    if limit and time.time() - started > limit and timed_out is None:
                        timed_out = limit
                        proc.terminate()
                        try:
                            proc.wait(timeout=KILL_GRACE_S)
                        except subprocess.TimeoutExpired:
                            proc.kill()
        except BaseException:  # Ctrl-C or an error here: never leave a child behind
            proc.kill()
            proc.wait()
            raise
    seconds = time.time() - started
    path = record_path(results_dir, point.run_id)
    if path.exists() and path.stat().st_mtime >= started - 1e-3:
        try:
            return Outcome(read_record(path), seconds)
        except ValueError:
            pass  # cannot happen with atomic writes; record the point as failed below
    status, err_type, message = _classify(proc.returncode, timed_out, _tail(log))
    return Outcome(record_for_dead_child(point, sweep_name, status, err_type, message, _tail(log), started, seconds), seconds)


# ---------------------------------------------------------------- the sweep


def _lock(results_dir: Path, name: str):
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


def plan(cfg, overrides: list[str]) -> tuple[SweepSpec, list[Point], Path]:
    from omegaconf import OmegaConf

    sweep = SweepSpec.from_dict(OmegaConf.to_container(cfg.sweep, resolve=True))
    results_dir = Path(cfg.results_dir).expanduser().resolve()
    return sweep, expand(sweep, overrides, results_dir), results_dir


def run_sweep(cfg, overrides: list[str]) -> int:
    """Run every point of the sweep selected in ``cfg``; exit code 1 if any point ended in ``error``."""
    from rich.console import Console

    sweep, points, results_dir = plan(cfg, overrides)
    retry = bool(cfg.get("retry_failed", False))
    results_dir.mkdir(parents=True, exist_ok=True)
    if cfg.get("launcher") and cfg.launcher.get("name") != "local":
        from harness.slurm import submit

        return submit(sweep, points, results_dir, cfg.launcher, retry_failed=retry)
    console = Console(stderr=True)
    lock = _lock(results_dir, sweep.name)
    try:
        removed = clean_stray_tmp(results_dir, {p.run_id for p in points})
        if removed:
            console.print(f"[dim]removed {len(removed)} stray temp file(s) left by an interrupted run[/]")
        todo, outcomes = pending(points, results_dir, retry)
        console.print(
            f"[bold]sweep {sweep.name}[/] — {sweep.about}\n"
            f"{len(points)} points → {results_dir}: {len(todo)} to run, {len(points) - len(todo)} already recorded"
            + (" (retry_failed=true re-runs the failed ones)" if any(o.record["status"] != "ok" for o in outcomes.values()) else "")
        )
        interrupted = _run_points(todo, sweep.name, outcomes, console)
    finally:
        lock.close()
    print_summary(sweep.name, points, outcomes)
    if interrupted:
        return 130
    return 1 if any(o.record["status"] == "error" for o in outcomes.values()) else 0


def _run_points(todo: list[Point], sweep_name: str, outcomes: dict, console) -> bool:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    progress = Progress(
        SpinnerColumn(),
        TextColumn("[cyan]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("elapsed"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )
    with progress:
        bar = progress.add_task("points", total=len(todo))
        for i, p in enumerate(todo):
            progress.update(bar, description=f"[{i + 1}/{len(todo)}] {p.label}")
            try:
                outcome = run_point(p, sweep_name, on_poll=progress.refresh)
            except KeyboardInterrupt:
                console.print(f"[yellow]interrupted during '{p.label}': no record written for it; re-run the sweep to resume[/]")
                return True
            outcomes[p.index] = outcome
            progress.console.print(point_line(p.label, outcome.record, outcome.seconds))
            progress.advance(bar)
    return False


# ---------------------------------------------------------------- what the person sees


def _figures(record: dict) -> tuple[str, str, str]:
    from harness.console import fmt

    m = record.get("metrics") or {}
    score = m.get("task_score")
    return fmt(m.get("peak_memory_gb"), ".2f"), fmt(m.get("tokens_per_s"), ".1f"), "n/a" if m.get("task_score_na") else fmt(score, ".3f")


STYLE = {"ok": "green", "oom": "yellow", "error": "red", "timeout": "magenta"}


def point_line(label: str, record: dict, seconds: float) -> str:
    status = record["status"]
    peak, tps, score = _figures(record)
    line = f"[{STYLE.get(status, 'white')}]{status:>7}[/] {label}  ({seconds:.0f} s)  peak {peak} GB · {tps} tok/s · score {score}"
    if record.get("error"):
        line += f"\n        [dim]{record['error']['type']}: {record['error']['message'][:160]}[/]"
    return line


def print_summary(name: str, points: list[Point], outcomes: dict[int, Outcome]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sweep {name}")
    for col, justify in (("#", "right"), ("point", "left"), ("status", "left"), ("peak GB", "right"),
                         ("tokens/s", "right"), ("score", "right"), ("wall s", "right"), ("note", "left")):
        table.add_column(col, justify=justify)
    counts: dict[str, int] = {}
    for p in points:
        o = outcomes.get(p.index)
        if o is None:
            counts["not run"] = counts.get("not run", 0) + 1
            table.add_row(str(p.index), p.label, "[dim]not run[/]", "", "", "", "", "")
            continue
        status = o.record["status"]
        key = "skipped" if o.skipped else status
        counts[key] = counts.get(key, 0) + 1
        peak, tps, score = _figures(o.record)
        wall = (o.record.get("metrics") or {}).get("wall_s")
        note = "recorded before (skipped)" if o.skipped else ""
        if o.record.get("error"):
            note = (note + " " if note else "") + o.record["error"]["message"][:60]
        table.add_row(str(p.index), p.label, f"[{STYLE.get(status, 'white')}]{status}[/]", peak, tps, score,
                      f"{wall:.0f}" if wall else "–", note)
    console = Console()
    console.print(table)
    console.print(" · ".join(f"{n} {k}" for k, n in counts.items()))


# ---------------------------------------------------------------- child entry points


def _die_with_parent() -> None:
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


def main(argv: list[str]) -> int:
    """``python -m harness.sweep point <overrides…>``: one point, as the runner starts it;
    ``python -m harness.sweep array <plan.json>``: the Slurm array task ``$SLURM_ARRAY_TASK_ID``."""
    if argv and argv[0] == "point":
        _die_with_parent()
        from harness.cli import dispatch

        return dispatch(argv[1:])
    if argv and argv[0] == "array":
        from harness.errors import run_cli
        from harness.slurm import array_task

        return run_cli("harness", lambda: array_task(Path(argv[1])))
    print("usage: python -m harness.sweep point <overrides…> | array <plan.json>", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
