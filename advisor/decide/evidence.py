"""The one pass over measured evidence, after the rules: which method, rank and learning rate, and what forgets.

``sweep=lr_rank`` records (learning rate × rank for LoRA, learning rates for full fine-tuning)
and ``sweep=data_scaling`` records (task score against ``task.n_train`` per method) of the
recommended model are the user's own measurements. The rules' choice stands unless a measured
alternative beats it by more than two standard errors (a 4-way classifier scored on 100
answers has a stderr of ~0.03-0.05, so rank or lr differences under ~0.1 are noise there).
Without such records nothing changes: the rules and the guide decide, as before.

``apply`` is the whole pass, in order: the method (a data_scaling point at the nearest size, else
the mean task gain of every run of the model, ``for_plan``), then rank and lr
(``lr_rank``), then forgetting (``advisor.decide.forgetting``): when the recipe's own configuration was
measured to forget a probe that the other family kept at a task score not significantly lower,
the recipe switches to that configuration. One significance rule throughout: a lead of more than
``SIGNIFICANT`` standard errors. The pass edits the recipe's typed fields only; the one-line
advice is written from them afterwards (``rules.recommend``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from advisor.decide import forgetting
from advisor.decide.forgetting import ADAPTERS, SIGNIFICANT
from advisor.decide.forgetting import lr_text as _lr
from advisor.decide.hyper import hyper
from advisor.decide.recipe import Step
from advisor.decide.sizing import Option, size
from advisor.facts import best_first, default_lora_alpha
from advisor.inputs.harness_runs import number, same_model
from advisor.memory.estimate import estimate
from advisor.memory.setup import setup_for_run

SWEEPS = ("lr_rank", "data_scaling")


@dataclass
class Found:
    rows: list[dict] = field(default_factory=list)
    steps: list = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    tokens_per_s: float | None = None
    better: str | None = None  # a method measured significantly ahead of the plan's on this model


@dataclass(frozen=True)
class Point:
    run_id: str
    sweep: str
    method: str
    rank: int | None
    lr: float | None
    n_train: int | None
    score: float
    stderr: float

    def beats(self, other: "Point") -> bool:
        return self.score - other.score > SIGNIFICANT * math.hypot(self.stderr, other.stderr)

    def label(self) -> str:
        core = self.method if self.method == "full" else f"{self.method} r={self.rank}"
        return f"{core}, lr {_lr(self.lr)}"


def points(runs, arch) -> list[Point]:
    """The ok, scored lr_rank / data_scaling runs of the model with ``arch``."""
    out = []
    for r in runs:
        score = number(r.metrics.get("task_score"))
        if r.sweep in SWEEPS and r.status == "ok" and score is not None and same_model(r, arch):
            se = number(r.metrics.get("task_score_stderr")) or 0.0
            out.append(Point(r.run_id, r.sweep, r.method, r.rank if r.method != "full" else None, r.lr, r.n_train, score, se))
    return out


def _family(method: str) -> tuple[str, ...]:
    return ADAPTERS if method in ADAPTERS else (method,)


def best_lr_rank(pts: list[Point], method: str) -> tuple[Point | None, list[Point]]:
    """(the best-scoring lr_rank point of ``method``'s family, all of them)."""
    mine = [p for p in pts if p.sweep == "lr_rank" and p.method in _family(method)]
    return (max(mine, key=lambda p: p.score) if mine else None), mine


def at_size(pts: list[Point], n: int) -> tuple[int | None, dict[str, Point]]:
    """The data_scaling size nearest ``n`` (in log scale) and each method's best point there."""
    sizes = sorted({p.n_train for p in pts if p.sweep == "data_scaling" and p.n_train})
    if not sizes or n <= 0:
        return None, {}
    size = min(sizes, key=lambda s: abs(math.log(s / n)))
    best: dict[str, Point] = {}
    for p in pts:
        if p.sweep == "data_scaling" and p.n_train == size and (p.method not in best or p.score > best[p.method].score):
            best[p.method] = p
    return size, best


def apply(rec, runs, found, fits):
    """The measured-evidence pass over a feasible recipe, in place (typed fields only); returns the
    run evidence (``Found``) of the final plan. ``fits(plan)`` says whether a re-sized plan
    fits the budgets (memory and time)."""
    if not rec.feasible or rec.plan is None:
        return found
    sft = rec.plan.option.objective == "sft"
    pts = points(runs, rec.plan.model.arch) if sft else []
    said: list[str] = []
    n = rec.inputs.examples or 0
    size_n, by_method = at_size(pts, n)
    mine = rec.plan.option.method
    if size_n and by_method:
        said.append(_scaling_text(size_n, n, by_method, mine))
        rival = max(by_method.values(), key=lambda p: p.score)
        if rival.method != mine and mine in by_method and rival.beats(by_method[mine]) and _switch(rec, rival.method, fits):
            said.append(f"switched {mine} → {rival.method}: {rival.score:.2f} ± {rival.stderr:.2f} against "
                        f"{by_method[mine].score:.2f} ± {by_method[mine].stderr:.2f} (> {SIGNIFICANT:g} SE)")
        elif found.better and found.better != mine:
            said.append(f"the data_scaling points at this size decide over the gain pooled across all runs ({found.better} ahead)")
    elif sft and found.better and found.better != mine and _switch(rec, found.better, fits):
        rec.steps.append(Step("Evidence overrides", f"Switching {mine} → {found.better}: measured ahead on this model "
                              f"(> {SIGNIFICANT:g} SE), and it fits ({rec.plan.peak_gb:.1f} GB)."))  # fmt: skip
    best, tried = best_lr_rank(pts, rec.plan.option.method)
    if best is not None:
        said.append(_lr_rank_text(rec, best, tried))
    if said:
        rec.steps.append(Step("Measured", "measured on your data: " + "; ".join(said) + "."))
    if sft:
        _forgetting(rec, runs, fits)
    if rec.plan.option.method != mine:
        found = for_plan(runs, rec.plan, rec.inputs.gpu)
    rec.evidence = found.rows
    _annotate(rec, pts)
    return found


def _forgetting(rec, runs, fits) -> None:
    """Read forgetting from matching records; switch away from a configuration measured to forget."""
    measured = forgetting.read(runs, rec.plan.model.name, rec.plan.model.arch, rec.inputs.capability)
    rec.forgetting = measured
    if measured is None:
        return
    text = "measured on your records (general probes, base → tuned): " + measured.text()
    mine = measured.at(rec.plan.option.method, rec.lr)
    keeper = mine and measured.keeper(mine)
    n = rec.inputs.examples or 0
    if mine and keeper and not _worse(keeper, mine, n):
        old, lr = mine.label(), rec.lr
        if _switch(rec, keeper.method, fits, keeper.rank):
            rec.lr = keeper.lr or rec.lr
            if keeper.rank and rec.rank:
                rec.rank, rec.alpha = keeper.rank, default_lora_alpha(keeper.rank)
            lost = [p for p in mine.probes if mine.forgot(p)]
            rec.steps.append(Step("Evidence overrides", f"Switching to {keeper.label()}: measured, {old} "
                                  + " and ".join(mine.says(p) for p in lost) + f"; {keeper.label()} "
                                  + " and ".join(keeper.says(p) for p in lost)
                                  + f", at a task score not significantly lower ({_score_text(keeper, mine, n)} against {_score_text(mine, keeper, n)})."))  # fmt: skip
            text += (f". Your recipe's lr {_lr(lr)} is where {old} forgot: switched to {keeper.label()} (its measured lr, "
                     "in place of the guide's)")  # fmt: skip
    elif mine is None and rec.lr and rec.plan.option.method in ADAPTERS + ("full",) and not measured.near(rec.plan.option.method, rec.lr):
        text += f". The recipe's own lr ({_lr(rec.lr)}) was not measured here: score the probes before and after"
    rec.steps.append(Step("Measured forgetting", text + "."))


def _worse(a, b, n: int) -> bool:
    """a's task score significantly below b's, at the size both measured nearest ``n`` (unknown: not worse)."""
    common = a.sizes() & b.sizes()
    sa, sb = a.score(n, common), b.score(n, common)
    return bool(sa and sb and sb[0] - sa[0] > SIGNIFICANT * math.hypot(sa[1], sb[1]))


def _score_text(c, other, n: int) -> str:
    s = c.score(n, c.sizes() & other.sizes())
    return "unscored" if s is None else f"{s[0]:.2f} ± {s[1]:.2f}"


def _annotate(rec, pts) -> None:
    """Evidence entries of the sweep runs carry their sweep and what it measured."""
    listed = {row.get("run_id"): row for row in rec.evidence}
    for p in pts:
        row = listed.get(p.run_id)
        if row is None:
            rec.evidence.append(row := _row(p))
        row.update(sweep=p.sweep, lr=p.lr, n_train=p.n_train, task_score=p.score, task_score_stderr=p.stderr)


def _scaling_text(size: int, n: int, by_method: dict[str, Point], mine: str) -> str:
    where = f"at {size:,} examples" + ("" if size == n else f" (the data_scaling size nearest your {n:,})")
    full = by_method.get("full")
    parts = []
    for m, p in sorted(by_method.items(), key=lambda kv: -kv[1].score):
        rel = f", {p.score / full.score:.2f} of full fine-tuning's score" if full and m != "full" and full.score > 0 else ""
        parts.append(f"{p.label()} scores {p.score:.2f} ± {p.stderr:.2f}{rel}")
    return f"{where}: " + "; ".join(parts)


def _lr_rank_text(rec, best: Point, tried: list[Point]) -> str:
    """Adopt the best measured (rank, lr) when it beats the point nearest the rules' choice by > 2 SE."""
    rule_rank, rule_lr = rec.rank, rec.lr
    near = min(tried, key=lambda p: (abs(math.log((p.rank or 1) / (rule_rank or 1))) if rule_rank else 0)
               + abs(math.log((p.lr or 1) / (rule_lr or 1))))  # fmt: skip
    rule = f"r={rule_rank}, lr {_lr(rule_lr)}" if rule_rank else f"lr {_lr(rule_lr)}"
    text = f"best of {len(tried)} lr_rank points: {best.label()} scores {best.score:.2f} ± {best.stderr:.2f}"
    if best is near or not best.beats(near):
        return text + f"; the rules' {rule} (nearest measured: {near.label()}, {near.score:.2f}) is within {SIGNIFICANT:g} SE, kept"
    if best.rank and rec.rank:
        rec.rank, rec.alpha = best.rank, default_lora_alpha(best.rank)  # the sweeps keep alpha = 2r
    rec.lr = best.lr
    return text + f", ahead of {near.label()} ({near.score:.2f} ± {near.stderr:.2f}): using {best.label()} instead of the rules' {rule}"


def _switch(rec, method: str, fits, rank: int | None = None) -> bool:
    """Re-size the recipe for ``method`` (its hyperparameters from the guide); False, and no change,
    when it does not fit the budgets."""
    old = rec.plan
    opt = Option(method, old.option.gpus, old.option.objective, rank or old.option.rank)
    new = size(old.model, opt, rec.inputs.gpu, rec.inputs.seq_len, old.micro_batch * old.grad_accum, rec.inputs.stack)
    if not new.fits or not fits(new):
        return False
    opt = new.option
    rec.plan, rec.method = new, opt.top_method
    rec.inner = None if opt.top_method == opt.method else opt.method
    rec.steps.append(hyper(rec, rec.inputs.examples or 0, opt.objective, opt.method))
    return True

def _row(p: Point) -> dict:
    """An evidence entry shaped like advisor.inputs.harness_runs's (for a run it did not list)."""
    return {
        "run_id": p.run_id, "status": "ok", "method": p.method, "rank": p.rank, "task": None, "device": None,
        "batch_size": None, "max_seq_len": None, "measured_peak_gb": None, "memory_kind": None, "estimated_peak_gb": None,
        "tokens_per_s": None, "task_gain": None,
    }  # fmt: skip


def for_plan(runs, plan, gpu) -> Found:
    """Runs of the same model: memory measured vs estimated, speed, task gains by method."""
    found = Found()
    if not runs:
        return found
    same = [r for r in runs if same_model(r, plan.model.arch)]
    if not same:
        found.steps.append(Step("Evidence", f"{len(runs)} harness run(s) in the results, none of {plan.model.name}: the "
                                "recipe rests on the guide and the memory model alone."))  # fmt: skip
        return found
    for r in same:
        setup, why = setup_for_run(r)
        est = None
        if setup is not None:
            b = estimate(setup)
            est = b.cpu_resident_gb if r.memory_kind == "cpu_rss_delta" else b.peak_allocated_gb
        found.rows.append({
            "run_id": r.run_id, "status": r.status, "method": r.method, "rank": r.rank if r.method != "full" else None, "task": r.task,
            "device": r.device_name or r.device, "batch_size": r.batch_size, "max_seq_len": r.max_seq_len,
            "measured_peak_gb": r.peak_memory_gb, "memory_kind": r.memory_kind,
            "estimated_peak_gb": round(est, 3) if est is not None else None,
            "tokens_per_s": r.tokens_per_s, "task_gain": r.task_gain,
        })  # fmt: skip
    method = plan.option.method
    mine = [r for r in same if r.method == method and r.status == "ok"]
    ooms = [r for r in same if r.method == method and r.status == "oom" and r.device == "cuda"
            and r.batch_size <= plan.micro_batch and r.max_seq_len <= plan.setup.seq_len
            and (r.budget_gb is None or r.budget_gb <= gpu.per_gpu_gb)]  # fmt: skip
    if ooms:
        found.warnings.append(f"Measured: {len(ooms)} {method} run(s) of this model ran out of memory at a smaller or equal "
                              f"batch/length and budget ({', '.join(r.run_id for r in ooms[:3])}); lower the micro-batch first.")  # fmt: skip
    fast = [r.tokens_per_s for r in mine if r.tokens_per_s and r.device == "cuda" and gpu.name and gpu.name.lower() in r.device_name.lower()]
    if fast:
        found.tokens_per_s = sorted(fast)[len(fast) // 2]
    gains: dict[str, list[tuple[float, float]]] = {}  # method → [(gain, stderr)]
    for r in same:
        se = number(r.metrics.get("task_score_stderr"))
        if r.status == "ok" and r.task_gain is not None:
            gains.setdefault(r.method, []).append((r.task_gain, se or 0.0))
    text = f"{len(same)} harness run(s) of this model ({sum(r.status == 'ok' for r in same)} ok)."
    if gains:
        mean = {m: sum(g for g, _ in v) / len(v) for m, v in gains.items()}
        ranked = best_first("task_score", mean)
        text += " Task-score gain by method: " + ", ".join(f"{m} {mean[m]:+.3f} (n={len(gains[m])})" for m in ranked)
        best = ranked[0]
        if best != method and method in gains:
            # standard error of a mean of n runs ≈ mean per-run stderr / sqrt(n); the one rule: > SIGNIFICANT SE
            se = lambda m: (sum(e for _, e in gains[m]) / len(gains[m])) / math.sqrt(len(gains[m]))  # noqa: E731
            diff, se_diff = mean[best] - mean[method], math.hypot(se(best), se(method))
            if se_diff > 0 and diff > SIGNIFICANT * se_diff:
                found.better = best
                text += f"; {best} beats {method} by {diff:+.3f} (> {SIGNIFICANT:g} SE = {SIGNIFICANT * se_diff:.3f})."
            else:
                text += f"; {best} is ahead by {diff:+.3f}, within {SIGNIFICANT:g} SE ({SIGNIFICANT * se_diff:.3f}): not enough to override."
    found.steps.append(Step("Evidence", text))
    return found
