"""harness/analysis.py and harness/claims.py, the report's figures: forgetting per probe in its own
unit and its verdict, configuration names and budgets, medians over repeats, the Pareto set and the
best score with its statistical ties. Small frames built here, no records on disk. Written against
`scripts/mutation.sh analysis` (docs/mutation.md)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from harness import analysis
from harness.claims import claims, ties


# ---------------------------------------------------------------- forgetting


@pytest.mark.parametrize("kind, base, drop, se, expected", [
    ("acc", 0.6, 10.0, 4.0, (True, False)),   # 10 points > 2 × 4
    ("acc", 0.6, 8.0, 4.0, (False, False)),   # exactly 2 se: not significant
    ("acc", 0.6, 30.0, 4.0, (True, True)),    # tuned ≤ base / 2: 30 ≥ 50 × 0.6
    ("acc", 0.6, 29.0, 4.0, (True, False)),
    ("ppl", 20.0, math.log(2), 0.1, (True, True)),   # perplexity doubled
    ("ppl", 20.0, 0.6, 0.1, (True, False)),
    ("ppl", 20.0, 1.0, 0.6, (False, False)),  # doubled, but within the noise: not collapsed either
    ("other", 1.0, 99.0, 1.0, (True, False)),  # no collapse rule for other units
    ("acc", 0.6, float("nan"), 1.0, (False, False)),
    ("acc", 0.6, 10.0, float("nan"), (False, False)),
])
def test_a_drop_is_significant_beyond_two_stderrs_and_collapsed_when_half_is_lost(kind, base, drop, se, expected):
    assert analysis.judge(kind, base, drop, se) == expected


def _probe_frame(**cols):
    return pd.DataFrame({f"metrics.forgetting.{k}": v for k, v in cols.items()})


def test_accuracy_drops_are_in_points_perplexity_in_log_ratio_others_in_their_unit():
    frame = _probe_frame(**{
        "mc.delta": [0.3], "mc.base": [0.7], "mc.tuned": [0.4], "mc.stderr": [0.05],
        "ppl.delta": [-20.0], "ppl.base": [20.0], "ppl.tuned": [40.0], "ppl.stderr": [1.0],
        "ppl.base_stderr": [1.0], "ppl.tuned_stderr": [4.0], "ppl.higher_is_better": [False], "ppl.metric": ["word_perplexity"],
        "bleu.delta": [-2.0], "bleu.base": [30.0], "bleu.tuned": [32.0], "bleu.stderr": [0.5], "bleu.metric": ["bleu"],
        "loss.delta": [-0.5], "loss.base": [2.0], "loss.tuned": [2.5], "loss.stderr": [0.1],
        "loss.higher_is_better": [False], "loss.metric": ["loss"],
    })
    d = analysis.probe_drops(frame).set_index("probe")
    assert list(d.index) == ["bleu", "loss", "mc", "ppl"]
    mc = d.loc["mc"]
    assert (mc["kind"], mc["unit"]) == ("acc", "accuracy points")
    assert mc["drop"] == pytest.approx(30.0) and mc["se"] == pytest.approx(5.0)
    assert mc["significant"] and not mc["collapsed"] and mc["run"] == 0
    ppl = d.loc["ppl"]
    assert (ppl["kind"], ppl["unit"]) == ("ppl", "Δ log-perplexity")
    assert ppl["drop"] == pytest.approx(math.log(2)) and ppl["se"] == pytest.approx(math.hypot(1 / 20, 4 / 40))
    assert ppl["significant"] and ppl["collapsed"]
    bleu = d.loc["bleu"]  # higher is better by default; it rose: a negative drop
    assert (bleu["kind"], bleu["unit"], bleu["drop"], bleu["se"]) == ("other", "bleu", -2.0, 0.5)
    loss = d.loc["loss"]  # lower is better, not a perplexity: the change, negated (rose by 0.5 = forgot)
    assert (loss["kind"], loss["unit"], loss["drop"]) == ("other", "loss", 0.5)
    assert loss["significant"]


def test_a_record_without_tuned_derives_it_and_old_perplexity_records_use_the_combined_stderr():
    frame = _probe_frame(**{
        "mc.delta": [0.1, None], "mc.base": [0.5, 0.5], "mc.stderr": [0.01, 0.01],
        "ppl.delta": [-10.0, None], "ppl.base": [10.0, 10.0], "ppl.tuned": [20.0, 20.0], "ppl.stderr": [2.0, 2.0],
        "ppl.higher_is_better": [False, False], "ppl.metric": ["perplexity", "perplexity"],
    })
    d = analysis.probe_drops(frame)
    assert len(d) == 2  # the second run has no delta for either probe: no rows
    mc = d[d["probe"] == "mc"].iloc[0]
    assert mc["tuned"] == pytest.approx(0.4) and mc["drop"] == pytest.approx(10.0)
    ppl = d[d["probe"] == "ppl"].iloc[0]
    assert ppl["se"] == pytest.approx(2.0 / 10.0)  # over the smaller side
    assert analysis.probe_drops(pd.DataFrame({"x": [1]})).columns.tolist() == [
        "run", "probe", "kind", "unit", "base", "tuned", "drop", "se", "significant", "collapsed"]


@pytest.mark.filterwarnings("ignore:divide by zero")  # the old-record stderr over a zero base is inf: fine
def test_a_perplexity_of_zero_gives_no_drop_rather_than_a_crash():
    frame = _probe_frame(**{"p.delta": [-5.0], "p.base": [0.0], "p.tuned": [5.0], "p.stderr": [1.0],
                            "p.higher_is_better": [False], "p.metric": ["ppl"]})
    row = analysis.probe_drops(frame).iloc[0]
    assert row["kind"] == "ppl" and math.isnan(row["drop"]) and not row["significant"]


def test_show_drop_reads_as_the_report_prints_it():
    assert analysis.show_drop({"kind": "acc", "base": 0.705, "tuned": 0.268, "drop": 43.7, "se": 6.0}) == \
        "70.5% → 26.8%: -43.7 pts ± 6.0"
    assert analysis.show_drop({"kind": "ppl", "base": 44.1, "tuned": 88.2, "drop": math.log(2), "se": 0.15}) == \
        "ppl 44.1 → 88.2 (×2, Δlog +0.693 ± 0.150)"
    assert analysis.show_drop({"kind": "other", "base": 30.0, "tuned": 28.0, "drop": 2.0, "se": 0.5, "unit": "bleu"}) == \
        "30 → 28 (bleu; worse by +2 ± 0.5)"


# ---------------------------------------------------------------- values, names and budgets


@pytest.mark.parametrize("value, shown", [
    (None, "null"), (float("nan"), "null"), (True, "on"), (False, "off"), (16.0, "16"), (0.0002, "2e-4"),
    (5e-05, "5e-5"), (0.00125, "1.25e-3"), (0.5, "0.5"), (1234.5678, "1235"), (-0.001, "-1e-3"), (1e16, "1e+16"),
    (["a", "b"], "a+b"), ([], "none"), ((1.0, None), "1+null"), ("x", "x"), (16, "16"), (0.01, "0.01"),
])
def test_config_values_read_as_a_person_writes_them(value, shown):
    assert analysis.text(value) == shown


def test_natural_order_puts_64_before_256():
    values = pd.Series(["2 epochs × 256 examples", "2 epochs × 64 examples", "10 steps", "9 steps", "b", "a"])
    assert list(values.iloc[analysis.natural(values).argsort()]) == [
        "2 epochs × 64 examples", "2 epochs × 256 examples", "9 steps", "10 steps", "a", "b"]


def test_budget_is_steps_times_examples_per_step_or_epochs_times_the_data():
    frame = pd.DataFrame({
        "config.train.max_steps": [12, -1, -1, None, 5],
        "config.train.epochs": [1.0, 2.0, 1.0, None, 1.0],
        "config.task.n_train": [None, 64, None, None, None],
        "config.train.batch_size": [4, 4, 4, 4, None],
        "config.train.grad_accum": [2, 1, 1, 1, None],
        "config.method.world_size": [None, 1, 1, 1, 2],
    })
    assert list(analysis.budget(frame)) == ["12 steps × 8 examples", "2 epochs × 64 examples", "1 epoch × the train file",
                                            "budget not recorded", "5 steps × 2 examples"]


def test_a_configuration_is_named_by_the_settings_that_differ_within_its_method():
    frame = pd.DataFrame({
        "config.method.name": ["lora", "lora", "full", "full"],
        "config.method.r": [8, 16, None, None],
        "config.train.lr": [None, None, 1e-4, 1e-3],
        "config.method.default_lr": [2e-4, 2e-4, 1e-5, 1e-5],
        "config.train.batch_size": [8, 8, 8, 8],
        "config.seed": [0, 1, 0, 0],  # repeats: never named
        "config.results_dir": ["a", "b", "c", "d"],  # never identity
    })
    keys = analysis.config_keys(frame)
    assert list(keys.columns) == ["r", "lr", "bs"]
    assert list(keys["lr"]) == ["2e-4", "2e-4", "1e-4", "1e-3"]  # the rate that applied
    labels = analysis.labels(keys, frame["config.method.name"])
    # lr splits full's runs, so it is named on every run; bs splits none and is never named
    assert list(labels) == ["lora r=8 lr=2e-4", "lora r=16 lr=2e-4", "full lr=1e-4", "full lr=1e-3"]
    assert analysis.full_config(keys, frame["config.method.name"])[0] == "method=lora, r=8, lr=2e-4, bs=8"
    assert analysis.full_config(keys, frame["config.method.name"])[2] == "method=full, lr=1e-4, bs=8"


def test_the_sweep_is_named_by_the_record_else_by_its_folder():
    # a top-level record beside one in a folder: "(top level)", not "folder nan"
    frame = pd.DataFrame({"sweep": ["rank", None, None], "path": ["x/a.json", "sub/dir/b.json", "c.json"]})
    assert list(analysis.sweep_of(frame)) == ["rank", "folder sub/dir", "(top level)"]


def test_metrics_show_in_their_own_unit():
    assert analysis.METRICS["mfu"].show(0.1234) == "12.34"
    assert analysis.METRICS["peak_memory_gb"].show(1.234) == "1.23"
    assert analysis.METRICS["tokens_per_s"].show(None) == "–" and analysis.METRICS["task_score"].show(np.nan) == "–"


# ---------------------------------------------------------------- runs, configurations, claims


def _runs(rows):
    base = {"status": "ok", "method": "lora", "task": "tickets", "model": "m", "r": 8, "batch_size": 8, "n_train": None,
            "config": "", "sweep": "s", "task_score_stderr": 0.02, "task_eval_n": 100, "task_score_base": 0.3,
            "concurrency": 1, "memory_kind": "cpu_rss_delta", "group": "tickets · 12 steps × 8 examples",
            "peak_memory_gb": 1.0, "tokens_per_s": 100.0, "mfu": 0.1, "task_score": 0.5, "train_loss_last": 1.0,
            "wall_s": 10.0}
    out = pd.DataFrame([{**base, **r} for r in rows])
    out["label"] = out["point"]
    out["run_id"] = [f"id{i}" for i in range(len(out))]
    return out


def test_a_configuration_is_the_median_of_its_ok_repeats_with_every_status_counted():
    runs = _runs([{"point": "a", "tokens_per_s": 100.0}, {"point": "a", "tokens_per_s": 300.0},
                  {"point": "a", "tokens_per_s": 110.0}, {"point": "a", "status": "oom", "tokens_per_s": 1.0},
                  {"point": "b", "status": "oom", "peak_memory_gb": 9.0}, {"point": "b", "status": "error", "peak_memory_gb": 7.0}])
    points = analysis.aggregate(runs).set_index("point")
    assert points.at["a", "tokens_per_s"] == 110.0 and points.at["a", "n"] == 4 and points.at["a", "n_ok"] == 3
    assert points.at["a", "status"] == "3 ok, 1 oom" and points.at["a", "run_ids"] == "id0, id1, id2, id3"
    assert points.at["b", "n_ok"] == 0 and points.at["b", "peak_memory_gb"] == 8.0  # no ok run: the failed ones'
    assert points.at["a", "n_probes"] == 0 and pd.isna(points.at["a", "forgot_share"]) and points.at["a", "collapsed"] == ""
    assert analysis.aggregate(runs.iloc[0:0]).empty


def test_probe_verdicts_are_taken_again_on_the_medians_of_the_ok_repeats():
    runs = _runs([{"point": "a"}, {"point": "a"}, {"point": "a", "status": "oom"}])
    drops = pd.DataFrame({"run": [0, 1, 2], "probe": ["mc"] * 3, "kind": ["acc"] * 3, "unit": ["accuracy points"] * 3,
                          "base": [0.7] * 3, "tuned": [0.2, 0.4, 0.0], "drop": [40.0, 20.0, 60.0], "se": [4.0, 6.0, 1.0],
                          "significant": [True, True, True], "collapsed": [True, False, True]})
    agg = analysis.aggregate_probes(runs, drops)
    assert len(agg) == 1
    row = agg.iloc[0]
    assert (row["point"], row["n"], row["drop"], row["se"], row["tuned"]) == ("a", 2, 30.0, 5.0, pytest.approx(0.3))
    assert row["significant"] and not row["collapsed"]  # 30 < 50 × 0.7
    points = analysis.aggregate(runs, agg).set_index("point")
    assert points.at["a", "n_probes"] == 1 and points.at["a", "n_sig"] == 1 and points.at["a", "forgot_share"] == 1.0
    assert analysis.aggregate_probes(runs, drops.iloc[0:0])["n"].tolist() == []


def test_pareto_front_follows_each_metrics_direction():
    pts = pd.DataFrame({"task_score": [0.5, 0.6, 0.4, 0.6], "peak_memory_gb": [1.0, 2.0, 1.5, 2.0]})
    assert list(analysis.pareto_mask(pts, ["task_score", "peak_memory_gb"])) == [True, True, False, True]


def test_a_tie_is_within_two_combined_stderrs_with_a_floor_of_one_example():
    pts = pd.DataFrame({"task_score": [0.80, 0.75, 0.70, 0.79, None, 0.77],
                        "task_score_stderr": [0.02, 0.02, 0.02, 0.0, 0.02, np.nan],
                        "task_eval_n": [100, 100, 100, 100, 100, None]})
    # 0.75: 0.05 ≤ 2 × 0.0283; 0.70: 0.10 > 0.057; 0.79 (stderr 0): 0.01 ≤ 2 × 0.02; None: never;
    # 0.77 (no stderr, no n): 0.03 ≤ 2 × 0.02
    assert ties(pts, 0) == [3, 5, 1]
    exact = pd.DataFrame({"task_score": [1.0, 0.99, 0.97], "task_score_stderr": [0.0, 0.0, 0.0], "task_eval_n": [100, 100, 100]})
    assert ties(exact, 0) == [1]  # one example of 100 is a tie (floor 1/100), three are not


def test_claims_name_each_groups_winners_largest_group_first():
    points = pd.DataFrame({
        "group": ["g2", "g2", "g2", "g10", "g10"], "n_ok": [1, 1, 1, 1, 0],
        "task_score": [0.5, 0.9, 0.2, 0.4, 0.99], "task_score_stderr": [0.01] * 5, "task_eval_n": [100] * 5,
        "peak_memory_gb": [1.0, 3.0, 0.5, 1.0, 0.1], "tokens_per_s": [200.0, 100.0, 50.0, 10.0, 999.0],
        "forgot_share": [0.0, 0.5, None, 0.0, 0.0], "n_probes": [2, 2, 0, 1, 1], "n_sig": [0, 1, 0, 0, 0],
    })
    g2, g10 = claims(points)
    assert (g2.group, g10.group) == ("g2", "g10")  # 3 configurations before 1 (the failed one not counted)
    assert g2.best_score == 1 and g2.score_ties == [] and g2.fastest == 0 and g2.lowest_memory == 2
    assert g2.no_drop == [0] and g2.flagged == [1]
    assert g2.front_metrics == ["task_score", "peak_memory_gb", "tokens_per_s"]  # forgot_share missing for one
    assert sorted(g2.front) == [0, 1, 2]
    assert list(g10.points.index) == [3] and g10.best_score == 3 and g10.front == []  # one configuration: no front


def _records(rows):
    base = {"run_id": "x", "status": "ok", "method": "lora", "model": "m", "task": "tickets",
            "config.method.name": "lora", "config.method.r": 8, "config.train.max_steps": 10, "config.train.batch_size": 4,
            "config.train.grad_accum": 1, "config.budget_gb": 24.0, "metrics.task_score": 0.5, "metrics.task_score_base": 0.3,
            "metrics.tokens_per_s": 100.0, "metrics.peak_memory_gb": 1.0, "error.type": None, "error.message": None}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_tidy_names_each_run_within_its_comparable_group_and_counts_its_dropped_probes():
    frame = _records([
        {"run_id": "a", "config.method.r": 8},
        {"run_id": "b", "config.method.r": 16, "metrics.forgetting.mc.delta": 0.3, "metrics.forgetting.mc.base": 0.6,
         "metrics.forgetting.mc.tuned": 0.3, "metrics.forgetting.mc.stderr": 0.01,
         "metrics.forgetting.qa.delta": 0.0, "metrics.forgetting.qa.base": 0.5, "metrics.forgetting.qa.tuned": 0.5,
         "metrics.forgetting.qa.stderr": 0.01},
        {"run_id": "c", "config.train.max_steps": 20, "status": "oom", "error.type": "BudgetExceeded", "error.message": "over"},
    ])
    runs = analysis.tidy(frame).set_index("run_id")
    assert list(runs["group"]) == ["tickets · 10 steps × 4 examples"] * 2 + ["tickets · 20 steps × 4 examples"]
    assert list(runs["point"]) == ["lora r=8 · tickets · 10 steps × 4 examples", "lora r=16 · tickets · 10 steps × 4 examples",
                                   "lora · tickets · 20 steps × 4 examples"]
    assert list(runs["budget_gb"]) == [24.0] * 3 and list(runs["task_score_base"]) == [0.3] * 3
    assert runs.at["c", "error_type"] == "BudgetExceeded" and runs.at["c", "error_message"] == "over"
    assert runs.at["b", "n_probes"] == 2 and runs.at["b", "n_sig"] == 1 and runs.at["b", "forgot_share"] == 0.5
    assert runs.at["b", "forgetting"] == 0.5 and runs.at["a", "n_sig"] == 0 and pd.isna(runs.at["a", "forgot_share"])
    one = analysis.tidy(frame.iloc[:2])  # one group: the point is the label alone
    assert list(one["point"]) == ["lora r=8", "lora r=16"]


def test_configurations_are_listed_by_group_then_method_then_natural_label():
    runs = _runs([{"point": "lora r=16", "method": "lora"}, {"point": "full", "method": "full"},
                  {"point": "lora r=8", "method": "lora"}, {"point": "lora r=64", "method": "lora", "group": "b"},
                  {"point": "full 2", "method": "full", "group": "a"}])
    points = analysis.aggregate(runs)
    assert list(points["point"]) == ["full 2", "lora r=64", "full", "lora r=8", "lora r=16"]
    assert list(points["task"]) == ["tickets"] * 5


def test_a_lower_is_better_score_inside_zero_one_is_not_an_accuracy_and_an_unnamed_one_is_a_score():
    frame = _probe_frame(**{"loss.delta": [-0.2], "loss.base": [0.4], "loss.tuned": [0.6], "loss.stderr": [0.05],
                            "loss.higher_is_better": [False], "loss.metric": ["loss"],
                            "f1.delta": [5.0], "f1.base": [40.0], "f1.tuned": [35.0], "f1.stderr": [1.0]})
    d = analysis.probe_drops(frame).set_index("probe")
    assert (d.at["loss", "kind"], d.at["loss", "drop"]) == ("other", pytest.approx(0.2))
    assert (d.at["f1", "kind"], d.at["f1", "unit"], d.at["f1", "drop"]) == ("other", "score", 5.0)


def test_a_budget_setting_is_named_in_gigabytes():
    f = pd.DataFrame({"config.method.name": ["lora", "lora"], "config.budget_gb": [24.0, 48.0]})
    assert list(analysis.labels(analysis.config_keys(f), f["config.method.name"])) == ["lora budget=24GB", "lora budget=48GB"]


def test_a_score_exactly_two_stderrs_behind_is_still_a_tie():
    pts = pd.DataFrame({"task_score": [0.75, 0.5], "task_score_stderr": [0.125, 0.0], "task_eval_n": [None, None]})
    assert ties(pts, 0) == [1]


def test_two_configurations_already_have_a_pareto_front():
    points = pd.DataFrame({"group": ["g", "g"], "n_ok": [1, 1], "task_score": [0.5, 0.9], "task_score_stderr": [0.01] * 2,
                           "task_eval_n": [100] * 2, "peak_memory_gb": [1.0, 3.0], "tokens_per_s": [200.0, 100.0],
                           "forgot_share": [0.0, 0.0], "n_probes": [1, 1], "n_sig": [0, 0]})
    (g,) = claims(points)
    assert sorted(g.front) == [0, 1]
