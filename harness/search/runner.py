"""``harness search=<preset>``: an Optuna study whose trials are ordinary sweep points.

Ask-and-tell: the runner asks the study for a trial, turns its parameters into command-line
overrides, runs them as a sweep point (its own process, its own record: ``harness/sweep/point.py``,
slots from ``harness/sweep/slots.py``), reads the record and tells the study. ``launcher.parallel``
trials run at once; ``launcher=slurm`` submits ``search.workers`` array tasks, each one such
runner with one slot, against the same storage (``harness/search/slurm.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UserError
from harness.search.space import SearchSpec, check_objectives, tell_args
from harness.search.study import CONSTRAINT_ATTR, ask, counts, is_surplus
from harness.sweep.plan import Outcome, Point, existing, override, passthrough
from harness.sweep.point import Child

POLL_S = 0.25


@dataclass(frozen=True)
class Base:
    """What every trial shares: the preset, the user's overrides, where records go."""

    search: SearchSpec
    user: tuple[str, ...]  # the command line's run overrides (runner keys removed)
    results_dir: Path
    budget_gb: float | None

    def point(self, number: int, values: dict) -> Point:
        from harness.config import load_spec

        own = [override(k, v) for k, v in values.items()]
        ovs = (*self.search.overrides, *own, *self.user, "repeat=0", override("results_dir", str(self.results_dir)))
        label = f"trial {number}: " + " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        try:
            spec = load_spec(list(ovs))
        except UserError as e:
            raise UserError(f"search {self.search.name}, {label}: {e}") from None
        return Point(number, label, ovs, spec)


def make_base(search: SearchSpec, user_overrides: list[str], results_dir: Path) -> Base:
    """Check the preset against the run config before any storage or training: every choice and
    both ends of every range compose into a valid run, and that run can produce every objective."""
    user = tuple(passthrough(user_overrides))
    keys = {p.key for p in search.space}
    for o in user:
        key = o.partition("=")[0].lstrip("+~")
        if key in keys:
            raise UserError(f"{key} is searched by search={search.name}; drop '{o}' or remove it from search.space")
    probe = Base(search, user, results_dir, None)
    specs = [probe.point(-1, values).spec for values in [*search.corner_points(), *search.baselines]]
    for spec in specs:
        check_objectives(search.objectives, spec)
    return Base(search, user, results_dir, specs[0].budget_gb)


def tell(study, trial, record: dict, base: Base) -> None:
    """The trial's outcome from its record (how: ``space.tell_args``)."""
    from optuna.trial import TrialState

    from harness.search.space import value_of

    state, values, constraint = tell_args(base.search.objectives, record, base.budget_gb)
    trial.set_user_attr("run_id", record["run_id"])
    trial.set_user_attr("status", record["status"])
    trial.set_user_attr(CONSTRAINT_ATTR, constraint)
    stderr = {o: value_of(o, record.get("metrics") or {})[1] for o in base.search.objectives}
    trial.set_user_attr("stderr", {k: v for k, v in stderr.items() if v is not None})
    if state == "complete":
        study.tell(trial, values)
    else:
        study.tell(trial, state=TrialState.FAIL)


def retry_later(study, trial) -> None:
    """An interrupted trial: failed without a record, and queued again with the same parameters."""
    from optuna.storages import RetryFailedTrialCallback
    from optuna.trial import TrialState

    study.tell(trial, state=TrialState.FAIL)
    RetryFailedTrialCallback()(study, study._storage.get_trial(trial._trial_id))


class LocalSearch:
    """The trials of one study run here, ``parallel`` at once, until the study holds ``n_trials``."""

    def __init__(self, base: Base, study, storage, machine, parallel: int, console):
        from harness.sweep.slots import Scheduler

        self.base, self.study, self.storage, self.console = base, study, storage, console
        self.machine, self.parallel = machine, parallel
        self.scheduler = Scheduler([], machine, parallel, {})
        self.trials: dict[int, object] = {}  # trial number → optuna.Trial, for those started here
        self.running: dict[int, tuple[Child, object]] = {}
        self.points: list[Point] = []
        self.outcomes: dict[int, Outcome] = {}
        self.last_beat = 0.0
        self.waiting_said = False

    def _beat(self, force: bool = False) -> None:
        from optuna.storages import fail_stale_trials

        now = time.time()
        if force or now - self.last_beat >= self.base.search.heartbeat_s / 2:
            for child, _ in self.running.values():
                self.storage.record_heartbeat(self.trials[child.point.index]._trial_id)
            fail_stale_trials(self.study)  # trials whose runner died: failed, and queued again (study.py)
            self.last_beat = now

    def _ask(self) -> bool:
        """Start one trial if the study wants one; False when it does not (or this one stood down)."""
        from optuna.trial import TrialState

        trial = ask(self.study, self.base.search)
        self.storage.record_heartbeat(trial._trial_id)
        if is_surplus(self.study.get_trials(deepcopy=False), trial.number, self.base.search.n_trials):
            trial.set_user_attr("surplus", True)
            self.study.tell(trial, state=TrialState.FAIL)
            return False
        point = self.base.point(trial.number, self.base.search.suggest(trial))
        self.trials[trial.number] = trial
        self.points.append(point)
        rec = existing(self.base.results_dir, point.run_id)
        if rec is not None:  # measured before (a runner killed between record and tell, or the same values again)
            tell(self.study, trial, rec, self.base)
            self.outcomes[point.index] = Outcome(rec, 0.0, skipped=True)
            return True
        self.scheduler.queue.append(point)
        return True

    def _start(self, board) -> None:
        from harness.sweep.progress import progress_path
        from harness.sweep.slots import child_env

        starts = self.scheduler.launches()
        beside = len(self.running) + len(starts) - 1
        for point, slot in starts:
            env, execution = child_env(slot, self.machine, self.parallel, shared_with=beside)
            search = {"study": self.base.search.name, "trial": point.index}
            child = Child(point, self.base.search.name, env=env, execution=execution, search=search)
            self.running[point.index] = (child, slot)
            board.started(point, slot, progress_path(point.spec.results_dir, point.run_id))
        if starts:
            self._beat(force=True)

    def _poll(self, board) -> None:
        from harness.sweep.progress import progress_path, remove_progress

        for number, (child, slot) in list(self.running.items()):
            if not child.poll():
                continue
            self.scheduler.release(slot)
            del self.running[number]
            remove_progress(progress_path(child.point.spec.results_dir, child.point.run_id))
            board.ended(child.point, child.outcome)
            if child.outcome is None:
                retry_later(self.study, self.trials[number])
            else:
                self.outcomes[number] = child.outcome
                tell(self.study, self.trials[number], child.outcome.record, self.base)

    def run(self, board) -> bool:
        """Until the study is complete; True if interrupted (Ctrl-C)."""
        n = self.base.search.n_trials
        try:
            with board:
                self._beat(force=True)
                while True:
                    tally = counts(self.study.get_trials(deepcopy=False))
                    while self.scheduler.free_slots and not self.scheduler.queue and tally.counted + tally.running < n:
                        if not self._ask():
                            break
                        tally = counts(self.study.get_trials(deepcopy=False))
                    self._start(board)
                    self._poll(board)
                    self._beat()
                    if not self.running and not self.scheduler.queue:
                        tally = counts(self.study.get_trials(deepcopy=False))
                        if tally.counted >= n:
                            return False
                        if tally.counted + tally.running >= n and not self.waiting_said:
                            self.console.print(f"[dim]waiting for {tally.running} trial(s) running elsewhere "
                                               f"(a runner silent for {self.base.search.grace_s} s has its trial retried here)[/]")
                            self.waiting_said = True
                    time.sleep(POLL_S)
        except KeyboardInterrupt:
            for child, _ in self.running.values():
                child.stop(grace_s=2.0)
            for number in list(self.running):
                retry_later(self.study, self.trials[number])
                board.ended(self.running.pop(number)[0].point, None)
            return True
        except BaseException:
            for child, _ in self.running.values():
                child.stop()
            raise
