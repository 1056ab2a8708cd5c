"""What the person running a sweep sees: a line per finished point, a live board of the running
ones (a terminal) or plain start/finish lines (a log file, CI), and the summary table at the end."""

from __future__ import annotations

import time

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from harness.sweep.plan import Outcome, Point
from harness.sweep.progress import read_progress

STYLE = {"ok": "green", "oom": "yellow", "error": "red", "timeout": "magenta"}
REFRESH_PER_S = 2


def _figures(record: dict) -> tuple[str, str, str]:
    from harness.console import fmt

    m = record.get("metrics") or {}
    score = m.get("task_score")
    return fmt(m.get("peak_memory_gb"), ".2f"), fmt(m.get("tokens_per_s"), ".1f"), "n/a" if m.get("task_score_na") else fmt(score, ".3f")


def point_line(label: str, record: dict, seconds: float) -> str:
    status = record["status"]
    peak, tps, score = _figures(record)
    line = f"[{STYLE.get(status, 'white')}]{status:>7}[/] {escape(label)}  ({seconds:.0f} s)  peak {peak} GB · {tps} tok/s · score {score}"
    if record.get("error"):
        line += f"\n        [dim]{record['error']['type']}: {record['error']['message'][:160]}[/]"
    return line


def where(slot) -> str:
    """'GPU 2,3' or 'cores 0-3' for a slot."""
    if slot.gpus:
        return f"GPU {','.join(slot.gpus)}"
    cpus = slot.cpus
    if cpus and list(cpus) == list(range(cpus[0], cpus[-1] + 1)) and len(cpus) > 1:
        return f"cores {cpus[0]}-{cpus[-1]}"
    return f"core{'s' if len(cpus) > 1 else ''} {','.join(map(str, cpus))}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "after the first point"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class Board:
    """Running points with their step progress, and the sweep's counts and ETA.

    On a terminal this is one ``rich.live.Live`` region redrawn ``REFRESH_PER_S`` times a second;
    elsewhere (output to a file or a pipe) it prints one line when a point starts and one when it ends.
    """

    def __init__(self, console: Console, name: str, total: int, parallel: int, every: int | None = None):
        from harness.plain_progress import plain_wanted

        self.console, self.name, self.total, self.parallel = console, name, total, parallel
        self.running: dict[int, tuple[Point, object, float, object]] = {}  # index → (point, slot, started, progress file)
        self.finished = self.failed = 0
        self.eta_s: float | None = None
        self.every = every
        self.plain = plain_wanted(every) or not console.is_terminal  # a log, a pipe, CI: a line per N steps of each point
        self.lines: dict[int, object] = {}  # index → PlainProgress of a running point
        self.phases_done: dict[int, set] = {}  # index → start times of the phases it left that were shown to their end
        self.live = None if self.plain else Live(console=console, refresh_per_second=REFRESH_PER_S, get_renderable=self.render)

    def __enter__(self):
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.live:
            self.live.__exit__(*exc)

    def started(self, point: Point, slot, progress_file) -> None:
        from harness.plain_progress import PlainProgress

        self.running[point.index] = (point, slot, time.time(), progress_file)
        if not self.live:
            self.console.print(f"  start \\[{where(slot)}] {escape(point.label)}", highlight=False)
            self.lines[point.index] = PlainProgress(self.every, prefix=f"[{point.label}] ")

    def tick(self) -> None:
        """Plain mode: each running point's progress file, as a line every N of its steps (and one a minute)."""
        for index, lines in list(self.lines.items()):
            if index not in self.running:
                continue
            state = read_progress(self.running[index][3])
            if not state.get("task"):
                continue
            shown = self.phases_done.setdefault(index, set())
            for phase in state.get("ended", []):
                _show(lines, phase, shown)
            fields = {k: v for k, v in state.items() if k not in ("task", "total", "completed", "ended")}
            if state["task"] != lines.phase or state.get("since") != lines.fields.get("since"):
                lines.add_task(state["task"], total=state.get("total"), **fields)
            lines.update(completed=state.get("completed") or 0, total=state.get("total"), **fields)
            lines.tick()

    def ended(self, point: Point, outcome: Outcome | None) -> None:
        self.running.pop(point.index, None)
        self.lines.pop(point.index, None)
        self.phases_done.pop(point.index, None)
        if outcome is None:
            self.console.print(f"[yellow]interrupted[/] {escape(point.label)}: no record; re-run the sweep to resume it")
            return
        self.finished += 1
        self.failed += outcome.record["status"] != "ok"
        self.console.print(point_line(point.label, outcome.record, outcome.seconds))

    def headline(self) -> str:
        return (f"[bold]sweep {self.name}[/]: {self.finished}/{self.total} done · "
                f"[{'red' if self.failed else 'dim'}]{self.failed} failed[/] · {len(self.running)} running "
                f"of {self.parallel} slot(s) · ETA {_duration(self.eta_s)}")

    def render(self):
        table = Table(box=None, pad_edge=False, show_header=True, header_style="dim")
        for col in ("slot", "on", "point", "progress", "step", "loss", "elapsed"):
            table.add_column(col)
        now = time.time()
        for point, slot, started, path in sorted(list(self.running.values()), key=lambda r: r[1].index):
            state = read_progress(path)
            total, done = state.get("total"), state.get("completed", 0)
            bar = ProgressBar(total=total or 1, completed=done if total else 0, width=24)
            loss = state.get("loss")
            table.add_row(str(slot.index), where(slot), Text(point.label), bar if total else Text("starting", style="dim"),
                          (f"{done}/{total}" + (" scoring" if done == total else "")) if total else "", f"{loss:.3f}" if isinstance(loss, float) and loss == loss else "",
                          _duration(now - started))
        return Group(Text.from_markup(self.headline()), table)


def print_summary(name: str, points: list[Point], outcomes: dict[int, Outcome]) -> None:
    table = Table(title=f"sweep {name}")
    for col, justify in (("#", "right"), ("point", "left"), ("status", "left"), ("peak GB", "right"),
                         ("tokens/s", "right"), ("score", "right"), ("wall s", "right"), ("note", "left")):
        table.add_column(col, justify=justify)
    counts: dict[str, int] = {}
    for p in points:
        o = outcomes.get(p.index)
        if o is None:
            counts["not run"] = counts.get("not run", 0) + 1
            table.add_row(str(p.index), Text(p.label), "[dim]not run[/]", "", "", "", "", "")
            continue
        status = o.record["status"]
        key = "skipped" if o.skipped else status
        counts[key] = counts.get(key, 0) + 1
        peak, tps, score = _figures(o.record)
        wall = (o.record.get("metrics") or {}).get("wall_s")
        note = "recorded before (skipped)" if o.skipped else ""
        shared = (o.record.get("execution") or {}).get("shared_with")
        if shared:
            note = (note + " " if note else "") + f"ran beside {shared} other point(s)"
        if o.record.get("error"):
            note = (note + " " if note else "") + o.record["error"]["message"][:60]
        table.add_row(str(p.index), Text(p.label), f"[{STYLE.get(status, 'white')}]{status}[/]", peak, tps, score,
                      f"{wall:.0f}" if wall else "–", note)
    from harness.console import make_console

    console = make_console()
    console.print(table)
    console.print(" · ".join(f"{n} {k}" for k, n in counts.items()))


def _show(lines, phase: dict, shown: set) -> None:
    """A phase the point has left, shown to its end once: its last line if the runner was showing it,
    its first and last if the runner's reads missed it whole. ``shown``: the phases (by start time) done."""
    if phase.get("since") in shown:
        return
    shown.add(phase.get("since"))
    fields = {k: v for k, v in phase.items() if k not in ("task", "total", "completed")}
    if phase.get("task") != lines.phase or phase.get("since") != lines.fields.get("since"):
        lines.add_task(phase["task"], total=phase.get("total"), **fields)
    lines.update(completed=phase.get("completed") or 0, total=phase.get("total"), **fields)
