"""The time budget (`advisor recommend --hours`): a feasible recipe fits both memory and the clock at
the estimates' high ends, a tighter clock picks a smaller model, and what is offered when nothing
fits really does fit."""

from __future__ import annotations

import itertools
import json
import re

import pytest

from advisor.decide.procedure import recommend
from advisor.decide.recipe import Inputs
from advisor.inputs.catalog import parse_gpu, resolve_model

GOALS = {  # capability × objective: SFT, GRPO (verifiable reward), DPO (preference pairs)
    "sft": {"capability": "instruction"},
    "grpo": {"capability": "reasoning", "verifiable_reward": True},
    "dpo": {"capability": "alignment"},
}


def _rec(gpu: str, n: int, goal: str, hours: float, model: str | None = None):
    kw = dict(GOALS[goal])
    if goal == "dpo":
        kw["preference_pairs"] = n
    return recommend(Inputs(gpu=parse_gpu(gpu), examples=n, hours=hours, model=resolve_model(model) if model else None, **kw))


def _total_high_h(rec) -> float:
    """The whole run at the high end of the time range, as the recipe prints it."""
    return rec.time_per_epoch_range_s[1] * rec.epochs / 3600


def test_no_feasible_recipe_exceeds_its_time_or_memory_budget():
    seen = {True: 0, False: 0}
    for gpu, n, goal, hours in itertools.product(("24GB", "H100", "8xH100"), (300, 50_000), GOALS, (24.0, 2.0)):
        rec = _rec(gpu, n, goal, hours)
        seen[rec.feasible] += 1
        where = f"{gpu} {n} {goal} {hours} h: {rec.advice}"
        if rec.feasible:
            assert rec.plan.peak_gb <= parse_gpu(gpu).per_gpu_gb, where
            assert _total_high_h(rec) <= hours, f"{where}: {_total_high_h(rec):.1f} h"
        else:
            assert any(a.fits for a in rec.alternatives), f"{where}: nothing offered"
    assert seen[True] >= 10 and seen[False] >= 2, seen  # the grid reaches both answers


def test_the_clock_shrinks_the_model_instead_of_the_largest_that_fits():
    params = []
    for hours in (48.0, 8.0, 1.0):
        rec = _rec("H100", 50_000, "sft", hours)
        assert rec.feasible and _total_high_h(rec) <= hours, rec.advice
        params.append(rec.plan.model.params)
    assert params == sorted(params, reverse=True) and params[-1] < params[0], params
    grpo = _rec("H100", 50_000, "grpo", 24.0)  # was GRPO QLoRA on Qwen2.5-72B, priced at 657 hours
    assert "72B" not in grpo.advice.split(":")[0]
    assert grpo.feasible or "not feasible in 24 h" in grpo.advice


def test_what_would_fit_does_fit():
    rec = _rec("H100", 50_000, "grpo", 24.0, model="Qwen2.5-72B")
    assert not rec.feasible and "not feasible in 24 h" in rec.advice
    fewer = next(a for a in rec.alternatives if "of the 50,000 examples" in a.option)
    n = int(re.search(r"([\d,]+) of the 50,000", fewer.option).group(1).replace(",", ""))
    assert 10 <= n < 50_000
    smaller_run = _rec("H100", n, "grpo", 24.0, model="Qwen2.5-72B")
    assert smaller_run.feasible and _total_high_h(smaller_run) <= 24.0, smaller_run.advice
    more = next(a for a in rec.alternatives if re.search(r"on (\d+)× H100", a.option))
    k = int(re.search(r"on (\d+)× H100", more.option).group(1))
    wider = _rec(f"{k}xH100", 50_000, "grpo", 24.0, model="Qwen2.5-72B")
    assert wider.feasible and _total_high_h(wider) <= 24.0, wider.advice
    if k > 2:  # the fewest: half as many GPUs would not do
        assert not _rec(f"{k // 2}xH100", 50_000, "grpo", 24.0, model="Qwen2.5-72B").feasible


def test_hours_default_and_print(run_cli):
    code, out, _ = run_cli("recommend", "--gpu", "24GB", "--examples", "3000")
    assert code == 0 and "time budget 24 h" in out
    code, out, _ = run_cli("recommend", "--gpu", "24GB", "--examples", "3000", "--hours", "1.5", "--json")
    d = json.loads(out)
    assert d["time_budget_h"] == 1.5 and d["inputs"]["hours"] == 1.5 and d["total_time_h_high"] <= 1.5


@pytest.mark.parametrize("bad", ["0", "-3", "abc", "nan", "inf"])
def test_bad_hours_is_one_line_exit_2(run_cli, bad):
    code, out, err = run_cli("recommend", "--gpu", "24GB", "--examples", "3000", "--hours", bad)
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0 and f"--hours: '{bad}' must be a positive number of hours" in err
