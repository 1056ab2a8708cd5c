"""A search preset (``sweeps/search/<name>.yaml``): its space, its objectives, and how a trial's
record becomes the objective values Optuna is told.

    search:
      name: smoke
      about: "…"
      n_trials: 6              # the study's total, whoever runs it and however often it is restarted
      seed: 0                  # the sampler's seed: the same preset on a fresh study proposes the same trials
      sampler: auto            # auto: TPE for one objective, NSGA-II for several | tpe | nsga2 | random
      storage: null            # null: sqlite:///<results_dir>/search.db; any SQLAlchemy URL (postgresql://…)
      heartbeat_s: 10          # a running trial's runner proves it is alive this often …
      grace_s: 30              # … and a trial silent this long is failed and retried with its params
      workers: null            # launcher=slurm: array tasks (null: launcher.array_parallelism)
      space:                   # override key → distribution
        method: [lora, full]                          # a list: categorical
        train.lr: {low: 1.0e-5, high: 1.0e-2, log: true}  # floats: uniform, or log-uniform
        train.max_steps: {low: 8, high: 32, step: 8}  # integers
        method.r: {choices: [4, 16], when: {method: [lora, dora]}}  # only when method is lora or dora
      objectives: [task_score, "forgetting:general_ppl", peak_memory_gb]
      baselines: [{method: lora, train.lr: 1.0e-3, …}]  # enqueued first: known recipes measured in the same study
      overrides: [train.save=none]  # every trial, before the command line's own overrides

Objectives (the direction is declared here, once, as lm-eval declares a metric's):
``task_score`` ↑; ``forgetting`` ↓ (probes whose drop is significant, of ``eval.probes``);
``forgetting:<probe>`` ↓ (that probe's drop, > 0 = the tuned model is worse, in the probe's unit);
``peak_memory_gb`` ↓; ``wall_s`` ↓; ``tokens_per_s`` ↑.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from harness.errors import UserError, did_you_mean, reject_unknown_keys

# objective → (direction, what it is); forgetting:<probe> is forgetting's per-probe form.
OBJECTIVES = {
    "task_score": ("maximize", "held-out task score"),
    "forgetting": ("minimize", "probes with a significant drop"),
    "peak_memory_gb": ("minimize", "peak memory (GB, the record's memory_kind)"),
    "wall_s": ("minimize", "wall time of the run (s)"),
    "tokens_per_s": ("maximize", "training throughput"),
}
SAMPLERS = ("auto", "tpe", "nsga2", "random")
INFEASIBLE = ("oom", "timeout")  # statuses that are a constraint violated, not a bug


@dataclass(frozen=True)
class Param:
    key: str  # the override key, and the Optuna parameter name
    choices: tuple = ()
    low: float | int | None = None
    high: float | int | None = None
    step: int | None = None
    log: bool = False
    when: Mapping[str, tuple] = field(default_factory=dict)

    @classmethod
    def parse(cls, key: str, raw: Any, preset: str) -> "Param":
        where = f"search {preset}: space.{key}"
        if isinstance(raw, (list, tuple)):
            raw = {"choices": list(raw)}
        if not isinstance(raw, Mapping):
            raise UserError(f"{where} must be a list of choices or {{low, high[, log, step]}} (got {raw!r})")
        extra = set(raw) - {"choices", "low", "high", "step", "log", "when"}
        if extra:
            bad = sorted(extra)[0]
            raise UserError(f"{where}: unknown field '{bad}'{did_you_mean(bad, ['choices', 'low', 'high', 'step', 'log', 'when'])}")
        when = {k: tuple(v if isinstance(v, (list, tuple)) else [v]) for k, v in (raw.get("when") or {}).items()}
        if "choices" in raw:
            if not raw["choices"] or "low" in raw or "high" in raw:
                raise UserError(f"{where}: give either a non-empty list of choices or low/high")
            return cls(key, choices=tuple(raw["choices"]), when=when)
        low, high = raw.get("low"), raw.get("high")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high)) or low >= high:
            raise UserError(f"{where}: low and high must be numbers with low < high (got {low!r}, {high!r})")
        log = bool(raw.get("log", False))
        if log and low <= 0:
            raise UserError(f"{where}: a log-uniform range needs low > 0 (got {low!r})")
        step = raw.get("step")
        return cls(key, low=low, high=high, step=step, log=log, when=when)

    @property
    def is_int(self) -> bool:
        return not self.choices and isinstance(self.low, int) and isinstance(self.high, int)

    def applies(self, chosen: Mapping[str, Any]) -> bool:
        return all(chosen.get(k) in v for k, v in self.when.items())

    def suggest(self, trial) -> Any:
        if self.choices:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.is_int:
            return trial.suggest_int(self.key, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.log, step=self.step)

    def corners(self) -> list:
        """Values that together exercise the range: every choice, or both ends."""
        return list(self.choices) if self.choices else [self.low, self.high]


@dataclass(frozen=True)
class SearchSpec:
    name: str
    about: str
    n_trials: int
    seed: int | None
    sampler: str
    storage: str | None
    heartbeat_s: int
    grace_s: int
    workers: int | None
    space: tuple[Param, ...]
    objectives: tuple[str, ...]
    overrides: tuple[str, ...]
    baselines: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SearchSpec":
        reject_unknown_keys("search", data, set(cls.__dataclass_fields__))
        name = str(data.get("name") or "")
        if not name:
            raise UserError("search.name is required")
        for key in ("n_trials", "heartbeat_s", "grace_s"):
            v = data.get(key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise UserError(f"search.{key} must be a positive integer (got {v!r})")
        if data.get("grace_s") <= data.get("heartbeat_s"):
            raise UserError(f"search.grace_s ({data['grace_s']}) must exceed search.heartbeat_s ({data['heartbeat_s']})")
        sampler = data.get("sampler") or "auto"
        if sampler not in SAMPLERS:
            from harness.errors import unknown

            raise unknown("search.sampler", sampler, SAMPLERS)
        space = tuple(Param.parse(str(k), v, name) for k, v in (data.get("space") or {}).items())
        if not space:
            raise UserError(f"search {name}: search.space declares no parameter")
        objectives = tuple(str(o) for o in data.get("objectives") or ())
        if not objectives:
            raise UserError(f"search {name}: search.objectives is empty (e.g. [task_score, forgetting, peak_memory_gb])")
        for o in objectives:
            direction(o)
        if len(set(objectives)) != len(objectives):
            raise UserError(f"search {name}: an objective is listed twice in {list(objectives)}")
        keys = [p.key for p in space]
        for p in space:
            for k in p.when:
                if k not in keys[: keys.index(p.key)]:
                    raise UserError(f"search {name}: space.{p.key} depends on '{k}', which must be a parameter declared before it")
        workers = data.get("workers")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise UserError(f"search.workers must be a positive integer or null (got {workers!r})")
        baselines = data.get("baselines") or ()
        if not isinstance(baselines, (list, tuple)) or not all(isinstance(b, Mapping) for b in baselines):
            raise UserError(f"search {name}: search.baselines must be a list of {{key: value}} dicts")
        for b in baselines:
            extra = set(b) - set(keys)
            if extra:
                bad = sorted(extra)[0]
                raise UserError(f"search {name}: baseline key '{bad}' is not a parameter of search.space{did_you_mean(bad, keys)}")
        seed = data.get("seed")
        return cls(name=name, about=str(data.get("about") or ""), n_trials=data["n_trials"], seed=seed, sampler=sampler,
                   storage=data.get("storage") or None, heartbeat_s=data["heartbeat_s"], grace_s=data["grace_s"],
                   workers=workers, space=space, objectives=objectives,
                   overrides=tuple(str(o) for o in data.get("overrides") or ()), baselines=tuple(dict(b) for b in baselines))

    @property
    def directions(self) -> list[str]:
        return [direction(o) for o in self.objectives]

    def suggest(self, trial) -> dict[str, Any]:
        """The trial's values, in declaration order; a conditional parameter only where it applies."""
        chosen: dict[str, Any] = {}
        for p in self.space:
            if p.applies(chosen):
                chosen[p.key] = p.suggest(trial)
        return chosen

    def corner_points(self) -> list[dict[str, Any]]:
        """A few assignments that touch every choice and both ends of every range (for validation)."""
        width = max(len(p.corners()) for p in self.space)
        out = []
        for i in range(width):
            chosen: dict[str, Any] = {}
            for p in self.space:
                if p.applies(chosen):
                    c = p.corners()
                    chosen[p.key] = c[i % len(c)]
            out.append(chosen)
        return out


def describe(objective: str) -> str:
    """What an objective measures, for people."""
    base, _, probe = objective.partition(":")
    if probe:
        return f"{probe}'s drop (tuned worse than base, in its unit; > 0 = forgot)"
    return OBJECTIVES[base][1] if base in OBJECTIVES else objective


def direction(objective: str) -> str:
    base, _, probe = objective.partition(":")
    if base not in OBJECTIVES or (probe and base != "forgetting"):
        raise UserError(f"unknown objective '{objective}'{did_you_mean(base, OBJECTIVES)}; "
                        f"objectives: {', '.join(OBJECTIVES)}, forgetting:<probe>")
    return OBJECTIVES[base][0]


def check_objectives(objectives: tuple[str, ...], spec) -> None:
    """Fail before any trial when a run could never produce an objective (no probes, no score)."""
    for o in objectives:
        base, _, probe = o.partition(":")
        scored = spec.eval.enabled and spec.model.scored
        if base in ("task_score", "forgetting") and not scored:
            raise UserError(f"objective {o} needs a scored run, but model={spec.model.name} is cost-only or eval.enabled=false")
        if base == "forgetting" and not spec.eval.probes:
            raise UserError(f"objective {o} needs forgetting probes: set eval.probes (e.g. [general_mc,general_ppl])")
        if probe and probe not in spec.eval.probes:
            raise UserError(f"objective {o}: probe '{probe}' is not in eval.probes={list(spec.eval.probes)}")


def value_of(objective: str, metrics: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """(value, stderr) of one objective in a record's metrics; value None when the record lacks it."""
    base, _, probe = objective.partition(":")
    forgetting = metrics.get("forgetting") or {}
    if base == "forgetting" and probe:
        entry = forgetting.get(probe)
        if not entry:
            return None, None
        from harness.forgetting import drop

        return _finite(drop(entry)), _finite(entry.get("stderr"))
    if base == "forgetting":
        return (float(sum(bool(e.get("significant")) for e in forgetting.values())) if forgetting else None), None
    if base == "task_score":
        return _finite(metrics.get("task_score")), _finite(metrics.get("task_score_stderr"))
    return _finite(metrics.get(base)), None


def _finite(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def tell_args(objectives: tuple[str, ...], record: Mapping[str, Any], budget_gb: float | None) -> tuple[str, list[float] | None, float]:
    """How a trial's record is told to Optuna: (state, values, constraint); constraint > 0 = infeasible.

    ok → COMPLETE, feasible unless the recorded peak passed budget_gb (the watchdog can miss a
    spike between samples); oom/timeout → COMPLETE at the worst value of every objective and
    infeasible, so the samplers learn to avoid that region instead of crashing or forgetting it;
    error (a bug, not a property of the recipe) → FAIL.
    """
    status = record.get("status")
    metrics = record.get("metrics") or {}
    worst = [(-math.inf if direction(o) == "maximize" else math.inf) for o in objectives]
    if status in INFEASIBLE:
        return "complete", worst, 1.0
    if status != "ok":
        return "fail", None, 0.0
    values = [value_of(o, metrics)[0] for o in objectives]
    if any(v is None for v in values):
        return "fail", None, 0.0
    peak = metrics.get("peak_memory_gb")
    constraint = float(peak - budget_gb) if budget_gb and isinstance(peak, (int, float)) else 0.0
    return "complete", values, constraint
