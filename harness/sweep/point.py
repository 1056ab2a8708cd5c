"""One point in its own process: start it, poll it without blocking, and make sure it ends as a record.

One process per point isolates memory peaks and makes every failure a result: the child writes
its own record (``ok``/``oom``/``error``); if it dies without one (killed, segfault, ``timeout_s``,
a bad input), the parent writes it, under the same ``run_id``, with the end of the child's log.
The child is ``python -m harness.sweep point <overrides…>`` (``harness/sweep/child.py``), which
dies with the parent (``PR_SET_PDEATHSIG``), so a killed runner leaves no orphan behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from harness.record import read_record, record_path, write_record
from harness.sweep.plan import Outcome, Point

LOG_TAIL = 3000  # characters of a dead child's log kept in the record the parent writes
KILL_GRACE_S = 10.0  # SIGTERM → SIGKILL after a timeout
INTERRUPTED = (130, -signal.SIGINT)  # run_cli's exit code for Ctrl-C, or death by SIGINT


@contextmanager
def ctrl_c_reaches_the_runner():
    """While a runner runs points, SIGINT (Ctrl-C, ``kill -INT``) raises KeyboardInterrupt in it,
    whatever disposition the process inherited; the old one is given back afterwards.

    A process started by a non-interactive shell with ``cmd &`` (a CI script, ``nohup bash … &``)
    inherits SIGINT *ignored* (POSIX), and an ignored signal stays ignored across ``exec`` into every
    point: Ctrl-C then reached no one, the sweep ran each point to its end and exited 0. SIGINT is
    how a runner is stopped and how it stops its points, so it takes the signal back (and unblocks
    it, should it arrive blocked); its children start with the default again (a handler does not
    survive ``exec``), so its SIGINT reaches them too. Signals reach only the main thread: elsewhere
    this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.getsignal(signal.SIGINT)
    if old in (signal.SIG_IGN, signal.SIG_DFL, None):  # SIG_DFL would end the runner with no cleanup
        signal.signal(signal.SIGINT, signal.default_int_handler)
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}) if hasattr(signal, "pthread_sigmask") else None
    try:
        yield
    finally:
        if mask is not None and signal.SIGINT in mask:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        if old is not None and signal.getsignal(signal.SIGINT) is not old:
            signal.signal(signal.SIGINT, old)


def child_argv(point: Point) -> list[str]:
    # Not `-m harness` directly: `point` first ties the child's life to ours (child.die_with_parent).
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
                          started: float, seconds: float, execution: dict | None = None, search: dict | None = None) -> dict:
    """The record of a point whose child left none, from what the parent saw (harness/record.py builds it)."""
    import datetime as dt

    from harness.measure import device_of
    from harness.record import build_record, error_info, finished

    started_at = dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(timespec="seconds")
    record = build_record(point.spec, device_of(), sweep=sweep_name, started_at=started_at, execution=execution, search=search)
    record = finished(record, status, error=error_info(type=err_type, message=message, tail=tail),
                      metrics={"wall_s": seconds}, recorded_by="sweep")  # the child left nothing: the parent's figures
    write_record(point.spec.results_dir, record)
    return record


class Child:
    """A point's process, polled without blocking so that several can run at once.

    ``env`` adds to the environment (the local launcher's slot: ``CUDA_VISIBLE_DEVICES``, thread
    counts, ``TUNEBENCH_EXECUTION``); ``execution`` is that slot as recorded; ``search`` the study
    and trial the point is for (``harness/search/``), given to the child as ``TUNEBENCH_SEARCH``. The point's own
    ``timeout_s`` (else ``timeout_s`` here) ends a child that runs too long → ``timeout``.
    """

    def __init__(self, point: Point, sweep_name: str, *, env: dict | None = None, execution: dict | None = None,
                 timeout_s: float | None = None, search: dict | None = None):
        self.point, self.sweep_name, self.execution, self.search = point, sweep_name, execution, search
        self.limit = point.spec.timeout_s or timeout_s
        results_dir = Path(point.spec.results_dir)
        self.log = results_dir / "logs" / f"{point.run_id}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        full_env = {**os.environ, "TUNEBENCH_SWEEP": sweep_name, "PYTHONUNBUFFERED": "1",
                    "TUNEBENCH_PARENT_PID": str(os.getpid()), **(env or {})}
        if search:
            import json

            full_env["TUNEBENCH_SEARCH"] = json.dumps(search)
        self.started = time.time()
        self.timed_out: float | None = None
        self._term_at: float | None = None
        self.outcome: Outcome | None = None  # set once ended; stays None for an interrupted child
        self.done = False
        self.interrupted = False
        with open(self.log, "wb") as out:  # the child holds its own copy of the descriptor
            self.proc = subprocess.Popen(child_argv(point), stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=full_env)

    def poll(self) -> bool:
        """True once the child has ended (its outcome recorded); enforces the time limit meanwhile."""
        if self.done:
            return True
        rc = self.proc.poll()
        if rc is None:
            now = time.time()
            if self.limit and now - self.started > self.limit and self.timed_out is None:
                self.timed_out = self.limit
                self.proc.terminate()
                self._term_at = now
            elif self._term_at is not None and now - self._term_at > KILL_GRACE_S:
                self.proc.kill()
            return False
        self.done = True
        self.outcome = self._finish(rc)
        return True

    def interrupt(self) -> None:
        """Ask the point to stop as Ctrl-C would (SIGINT → KeyboardInterrupt: it cleans up, writes nothing)."""
        self.interrupted = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def stop(self, grace_s: float = 0.0) -> None:
        """End the child now (Ctrl-C, or an error in the runner): SIGTERM, SIGKILL after ``grace_s``."""
        if self.proc.poll() is None:
            self.proc.terminate() if grace_s else self.proc.kill()
            try:
                self.proc.wait(timeout=grace_s or None)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.done = True

    def _finish(self, returncode: int) -> Outcome | None:
        seconds = time.time() - self.started
        point = self.point
        path = record_path(point.spec.results_dir, point.run_id)
        if path.exists() and path.stat().st_mtime >= self.started - 1e-3:
            try:
                return Outcome(read_record(path), seconds)
            except ValueError:
                pass  # cannot happen with atomic writes; record the point as failed below
        if (self.interrupted or returncode in INTERRUPTED) and self.timed_out is None:
            return None  # Ctrl-C reached the child: nothing was measured whole; a re-run resumes it
        tail = _tail(self.log)
        status, err_type, message = _classify(returncode, self.timed_out, tail)
        return Outcome(record_for_dead_child(point, self.sweep_name, status, err_type, message, tail,
                                             self.started, seconds, self.execution, self.search), seconds)


def run_point(point: Point, sweep_name: str, on_poll=None, timeout_s: float | None = None) -> Outcome | None:
    """Run one point to its end (the Slurm array task); None if it was interrupted."""
    child = Child(point, sweep_name, timeout_s=timeout_s)
    try:
        while not child.poll():
            if on_poll:
                on_poll()
            time.sleep(0.5)
    except BaseException:  # Ctrl-C or an error here: never leave a child behind
        child.stop()
        raise
    return child.outcome
