"""``launcher=local``: a sweep's points as child processes of this runner, ``launcher.parallel`` at once.

    python -m harness sweep=rank_ablation                      # CUDA: one point per visible GPU; CPU: one at a time
    python -m harness sweep=rank_ablation launcher.parallel=2  # CPU: two points, each on half the cores

Each point runs in its own slot (``harness/sweep/slots.py``): its GPUs through
``CUDA_VISIBLE_DEVICES``, its cores through CPU affinity and ``OMP_NUM_THREADS``, and the record
says so in its ``execution`` section. The guarantees of one point at a time hold for N at once:

- one record per point, whatever happens to it (``harness/sweep/point.py``);
- a point that crashes, runs out of memory or passes ``timeout_s`` ends as its record; the others
  keep running, and its slot goes to the next point;
- children die with the runner (``PR_SET_PDEATHSIG``) and a lock keeps two runners apart, so
  ``kill -9`` loses only the points in flight, and a re-run completes exactly those;
- Ctrl-C interrupts every running point (SIGINT, then SIGKILL after ``INTERRUPT_GRACE_S``); the
  interrupted points get no record, and re-running the command resumes them. This holds however
  the runner was started: one that inherited SIGINT ignored (``cmd &`` in a script) takes it back
  (``point.ctrl_c_reaches_the_runner``).
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.markup import escape

from harness.errors import UserError
from harness.sweep.display import Board, print_summary, where
from harness.sweep.plan import Outcome, Point, SweepSpec, clean_stray_tmp, existing, lock, pending
from harness.sweep.point import Child, ctrl_c_reaches_the_runner
from harness.sweep.progress import progress_path, remove_progress
from harness.sweep.slots import FAKE_GPUS_ENV, Machine, Scheduler, child_env, detect_machine, expected_seconds, slot_count

POLL_S = 0.25  # a finished point's slot is handed on within this
INTERRUPT_GRACE_S = 5.0  # Ctrl-C: time for points to unwind (an FSDP point stops its own job) before SIGKILL


def _recorded_seconds(points: list[Point], results_dir: Path) -> dict[int, float]:
    """Wall time of each point's last record (a failed one being retried): process start → record."""
    out = {}
    for p in points:
        m = (existing(results_dir, p.run_id) or {}).get("metrics") or {}
        if m.get("wall_s"):
            out[p.index] = float(m["wall_s"]) + float(m.get("startup_s") or 0.0)
    return out


class LocalLauncher:
    name = "local"

    def __init__(self, parallel="auto", machine: Machine | None = None, every: int | None = None):
        if parallel not in (None, "auto") and (isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1):
            raise UserError(f"launcher.parallel must be auto or a positive integer (got {parallel!r})")
        self.parallel_setting = parallel
        self.machine = machine
        self.every = every  # log.every: plain progress lines of each point (harness/plain_progress.py)

    def launch(self, sweep: SweepSpec, points: list[Point], results_dir: Path, *, retry_failed: bool) -> int:
        with ctrl_c_reaches_the_runner():  # even when started with SIGINT ignored (`cmd &` in a script)
            return self._launch(sweep, points, results_dir, retry_failed)

    def _launch(self, sweep: SweepSpec, points: list[Point], results_dir: Path, retry_failed: bool) -> int:
        from harness.console import make_console

        machine = self.machine or detect_machine()
        parallel = slot_count(self.parallel_setting, machine)  # a bad setting fails before anything runs
        console = make_console(stderr=True)
        held = lock(results_dir, sweep.name)
        try:
            removed = clean_stray_tmp(results_dir, {p.run_id for p in points})
            if removed:
                console.print(f"[dim]removed {len(removed)} stray temp file(s) left by an interrupted run[/]")
            todo, outcomes = pending(points, results_dir, retry_failed)
            scheduler = Scheduler(todo, machine, parallel, expected_seconds(todo, _recorded_seconds(todo, results_dir)))
            on = (f"GPUs {','.join(machine.gpus)}" + (f" (fake: {FAKE_GPUS_ENV}, the points run on the CPU)" if machine.fake_gpus else "")
                  if machine.gpus else f"{len(machine.cpus)} CPU core(s)")
            console.print(
                f"[bold]sweep {sweep.name}[/] — {sweep.about}\n"
                f"{len(points)} points → {results_dir}: {len(todo)} to run, {len(points) - len(todo)} already recorded"
                + (" (retry_failed=true re-runs the failed ones)" if any(o.record["status"] != "ok" for o in outcomes.values()) else "")
                + f"\n{parallel} at a time on {on}"
            )
            interrupted = run_points(scheduler, sweep.name, outcomes, Board(console, sweep.name, len(todo), parallel, self.every))
        finally:
            held.close()
        print_summary(sweep.name, points, outcomes)
        if interrupted or len(outcomes) < len(points):  # a point stopped alone (`kill -INT` of it) has no record either
            return 130
        return 1 if any(o.record["status"] == "error" for o in outcomes.values()) else 0


def run_points(scheduler: Scheduler, sweep_name: str, outcomes: dict[int, Outcome], board: Board,
               timeout_s: float | None = None) -> bool:
    """Start points as slots free up until all have ended; True if interrupted (Ctrl-C)."""
    machine, parallel = scheduler.machine, scheduler.parallel
    running: dict[int, tuple[Child, object]] = {}
    # Expected seconds from FLOPs: recalibrated on every finished point, for the ETA.
    measured: dict[int, float] = {}
    points = {p.index: p for p in scheduler.queue}
    try:
        with board:
            while scheduler.queue or running:
                starts = scheduler.launches()
                beside = len(running) + len(starts) - 1  # other points running at its start, those started with it included
                for point, slot in starts:
                    env, execution = child_env(slot, machine, parallel, shared_with=beside)
                    running[point.index] = (Child(point, sweep_name, env=env, execution=execution, timeout_s=timeout_s), slot)
                    board.started(point, slot, progress_path(point.spec.results_dir, point.run_id))
                for index, (child, slot) in list(running.items()):
                    if child.poll():
                        _end(child, slot, scheduler, running, outcomes, board)
                        if child.outcome:
                            measured[index] = child.outcome.seconds
                board.eta_s = _eta(points, scheduler, running, measured, machine, parallel)
                board.tick()
                time.sleep(POLL_S)
    except KeyboardInterrupt:
        scheduler.drop()
        _interrupt(running, scheduler, outcomes, board)
        return True
    except BaseException:
        for child, _ in running.values():
            child.stop()
        raise
    return False


def _end(child: Child, slot, scheduler, running, outcomes, board) -> None:
    point = child.point
    scheduler.release(slot)
    running.pop(point.index, None)
    remove_progress(progress_path(point.spec.results_dir, point.run_id))
    if child.outcome is not None:
        outcomes[point.index] = child.outcome
    board.ended(point, child.outcome)


def _interrupt(running, scheduler, outcomes, board) -> None:
    """Ctrl-C: every running point is asked to stop (SIGINT), then killed; a point that managed to
    write its record in the meantime keeps it, the others get none."""
    try:
        for child, _ in running.values():
            child.interrupt()
        deadline = time.time() + INTERRUPT_GRACE_S
        while running and time.time() < deadline:
            for child, slot in list(running.values()):
                if child.poll():
                    _end(child, slot, scheduler, running, outcomes, board)
            time.sleep(0.1)
    finally:  # a second Ctrl-C lands here too: nothing outlives the runner
        for child, slot in list(running.values()):
            child.stop()
            remove_progress(progress_path(child.point.spec.results_dir, child.point.run_id))
            board.console.print(f"[yellow]interrupted[/] {escape(child.point.label)} \\[{where(slot)}]: no record; re-run the sweep to resume it")


def _eta(points, scheduler, running, measured, machine: Machine, parallel: int) -> float | None:
    """Seconds until the last point ends, if the remaining work spreads evenly over the slots; None
    before any point of this run has finished (nothing to turn FLOPs into seconds yet)."""
    if not measured:
        return None
    expected = expected_seconds(list(points.values()), measured)
    units = len(machine.gpus) or parallel
    now = time.time()
    work = sum(expected[p.index] * (p.spec.method.world_size if machine.gpus else 1) for p in scheduler.queue)
    work += sum(max(0.0, expected[i] - (now - child.started)) * len(slot.units) for i, (child, slot) in running.items())
    return work / units
