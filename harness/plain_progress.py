"""Progress as plain lines, for output that is not a terminal (a CI log, ``| tee run.log``, ``nohup``).

A terminal gets rich's live bar (``harness/console.py``). Anywhere else a bar draws nothing until
the run ends, so ``PlainProgress`` prints one line every ``every`` steps instead, the way
Hugging Face's Trainer and most training scripts do::

    train 12/64 steps · loss 1.234 · 226.1 tok/s · 0:31 elapsed · ETA 2:15
    [method=lora method.r=16] train 12/64 steps · …      (a sweep point, from the runner)

It speaks the subset of ``rich.progress.Progress`` the training loops already call (``add_task``,
``update``), so a run hands it where it would hand the bar; ``Tee`` hands one call to several
sinks (the bar or these lines, a sweep point's progress file, a tracker's step metrics).

Every line is written whole with ``print`` (no console wrapping), so it stays one line in a pipe.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from typing import Any, Callable

LINES_PER_PHASE = 20  # default: about 20 lines a phase (`log.every=null`)
HEARTBEAT_S = 60.0  # and at least one line a minute, also while a step or an eval runs long
UNITS = {"train": "steps"}  # other phases (base eval, tuned eval, probes) count examples


def plain_wanted(every: int | None, stream=None) -> bool:
    """Plain lines when stdout is not a terminal, or when ``log.every`` asks for them."""
    stream = stream or sys.stdout
    return every is not None or not (hasattr(stream, "isatty") and stream.isatty())


def clock(seconds: float | None) -> str:
    """``0:31``, ``12:05``, ``1:02:03``; ``–`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "–"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _number(value: Any, spec: str) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return format(value, spec)
    return "–"


class PlainProgress:
    """``add_task``/``update`` → one plain line per ``every`` steps, and at least one per ``heartbeat_s``.

    ``every=None``: ``ceil(total / LINES_PER_PHASE)`` for each phase. A phase's first and last
    step always print. ``start_heartbeat()`` starts a thread that prints the current line after
    ``heartbeat_s`` without one (a long eval or a slow step); a caller that polls calls ``tick()``.
    """

    def __init__(self, every: int | None = None, *, prefix: str = "", write: Callable[[str], None] | None = None,
                 heartbeat_s: float = HEARTBEAT_S):
        self.every, self.prefix, self.heartbeat_s = every, prefix, heartbeat_s
        self.write = write or (lambda line: print(line, file=sys.stdout, flush=True))
        self.phase: str | None = None
        self.total: float | None = None
        self.done = 0.0
        self.fields: dict[str, Any] = {}
        self.started = time.monotonic()
        self.last_line = 0.0
        self.printed_step = -1.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------ the rich.progress.Progress subset

    def add_task(self, description: str, total: float | None = None, **fields) -> int:
        with self._lock:
            self.phase, self.total, self.done = description, total, 0.0
            self.fields = {k: v for k, v in fields.items()}
            since = fields.get("since")  # a phase that began elsewhere (a sweep point's process), as time.time()
            self.started = time.monotonic() - (max(0.0, time.time() - since) if isinstance(since, (int, float)) else 0.0)
            self.printed_step = -1.0
            self._emit()
        return 0

    def update(self, task_id: int = 0, *, completed: float | None = None, total: float | None = None,
               advance: float | None = None, **fields) -> None:
        with self._lock:
            if total is not None:
                self.total = total
            if completed is not None:
                self.done = completed
            if advance:
                self.done += advance
            self.fields.update(fields)
            if self.done != self.printed_step and (self._due_step() or self._due_time()):
                self._emit()

    # ------------------------------------------------ time-based lines

    def tick(self) -> None:
        """The current line if a phase is under way and none was printed for ``heartbeat_s``."""
        with self._lock:
            if self.phase is not None and self.done != self.total and self._due_time():
                self._emit()

    def start_heartbeat(self) -> "PlainProgress":
        def beat():
            while not self._stop.wait(min(5.0, self.heartbeat_s)):
                self.tick()

        self._thread = threading.Thread(target=beat, name="tunebench-progress", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------ the line

    def step_every(self) -> int:
        if self.every:
            return self.every
        return max(1, math.ceil((self.total or LINES_PER_PHASE) / LINES_PER_PHASE))

    def _due_step(self) -> bool:
        every = self.step_every()
        return self.printed_step < 0 or self.done == self.total or int(self.done) // every > int(self.printed_step) // every

    def _due_time(self) -> bool:
        return time.monotonic() - self.last_line >= self.heartbeat_s

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        total = self.total
        done = self.done
        eta = elapsed / done * (total - done) if total and done and done <= total else (0.0 if total and done >= total else None)
        unit = UNITS.get(self.phase or "", "examples")
        parts = [f"{self.prefix}{self.phase} {int(done)}/{int(total) if total else '?'} {unit}"]
        if self.phase == "train":
            parts.append(f"loss {_number(self.fields.get('loss'), '.4f')}")
            parts.append(f"{_number(self.fields.get('tokens_per_s'), '.1f')} tok/s")
        parts += [f"{clock(elapsed)} elapsed", f"ETA {clock(eta)}"]
        return " · ".join(parts)

    def _emit(self) -> None:
        self.printed_step = self.done
        self.last_line = time.monotonic()
        try:
            self.write(self.line().replace("\n", " "))
        except (OSError, ValueError):
            pass  # a closed pipe never stops a run


class Tee:
    """One progress call, handed to every sink (``None`` sinks are left out)."""

    def __init__(self, *sinks):
        self.sinks = [s for s in sinks if s is not None]
        self.ids: list[int] = []

    def add_task(self, description: str, total: float | None = None, **fields) -> int:
        self.ids = [s.add_task(description, total=total, **fields) for s in self.sinks]
        return 0

    def update(self, task_id: int = 0, **kwargs) -> None:
        for sink, tid in zip(self.sinks, self.ids):
            sink.update(tid, **kwargs)


class phase:
    """``with phase(progress, "base eval", n):`` a step-less phase as a task that starts at 0 and ends at n."""

    def __init__(self, progress, name: str, total: int):
        self.progress, self.name, self.total = progress, name, max(1, int(total))

    def __enter__(self):
        if self.progress is not None:
            self.task = self.progress.add_task(self.name, total=self.total, loss=float("nan"))
        return self

    def __exit__(self, exc_type, *exc):
        if self.progress is not None and exc_type is None:
            self.progress.update(self.task, completed=self.total)
