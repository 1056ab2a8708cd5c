"""A point's training progress, from its process to the runner's live display, through a small file.

The point's process hands ``ProgressFile`` to ``run.execute`` where a single run hands rich's
``Progress``: the training callback calls ``add_task`` and ``update`` on it (``harness/train.py``).
Each call rewrites ``<results_dir>/logs/<run_id>.progress.json`` (``harness/atomic.py``, at most every
``MIN_INTERVAL_S``), and the runner reads it when it redraws. A file rather than a pipe: the
point's stdout is its log, and a display that misses an update loses nothing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from harness.atomic import write_text

ENDED_KEPT = 8  # phases of a point whose ends a runner can still show: base/tuned eval, train, probes
MIN_INTERVAL_S = 0.5  # a tiny model takes ~10 ms a step: one write per step would be all the child does


def progress_path(results_dir: str | Path, run_id: str) -> Path:
    return Path(results_dir) / "logs" / f"{run_id}.progress.json"


class ProgressFile:
    """The subset of ``rich.progress.Progress`` the training loops use, written to a file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.state: dict = {}
        self._written = 0.0

    def add_task(self, description: str, total: float | None = None, **fields) -> int:
        # since: when the phase began (the runner's plain lines count elapsed time and ETA from it);
        # ended: how the last phases ended, for a runner whose reads missed them (a tiny model's
        # phase can begin and end between two reads)
        ended = self.state.get("ended", [])
        if self.state.get("task"):
            ended = [*ended, {k: v for k, v in self.state.items() if k != "ended"}][-ENDED_KEPT:]
        self.state = {"task": description, "total": total, "completed": 0, "since": time.time(), **fields, "ended": ended}
        self._write(force=True)
        return 0

    def update(self, task_id: int, *, completed: float | None = None, total: float | None = None,
               advance: float | None = None, **fields) -> None:
        if total is not None:
            self.state["total"] = total
        if completed is not None:
            self.state["completed"] = completed
        if advance:
            self.state["completed"] = self.state.get("completed", 0) + advance
        self.state.update(fields)
        self._write(force=self.state.get("completed") == self.state.get("total"))

    def _write(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._written < MIN_INTERVAL_S:
            return
        self._written = now
        try:
            write_text(self.path, json.dumps(self.state))
        except OSError:
            pass  # progress is for people watching; a failed write never touches the run


def read_progress(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def remove_progress(path: Path) -> None:
    """The progress file and any temp file a killed writer left beside it (``harness/atomic.py``)."""
    path = Path(path)
    for p in (path, *path.parent.glob(f".{path.name}.*.tmp")):
        try:
            p.unlink()
        except OSError:
            pass
