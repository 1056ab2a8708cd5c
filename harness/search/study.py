"""The study database: Optuna's RDB storage (SQLite under results_dir by default, or any
SQLAlchemy URL shared by many workers), the sampler a preset asks for, and what the study holds.

Who ran a trial is never remembered in a runner's memory: the database is the one truth, so a
second worker, a Slurm array task or a re-run after ``kill -9`` all read the same state.

- A running trial's runner records a heartbeat every ``heartbeat_s``; a trial silent for
  ``grace_s`` (its runner was killed) is failed by the next runner to look, and
  ``RetryFailedTrialCallback`` queues a copy with the same parameters, which the next ``ask``
  takes first: nothing completed is re-run, nothing killed is lost.
- A trial counts towards ``n_trials`` once it has an outcome from a record (COMPLETE, or FAIL
  with a record of status ``error``), or while it runs or waits; a trial failed for lack of a
  heartbeat, interrupted, or asked beyond the total does not count.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UserError
from harness.search.space import SearchSpec

CONSTRAINT_ATTR = "constraint"  # user attr: > 0 = infeasible (budget_gb or timeout_s broken)


def storage_url(search: SearchSpec, results_dir: Path) -> str:
    return search.storage or f"sqlite:///{(results_dir / 'search.db').resolve()}"


def open_storage(url: str, *, heartbeat_s: int, grace_s: int):
    """The study database, checked now: an unreachable or unusable one is a UserError, before any training."""
    import optuna
    from optuna.storages import RDBStorage, RetryFailedTrialCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # SQLite: writers queue on the file's lock instead of failing at once (two local workers).
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    if url.startswith("sqlite:///"):
        folder = Path(url.removeprefix("sqlite:///")).parent
        if not folder.is_dir():
            raise UserError(f"search.storage={url}: folder {folder} does not exist")
    try:
        storage = RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=heartbeat_s, grace_period=grace_s,
                             heartbeat_stale_trial_callback=RetryFailedTrialCallback())
        if url.startswith("sqlite") and ":memory:" not in url:  # in memory: one connection, one process
            serialize_sqlite(storage.engine)
        storage.get_all_studies()  # a round trip: RDBStorage connects lazily on some engines
    except ImportError as e:
        raise UserError(f"search.storage={_safe(url)}: the database driver is not installed ({e.name or e})") from None
    except Exception as e:  # sqlalchemy's OperationalError, ArgumentError, …: one line, no traceback
        msg = str(getattr(e, "orig", None) or e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"search.storage={_safe(url)} cannot be used: {msg[:200]}") from None
    return storage


def serialize_sqlite(engine) -> None:
    """Each SQLite transaction takes the write lock when it begins (``BEGIN IMMEDIATE``).

    Optuna reads a trial ``FOR UPDATE`` before it changes its state, which SQLite ignores, and
    Python's sqlite3 opens a transaction only at the first write: two workers could both read a
    stale trial as RUNNING and both fail it, and each would queue its own retry (the same trial run
    twice), or both pop the same WAITING trial. With the lock taken at BEGIN the read and the write
    are one step; the other worker waits (``timeout``) and then sees the trial already changed.
    SQLAlchemy's recipe for pysqlite ("Serializable isolation"); other databases honour FOR UPDATE.
    """
    from sqlalchemy import event

    def on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # pysqlite emits no BEGIN of its own

    def on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)
    engine.dispose()  # connections opened while Optuna set up the schema predate the hook


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    head, sep, tail = url.partition("://")
    if "@" in tail and ":" in tail.split("@", 1)[0]:
        user = tail.split("@", 1)[0].split(":", 1)[0]
        return f"{head}{sep}{user}:***@{tail.split('@', 1)[1]}"
    return url


def constraints(trial) -> list[float]:
    """constraints_func for the samplers: the value stored with the trial (no value = feasible)."""
    return [float(trial.user_attrs.get(CONSTRAINT_ATTR, 0.0))]


def make_sampler(search: SearchSpec, seed: int | None = None):
    import optuna

    kind = search.sampler
    if kind == "auto":
        kind = "tpe" if len(search.objectives) == 1 else "nsga2"
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constraints_func=constraints)
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, constraints_func=constraints)
    return optuna.samplers.RandomSampler(seed=seed)


def ask(study, search: SearchSpec):
    """A new trial, its sampler seeded with ``search.seed + trial number``.

    A sampler seeded once per process would replay its first proposals in every re-run (the same
    parameters, hence the same run_id) and give two workers started together the same ones. The
    samplers keep nothing but their random state (the trials are in the database), and Optuna
    samples a trial's parameters at its first ``suggest_*``, so reseeding right after ``ask``
    makes each proposal a function of the seed, the trial number and the study's history:
    reproducible from a fresh study, new in a resumed one, distinct between workers.
    """
    trial = study.ask()
    study.sampler = make_sampler(search, None if search.seed is None else search.seed + trial.number)
    return trial


def open_study(search: SearchSpec, storage):
    """The preset's study, created on first use; a study of that name with other objectives is refused."""
    import optuna

    study = optuna.create_study(storage=storage, study_name=search.name, sampler=make_sampler(search, search.seed),
                                directions=search.directions, load_if_exists=True)
    have = [d.name.lower() for d in study.directions]
    if have != search.directions:
        raise UserError(f"study '{search.name}' in this storage has directions {have}, the preset {search.directions}: "
                        f"use another search.name or storage for other objectives")
    stored = study.user_attrs.get("objectives")
    if stored is None:  # a new study: its known recipes go first, measured like any other trial
        study.set_user_attr("objectives", list(search.objectives))
        for b in search.baselines:
            study.enqueue_trial(dict(b), user_attrs={"baseline": True}, skip_if_exists=True)
    elif list(stored) != list(search.objectives):
        raise UserError(f"study '{search.name}' was run with objectives {stored}, the preset says {list(search.objectives)}")
    return study


@dataclass
class Tally:
    counted: int  # with an outcome from a record
    running: int
    waiting: int


def counts(trials) -> Tally:
    from optuna.trial import TrialState

    # A FAIL counts only when its record says error (a bug there, not worth re-running); a FAIL for
    # silence keeps no outcome, even if it was killed between naming its record and the tell.
    done = sum(1 for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
               or (t.state == TrialState.FAIL and t.user_attrs.get("status") == "error"))
    return Tally(done, sum(t.state == TrialState.RUNNING for t in trials), sum(t.state == TrialState.WAITING for t in trials))


def is_surplus(trials, number: int, n_trials: int) -> bool:
    """Two workers asking at once may both pass the count: the later-numbered one stands down."""
    from optuna.trial import TrialState

    before = [t for t in trials if t.number < number]
    live = counts(before)
    return live.counted + live.running + sum(t.state == TrialState.WAITING for t in before) >= n_trials


def feasible(trial) -> bool:
    return constraints(trial)[0] <= 0 and all(v is not None and math.isfinite(v) for v in (trial.values or [None]))
