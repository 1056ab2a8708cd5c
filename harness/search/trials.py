"""A finished or running study read back for the report: its trials joined with their records.

The study database is found under the results directory (``search.db``, where ``harness
search`` writes it by default); each trial names its record by ``user_attrs['run_id']``, and the
record gives every objective's stderr and every probe's drop (the study keeps only the values).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from harness.record import read_record


@dataclass
class TrialRow:
    number: int
    state: str  # complete | fail | running | waiting | pruned
    params: dict
    values: list[float] | None
    feasible: bool
    status: str | None  # the record's status
    run_id: str | None
    record_path: Path | None
    record: dict = field(default_factory=dict)
    front: bool = False


@dataclass
class StudyView:
    name: str
    storage: str
    directions: list[str]
    objectives: list[str]
    trials: list[TrialRow]
    study: object  # the optuna Study

    @property
    def front(self) -> list[TrialRow]:
        return [t for t in self.trials if t.front]


def databases(results_dir: Path) -> list[Path]:
    return sorted(p for p in Path(results_dir).rglob("search.db") if p.is_file())


def search_records(results_dir: Path) -> dict[str, tuple[Path, dict]]:
    """run_id → (path, record) for every readable record under the folder made by a search trial."""
    out = {}
    for path in Path(results_dir).rglob("*.json"):
        try:
            rec = read_record(path)
        except ValueError:
            continue
        if rec.get("search"):
            out[rec["run_id"]] = (path, rec)
    return out


def load_studies(results_dir: Path) -> tuple[list[StudyView], list[str]]:
    """Every study in every ``search.db`` under the folder, and one note per database that could not be read."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    records = search_records(results_dir)
    views, notes = [], []
    for db in databases(results_dir):
        url = f"sqlite:///{db.resolve()}"
        try:
            storage = optuna.storages.RDBStorage(url, skip_table_creation=True)
            names = optuna.get_all_study_names(storage)
        except Exception as e:  # noqa: BLE001 — a broken database must not sink the rest of the report
            notes.append(f"{db}: not a readable study database ({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})")
            continue
        for name in names:
            study = optuna.load_study(study_name=name, storage=storage)
            views.append(view(study, str(db), records))
    return views, notes


def view(study, storage: str, records: dict[str, tuple[Path, dict]]) -> StudyView:
    from harness.search.study import feasible

    directions = [d.name.lower() for d in study.directions]
    objectives = list(study.user_attrs.get("objectives") or [f"objective {i}" for i in range(len(directions))])
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("surplus"):
            continue
        run_id = t.user_attrs.get("run_id")
        path, rec = records.get(run_id, (None, {})) if run_id else (None, {})
        rows.append(TrialRow(t.number, t.state.name.lower(), dict(t.params), list(t.values) if t.values else None,
                             t.state.name == "COMPLETE" and feasible(t), t.user_attrs.get("status"), run_id, path, rec))
    mark_front(rows, directions)
    return StudyView(study.study_name, storage, directions, objectives, rows, study)


def mark_front(rows: list[TrialRow], directions: list[str]) -> None:
    """The feasible trials no other feasible trial dominates (better or equal on every objective,
    better on one). Ties (equal on every objective) all stay on the front."""
    sign = [1.0 if d == "maximize" else -1.0 for d in directions]
    cands = [r for r in rows if r.feasible and r.values and all(math.isfinite(v) for v in r.values)]
    vecs = {r.number: [s * v for s, v in zip(sign, r.values)] for r in cands}
    for r in cands:
        a = vecs[r.number]
        r.front = not any(all(x >= y for x, y in zip(vecs[o.number], a)) and any(x > y for x, y in zip(vecs[o.number], a))
                          for o in cands if o is not r)


def importances(sv: StudyView) -> tuple[dict[str, dict[str, float]], str | None]:
    """objective → {parameter: importance} from Optuna's own evaluator (``get_param_importances``
    with its default evaluator, PED-ANOVA in Optuna 5: which parameters matter for reaching the
    objective's good values), over the feasible complete trials; and why not, when it cannot be
    computed. Importances are normalised to sum to 1 per objective."""
    import optuna

    usable = [t for t in sv.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
              if t.values and all(math.isfinite(v) for v in t.values) and not t.user_attrs.get("constraint", 0) > 0]
    if len(usable) < 3:
        return {}, f"{len(usable)} feasible complete trial(s): importances need at least 3"
    copy = optuna.create_study(directions=sv.directions)
    copy.add_trials(usable)
    out = {}
    try:
        with warnings.catch_warnings():  # "few trials in a regime": true of every small study, said once in the report
            warnings.simplefilter("ignore")
            for i, name in enumerate(sv.objectives):
                sign = -1.0 if sv.directions[i] == "maximize" else 1.0  # the evaluator ranks what makes the target low
                out[name] = optuna.importance.get_param_importances(copy, target=lambda t, i=i, s=sign: s * t.values[i])
    except (RuntimeError, ValueError) as e:
        return out, f"Optuna could not evaluate importances: {str(e).splitlines()[0][:200]}"
    return out, None
