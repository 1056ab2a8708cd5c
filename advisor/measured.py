"""Measured answers from the harness's own sweeps correct the rules: which method, rank and learning rate.

``sweep=lr_rank`` records (learning rate × rank for LoRA, learning rates for full fine-tuning)
and ``sweep=data_scaling`` records (task score against ``task.n_train`` per method) of the
recommended model are the user's own measurements. The rules' choice stands unless a measured
alternative beats it by more than two standard errors (a 4-way classifier scored on 100
answers has a stderr of ~0.03-0.05, so rank or lr differences under ~0.1 are noise there).
Without such records nothing changes: the rules and the guide decide, as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from advisor.evidence import _num, _same_model

SWEEPS = ("lr_rank", "data_scaling")
ADAPTERS = ("lora", "qlora", "dora")  # one rank/lr family: same adapters, base precision differs
SIGNIFICANT = 2.0  # standard errors a measured alternative must lead by to override a rule


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
        score = _num(r.metrics.get("task_score"))
        if r.sweep in SWEEPS and r.status == "ok" and score is not None and _same_model(r, arch):
            se = _num(r.metrics.get("task_score_stderr")) or 0.0
            out.append(Point(r.run_id, r.sweep, r.method, r.rank if r.method != "full" else None, r.lr, r.n_train, score, se))
    return out


def _lr(lr: float | None) -> str:
    return "?" if lr is None else f"{lr:.0e}".replace("e-0", "e-")  # 3e-3, 1e-4


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


def correct(rec, runs) -> None:
    """Apply measured corrections to a recipe in place: method, then rank and lr; say so in its steps."""
    from advisor.rules import Step

    if not rec.feasible or rec.plan is None or rec.plan.option.objective != "sft":
        return
    pts = points(runs, rec.plan.model.arch)
    if not pts:
        return
    said: list[str] = []
    n = rec.inputs.examples or 0
    size, by_method = at_size(pts, n)
    mine = rec.plan.option.method
    if size and by_method:
        said.append(_scaling_text(size, n, by_method, mine))
        rival = max(by_method.values(), key=lambda p: p.score)
        if rival.method != mine and mine in by_method and rival.beats(by_method[mine]) and _switch(rec, rival.method):
            said.append(f"switched {mine} → {rival.method}: {rival.score:.2f} ± {rival.stderr:.2f} against "
                        f"{by_method[mine].score:.2f} ± {by_method[mine].stderr:.2f} (> {SIGNIFICANT:g} SE)")
    best, tried = best_lr_rank(pts, rec.plan.option.method)
    if best is not None:
        said.append(_lr_rank_text(rec, best, tried))
    if said:
        rec.steps.append(Step("Measured", "measured on your data: " + "; ".join(said) + "."))
        listed = {row.get("run_id"): row for row in rec.evidence}
        for p in pts:  # evidence entries of these runs carry their sweep and what it measured
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
        rec.rank, rec.alpha = best.rank, 2 * best.rank  # the sweeps keep alpha = 2r
    rec.lr = best.lr
    rec.advice = rec.advice.split(", r=")[0] + (f", r={rec.rank}" if rec.rank else "")
    return text + f", ahead of {near.label()} ({near.score:.2f} ± {near.stderr:.2f}): using {best.label()} instead of the rules' {rule}"


def _switch(rec, method: str) -> bool:
    """Re-size the recipe for ``method``; False (and no change) when it does not fit the budget."""
    from advisor.plan import Option, size, time_per_epoch
    from advisor.rules import _hyper

    old = rec.plan
    target_batch = old.micro_batch * old.grad_accum
    new = size(old.model, Option(method, old.option.gpus, old.option.objective, old.option.rank), rec.inputs.gpu,
               rec.inputs.seq_len, target_batch, rec.inputs.stack)  # fmt: skip
    if not new.fits:
        return False
    opt = new.option
    rec.plan, rec.method = new, opt.top_method
    rec.inner = None if opt.top_method == opt.method else opt.method
    rec.rank = rec.alpha = None
    rec.steps.append(_hyper(rec, rec.inputs.examples or 0, opt.objective, opt.method))
    rec.time_per_epoch_s, rec.time_basis = time_per_epoch(new, rec.inputs.examples or 0, rec.inputs.gpu)
    rec.advice = f"{opt.label} on {new.model.name}" + (f", r={rec.rank}" if rec.rank else "")
    return True


def _row(p: Point) -> dict:
    """An evidence entry shaped like advisor.evidence's (for a run it did not list)."""
    return {
        "run_id": p.run_id, "status": "ok", "method": p.method, "rank": p.rank, "task": None, "device": None,
        "batch_size": None, "max_seq_len": None, "measured_peak_gb": None, "memory_kind": None, "estimated_peak_gb": None,
        "tokens_per_s": None, "task_gain": None,
    }  # fmt: skip
