"""What fits both budgets, memory and time, and what would when nothing does.

A plan fits memory when the high end of its memory estimate fits the GPU (``plan.size``). It fits
time when the whole run (the guide's epochs over every example, R-HP-EPOCHS) finishes within
``--hours`` at the high end of the time estimate's range.

Model size is traded against time, not taken as "the largest that fits in memory": the rules try
models largest first and keep the first whose whole run fits the clock, so a tighter time budget
moves to a smaller model before it cuts data or epochs. That order follows the evidence that task
score grows steeply with the number of examples (tunebench's data_scaling sweep: task score against
``task.n_train`` per method, docs/learning.md; the guide's R-DATA-* rules size methods by data),
while a larger base model is worth its time only once the data is all used. When nothing fits,
``rescue`` says what would, with numbers: the examples or epochs that fit the clock, a smaller
model, more GPUs of this kind, or one bigger GPU.
"""

from __future__ import annotations

import math

from advisor.decide.hyper import epochs
from advisor.decide.recipe import Alternative
from advisor.decide.sizing import Option, Plan, epoch_time, size
from advisor.facts import GPUS
from advisor.inputs.catalog import GpuBudget, Model, ladder, parse_gpu

HOURS = 24.0  # default time budget of `advisor recommend --hours`
MORE_GPUS = (2, 4, 8, 16, 32, 64)


def run_hours(plan: Plan, n: int, gpu: GpuBudget, tokens_per_s: float | None = None) -> tuple[float, float]:
    """(point, high end) of the whole run's time in hours: the guide's epochs over ``n`` examples."""
    opt, s = plan.option, plan.setup
    key = (plan.model.name, plan.model.arch, opt, plan.micro_batch, plan.grad_accum, s.grad_checkpointing, s.seq_len, gpu, n, tokens_per_s)
    if key not in _HOURS:  # the time model prices GRPO's decoding token by token: worth keeping
        e = epochs(n, opt.objective, opt.method)
        t = epoch_time(plan, n, gpu, tokens_per_s)
        if len(_HOURS) > 4096:
            _HOURS.clear()
        _HOURS[key] = (t.seconds * e / 3600, t.high * e / 3600)
    return _HOURS[key]


_HOURS: dict = {}


def on_time(plan: Plan, n: int, gpu: GpuBudget, hours: float) -> bool:
    return run_hours(plan, n, gpu)[1] <= hours


def hours_text(h: float) -> str:
    return f"{h:,.0f} h" if h >= 10 else f"{h:.1f} h" if h >= 0.1 else f"{h * 60:.0f} min"


def rescue(inp, plan: Plan, n: int, objective: str, rank: int, target_batch: int, slow: bool) -> list[Alternative]:
    """What would fit when ``plan`` (the leanest, or the fastest that fits memory) does not: for a
    run that is too slow (``slow``), fewer examples or epochs first, then a smaller model, then more GPUs."""
    out: list[Alternative] = []
    if slow:
        out += _fewer(inp, plan, n)
        smaller = _smaller(inp, plan.model, n, objective, rank, target_batch)
        if smaller:
            out.append(smaller)
    out += _more_gpus(inp, plan.model, n, objective, rank, target_batch)
    if not slow:
        out += _bigger_gpu(inp, plan.model, n, objective, rank, target_batch)
    return out


def _fewer(inp, plan: Plan, n: int) -> list[Alternative]:
    point, high = run_hours(plan, n, inp.gpu)
    out = []
    e = epochs(n, plan.option.objective, plan.option.method)
    fit_n = math.floor(n * inp.hours / high) if high > 0 else n
    if fit_n >= 10:
        out.append(Alternative(f"{plan.option.label} on {plan.model.name}, {fit_n:,} of the {n:,} examples", round(plan.peak_gb, 2), True,
                               f"all {n:,} take ~{hours_text(point)} (up to {hours_text(high)}); {fit_n:,} fit {inp.hours:g} h at the high end"))  # fmt: skip
    if e > 1 and high / e <= inp.hours:
        out.append(Alternative(f"{plan.option.label} on {plan.model.name}, 1 epoch instead of {e}", round(plan.peak_gb, 2), True,
                               f"one pass over all {n:,} examples takes up to {hours_text(high / e)}"))  # fmt: skip
    return out


def _fits_both(model: Model, opt: Option, gpu: GpuBudget, inp, n: int, target_batch: int) -> Plan | None:
    plan = size(model, opt, gpu, inp.seq_len, target_batch, inp.stack)
    return plan if plan.fits and on_time(plan, n, gpu, inp.hours) else None


def _smaller(inp, model: Model, n: int, objective: str, rank: int, target_batch: int) -> Alternative | None:
    for m in reversed(ladder()):
        if m.params >= model.params:
            continue
        for method in ("lora", "qlora", "full"):
            plan = _fits_both(m, Option(method, 1, objective, rank), inp.gpu, inp, n, target_batch)
            if plan:
                point, high = run_hours(plan, n, inp.gpu)
                return Alternative(f"{plan.option.label} on {m.name}", round(plan.peak_gb, 2), True,
                                   f"the largest smaller model whose whole run fits {inp.hours:g} h: ~{hours_text(point)} (up to {hours_text(high)})")  # fmt: skip
    return None


def _more_gpus(inp, model: Model, n: int, objective: str, rank: int, target_batch: int) -> list[Alternative]:
    gpu = inp.gpu
    for k in MORE_GPUS:
        if k <= gpu.count:
            continue
        more = gpu.with_count(k)
        for method in ("lora", "qlora"):
            plan = _fits_both(model, Option(method, k, objective, rank), more, inp, n, target_batch)
            if plan:
                point, high = run_hours(plan, n, more)
                return [Alternative(f"{plan.option.label} on {more.label}", round(plan.peak_gb, 2), True,
                                    f"the fewest GPUs of this kind that fit {model.name} in memory and {inp.hours:g} h: "
                                    f"~{hours_text(point)} (up to {hours_text(high)}) (R-MEM-FSDP)")]  # fmt: skip
    return []


def _bigger_gpu(inp, model: Model, n: int, objective: str, rank: int, target_batch: int) -> list[Alternative]:
    for g in sorted(GPUS.values(), key=lambda g: g.usable_gb):
        if g.usable_gb <= inp.gpu.per_gpu_gb:
            continue
        one = parse_gpu(g.name)
        for method in ("lora", "qlora"):
            plan = _fits_both(model, Option(method, 1, objective, rank), one, inp, n, target_batch)
            if plan:
                return [Alternative(f"{plan.option.label} on one {g.name}", round(plan.peak_gb, 2), True,
                                    f"the smallest single GPU that fits {model.name} in memory and {inp.hours:g} h")]  # fmt: skip
    return []


def largest_fitting(inp, options, n: int, target_batch: int) -> Plan | None:
    """The largest catalog model with an option that fits memory and time."""
    for model in reversed(ladder()):
        for opt in options:
            plan = _fits_both(model, opt, inp.gpu, inp, n, target_batch)
            if plan:
                return plan
    return None
