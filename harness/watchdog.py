"""A memory budget for one run: over budget → the run ends as ``oom``, on a GPU or simulated on CPU.

CUDA: ``torch.cuda.set_per_process_memory_fraction`` caps the caching allocator, so an
allocation past the budget raises ``torch.OutOfMemoryError`` exactly where a smaller GPU would.

CPU: a thread samples the memory the run added since ``MemoryMonitor.start()`` (RSS above the
baseline — the same figure recorded as ``peak_memory_gb``) every 20 ms. Past the budget it
raises ``BudgetExceeded`` (a ``MemoryError``) in the main thread, which ``run.execute`` records
as ``oom``. The exception lands when the main thread next runs Python code; if it is stuck in
one long C call while memory keeps growing (1.25× the budget + 1 GB) or does not unwind within
``HARD_GRACE_S``, the watchdog writes the ``oom`` record itself and ends the process, so that a
simulated budget can never take the real machine down with it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

POLL_S = 0.02  # 20 ms: a 1 GB/s allocation ramp overshoots the budget by ~20 MB before it is seen
HARD_GRACE_S = 30.0  # time the main thread gets to unwind after the soft signal
EXIT_OOM = 75  # exit code of a hard stop; a sweep parent reads it as `oom`
_SIGNAL = signal.SIGUSR1


class BudgetExceeded(MemoryError):
    """The run needed more memory than ``budget_gb``."""


class Watchdog:
    """``Watchdog(mem, budget_gb, record=…, results_dir=…).start()`` … ``.stop()``; no budget → does nothing."""

    def __init__(self, mem, budget_gb: float | None, *, record: dict | None = None, results_dir: str | None = None):
        self.mem = mem
        self.budget_gb = budget_gb
        self.record = record
        self.results_dir = results_dir
        self.tripped_gb: float | None = None
        self._armed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._old_handler = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> "Watchdog":
        if self.budget_gb is None:
            return self
        if self.mem.device == "cuda":
            import torch

            total = torch.cuda.get_device_properties(0).total_memory / 1024**3
            torch.cuda.set_per_process_memory_fraction(min(1.0, self.budget_gb / total))
            return self
        if threading.current_thread() is not threading.main_thread():
            return self  # signals reach only the main thread; the hard stop below would still work, but keep it simple
        self._old_handler = signal.signal(_SIGNAL, self._raise)
        self._armed = True
        self._thread = threading.Thread(target=self._watch, name="tunebench-budget", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._armed = False
        self._stop.set()
        if self._old_handler is not None:
            signal.signal(_SIGNAL, self._old_handler)
            self._old_handler = None

    def raise_if_tripped(self, peak_gb: float | None = None) -> None:
        """The verdict at the end of a run: over budget → ``BudgetExceeded``.

        The signal's exception can be swallowed by a library's broad ``except``, and a spike
        shorter than the 20 ms poll can slip between samples; the recorded peak (the kernel's
        high-water mark) catches both.
        """
        if self.budget_gb is None:
            return
        over = self.tripped_gb if self.tripped_gb is not None else peak_gb
        if over is not None and over > self.budget_gb:
            raise BudgetExceeded(
                f"memory budget exceeded: {over:.3g} GB > budget_gb={self.budget_gb:g} "
                f"(RSS above the pre-load baseline, watchdog-simulated budget)"
            )

    # ------------------------------------------------------------ the two sides

    def _raise(self, signum, frame):  # runs in the main thread
        if self._armed:
            self._armed = False
            raise BudgetExceeded(
                f"memory budget exceeded: {self.tripped_gb:.3g} GB > budget_gb={self.budget_gb:g} "
                f"(RSS above the pre-load baseline, watchdog-simulated budget)"
            )

    def _watch(self):  # runs in the watchdog thread
        tripped_at = None
        while not self._stop.wait(POLL_S):
            used = self.mem.current_gb()
            if tripped_at is None:
                if used > self.budget_gb:
                    self.tripped_gb = used
                    tripped_at = time.monotonic()
                    os.kill(os.getpid(), _SIGNAL)
            elif used > 1.25 * self.budget_gb + 1 or time.monotonic() - tripped_at > HARD_GRACE_S:
                self._hard_stop(used)

    def _hard_stop(self, used: float):
        msg = f"memory budget exceeded: {used:.3g} GB > budget_gb={self.budget_gb:g}; the run did not unwind, stopped by the watchdog"
        print(f"tunebench: {msg}", file=sys.stderr, flush=True)
        if self.record is not None and self.results_dir is not None:
            try:
                from harness.record import error_info, finished, write_record

                error = error_info(type="BudgetExceeded", message=msg)
                write_record(self.results_dir, finished(self.record, "oom", error=error, metrics=self.mem.peak(),
                                                        recorded_by="watchdog"))
            except Exception:  # noqa: BLE001 — a sweep parent still records the exit code as oom
                pass
        os._exit(EXIT_OOM)
