"""`harness regress`'s verdict arithmetic, one function at a time: the figures, texts and verdicts a
user reads in its table and JSON. Written against the survivors of `scripts/mutation.sh regress`
(docs/mutation.md): each test fails on a realistic one-line change to the rule it names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness import regress
from harness.analysis import load_frame
from harness.errors import UserError

FIXTURES = Path(__file__).parent / "fixtures" / "regress"
TPS, MFU, MEM, LOSS, SCORE = regress.RULES
BASE = np.array([100.0, 102.0, 98.0])


@pytest.fixture(scope="module")
def baseline():
    return load_frame(FIXTURES / "baseline")


def fmt(x):
    return f"{x:.2f}"


def test_a_side_with_no_values_shows_a_dash_and_one_value_shows_no_spread():
    assert regress._summary(np.array([])) == {"median": None, "min": None, "max": None, "n": 0}
    assert regress._show(regress._summary(np.array([])), fmt) == "–"
    one = regress._summary(np.array([2.0]))
    assert one == {"median": 2.0, "min": 2.0, "max": 2.0, "n": 1}
    assert regress._show(one, fmt) == "2.00"
    assert regress._show(regress._summary(np.array([1.0, 3.0, 2.5])), fmt) == "2.50 [1.00–3.00]"
    assert regress._show(regress._summary(np.array([1.0, 3.0])), fmt) == "2.00 [1.00–3.00]"


def test_log_ratio_ci_needs_two_repeats_a_side_and_identical_repeats_give_a_point_interval():
    ratio, ci = regress.log_ratio_ci(BASE, np.array([80.0]))
    assert ci is None and ratio == pytest.approx(80 / np.exp(np.log(BASE).mean()))
    assert regress.log_ratio_ci(np.array([100.0]), BASE)[1] is None
    ratio, ci = regress.log_ratio_ci(np.array([100.0, 100.0]), np.array([90.0, 90.0]))
    assert ratio == pytest.approx(0.9) and ci == pytest.approx((0.9, 0.9))
    # unequal spreads: Welch's df (not n_b + n_c − 2 = 5) sets t; a wider level widens the interval
    wide = np.array([50.0, 100.0, 200.0])
    _, (lo, hi) = regress.log_ratio_ci(BASE, wide)
    lb, lc = np.log(BASE), np.log(wide)
    vb, vc = lb.var(ddof=1) / 3, lc.var(ddof=1) / 3
    df = (vb + vc) ** 2 / (vb**2 / 2 + vc**2 / 2)
    from scipy import stats
    t = stats.t.ppf(0.975, df)
    assert np.log(hi) - np.log(lo) == pytest.approx(2 * t * np.sqrt(vb + vc))
    _, (lo90, hi90) = regress.log_ratio_ci(BASE, wide, level=0.90)
    assert lo < lo90 < hi90 < hi


@pytest.mark.parametrize("factor, verdict", [(0.85, "regression"), (0.905, "unchanged"), (0.95, "unchanged"), (1.0, "unchanged"),
                                             (1.05, "unchanged"), (1.2, "improvement")])
def test_throughput_is_judged_by_where_the_whole_ci_lies(factor, verdict):
    tight = np.array([100.0, 100.1, 99.9])
    row = regress.judge_ratio(TPS, True, tight, tight[::-1] * factor)
    assert row["verdict"] == verdict and row["note"] == ""
    assert row["ratio"] == pytest.approx(factor, rel=1e-3)
    lo, hi = row["ci"]
    assert lo < row["ratio"] < hi
    assert row["change_text"] == f"×{row['ratio']:.3f} [{lo:.3f}, {hi:.3f}]"


def test_a_throughput_drop_inside_the_noise_is_not_a_regression():
    noisy = np.array([60.0, 100.0, 140.0])
    assert regress.judge_ratio(TPS, True, noisy, noisy * 0.8)["verdict"] == "unchanged"


def test_one_repeat_a_side_is_judged_on_the_point_estimate_and_says_so():
    row = regress.judge_ratio(TPS, True, np.array([100.0]), np.array([80.0]))
    assert row["verdict"] == "regression" and row["ci"] is None
    assert row["note"] == "fewer than 2 repeats a side: no CI, point estimate only"
    assert row["change_text"] == "×0.800"
    assert regress.judge_ratio(TPS, True, np.array([100.0]), np.array([130.0]))["verdict"] == "improvement"
    # memory without a CI: the band alone decides, in the memory direction
    assert regress.judge_ratio(MEM, False, np.array([1.0]), np.array([1.2]))["verdict"] == "regression"
    assert regress.judge_ratio(MEM, False, np.array([1.0]), np.array([0.8]))["verdict"] == "improvement"
    assert regress.judge_ratio(MEM, False, np.array([1.0]), np.array([1.04]))["verdict"] == "unchanged"


def test_memory_is_a_band_on_the_ratio_of_medians_lower_is_better():
    base = np.array([1.0, 1.01, 0.99])
    skewed = np.array([1.2, 1.2, 1.26])  # median 1.2, geometric mean 1.22
    row = regress.judge_ratio(MEM, False, base, skewed)
    assert row["ratio"] == pytest.approx(1.2) and row["verdict"] == "regression"
    assert regress.judge_ratio(MEM, False, base, base * 0.94)["verdict"] == "improvement"
    assert regress.judge_ratio(MEM, False, base, base * 1.04)["verdict"] == "unchanged"
    assert regress.judge_ratio(MEM, False, base, base * 0.97)["verdict"] == "unchanged"  # 3% less: inside the band
    # beyond the band but with a CI that includes 1 (noise): unchanged
    noisy = np.array([0.5, 1.0, 2.0])
    assert regress.judge_ratio(MEM, False, noisy, noisy * 1.2)["verdict"] == "unchanged"
    assert regress.judge_ratio(MEM, False, noisy, noisy * 0.8)["verdict"] == "unchanged"
    # the loss band is ±10%: 8% more loss is unchanged, 15% a regression
    assert regress.judge_ratio(LOSS, False, base, base * 1.08)["verdict"] == "unchanged"
    assert regress.judge_ratio(LOSS, False, base, base * 1.15)["verdict"] == "regression"


def test_a_score_change_beyond_twice_the_combined_stderr_is_a_verdict_with_its_bound_shown():
    same = np.array([0.6, 0.6, 0.6])
    row = regress.judge_equivalence(SCORE, True, same, same + 0.3, 0.1, 0.1)
    assert row["verdict"] == "improvement" and row["delta"] == pytest.approx(0.3)
    assert row["bound"] == pytest.approx(2 * np.sqrt(0.02)) and row["note"] == ""
    assert row["change_text"] == "Δ +0.300 (bound ±0.283)"
    # lower-is-better metric (a forgetting drop): a larger drop is the regression
    assert regress.judge_equivalence(SCORE, False, same, same + 0.3, 0.1, 0.1)["verdict"] == "regression"
    assert regress.judge_equivalence(SCORE, False, same, same - 0.3, 0.1, 0.1)["verdict"] == "improvement"
    # one side's stderr missing (NaN) counts as 0, not as "no bound"
    assert regress.judge_equivalence(SCORE, True, same, same - 0.25, np.nan, 0.2)["verdict"] == "unchanged"
    # stderr 0 and no floor: any change counts, and the row says why
    zero = regress.judge_equivalence(SCORE, True, same, same - 0.01, 0.0, 0.0)
    assert zero["verdict"] == "regression" and zero["note"] == "stderr 0: any change counts"
    assert regress.judge_equivalence(SCORE, True, same, same, 0.0, 0.0)["verdict"] == "unchanged"
    # the median, not the mean: one outlier repeat does not move the verdict
    assert regress.judge_equivalence(SCORE, True, same, np.array([0.6, 0.6, 0.0]), 0.05, 0.05)["verdict"] == "unchanged"


def _runs(point_status: dict[str, list[str]]) -> pd.DataFrame:
    return pd.DataFrame({"status": [s for ss in point_status.values() for s in ss]})


def test_the_status_row_names_which_side_a_configuration_is_missing_from_and_what_failed():
    ok3, none = _runs({"a": ["ok"] * 3}), _runs({})
    row = regress._status_row("lora", none, ok3)
    assert (row["verdict"], row["note"]) == ("not compared", "only in the candidate")
    assert (row["baseline_text"], row["candidate_text"]) == ("not run", "3 ok")
    row = regress._status_row("lora", ok3, none)
    assert (row["verdict"], row["note"], row["candidate_text"]) == ("not compared", "only in the baseline", "not run")
    mixed = _runs({"a": ["ok", "oom", "oom"]})
    row = regress._status_row("full", ok3, mixed)
    assert (row["verdict"], row["note"]) == ("regression", "ran in the baseline, fails now")
    assert row["candidate_text"] == "2 oom, 1 ok"
    row = regress._status_row("full", mixed, ok3)
    assert (row["verdict"], row["note"]) == ("improvement", "failed in the baseline, runs now")
    row = regress._status_row("full", mixed, mixed)
    assert (row["verdict"], row["note"], row["metric"], row["point"]) == ("unchanged", "", "status", "full")
    assert (row["unit"], row["test"], row["change_text"]) == ("", "status", "")


def test_forgetting_probes_come_from_delta_columns_and_default_to_higher_is_better():
    frame = pd.DataFrame({
        "metrics.forgetting.mc.delta": [0.1, -0.1],  # base − tuned: accuracy fell by 0.1, then rose
        "metrics.forgetting.mc.stderr": [0.02, 0.03],
        "metrics.forgetting.ppl.delta": [-2.0, 1.0],
        "metrics.forgetting.ppl.higher_is_better": [False, False],
        "metrics.forgetting.ppl.stderr": [0.5, 0.5],
        "metrics.forgetting.other.stderr": [1.0, 1.0],  # no delta: not a probe
        "metrics.task_score.delta": [1.0, 1.0],  # a delta, but not forgetting
    })
    table = regress._probe_table(frame)
    assert sorted(table) == ["mc", "ppl"]
    drop, se = table["mc"]
    assert list(drop) == pytest.approx([0.1, -0.1]) and list(se) == pytest.approx([0.02, 0.03])
    drop, _ = table["ppl"]  # perplexity rose by 2 (delta −2): forgot, drop +2
    assert list(drop) == pytest.approx([2.0, -1.0])


def test_data_change_names_the_examples_that_differ():
    b = pd.DataFrame({"metrics.test_fingerprint": ["a", "a"], "metrics.train_fingerprint": ["t", "t"]})
    c = pd.DataFrame({"metrics.test_fingerprint": ["b", "b"], "metrics.train_fingerprint": ["u", None]})
    assert regress._data_changed(b, c) == "the test examples and the train examples"
    assert regress._data_changed(b, b) == ""
    assert regress._data_changed(b, c.drop(columns="metrics.test_fingerprint")) == "the train examples"
    assert regress._data_changed(b.drop(columns="metrics.train_fingerprint"), c) == "the test examples"
    assert regress._data_changed(b, pd.DataFrame({"metrics.test_fingerprint": [None]})) == ""  # old records: unknown


def test_summary_counts_each_verdict_and_any_regression_fails():
    rows = [{"verdict": v} for v in ("unchanged", "improvement", "unchanged", "not compared")]
    assert regress.summarize(rows) == {"regression": 0, "improvement": 1, "unchanged": 2, "not compared": 1, "verdict": "ok"}
    assert regress.summarize(rows + [{"verdict": "regression"}])["verdict"] == "regression"


def test_cpu_points_run_several_at_once_are_not_compared_with_points_run_alone():
    alone = pd.DataFrame({"hardware.device": ["cpu", "cpu", "cuda"], "execution.concurrency": [1, None, 4]})
    shared = pd.DataFrame({"hardware.device": [None, "cpu"], "execution.concurrency": [2, 3]})
    assert regress.cpu_concurrency(alone) == {1}  # the GPU point's 4 is not counted; no field = 1
    assert regress.cpu_concurrency(shared) == {2, 3}  # no device recorded = a CPU record
    with pytest.raises(UserError) as e:
        regress.refuse_concurrent_mix(alone, shared)
    msg = str(e.value)
    assert "baseline's CPU points ran one point at a time" in msg and "candidate's 2/3 points at once" in msg
    assert "--allow-concurrent" in msg
    regress.refuse_concurrent_mix(shared, shared)
    regress.refuse_concurrent_mix(alone, pd.DataFrame({"hardware.device": ["cuda"], "execution.concurrency": [2]}))


def test_provenance_diff_warns_on_hardware_and_packages_and_informs_on_commits(baseline):
    cand = baseline.copy()
    cand["provenance.git_commit"] = "0" * 40
    cand["hardware.cpu_count"] = 64
    cand["provenance.python"] = "3.99"
    cand["provenance.unrelated"] = "x"
    diff = {d["field"]: d for d in regress.provenance_diff(baseline, cand)}
    assert set(diff) == {"git_commit", "hardware.cpu_count", "python"}
    assert diff["git_commit"]["severity"] == "info" and diff["git_commit"]["kind"] == "provenance"
    assert diff["hardware.cpu_count"]["severity"] == "warning" and diff["hardware.cpu_count"]["candidate"] == ["64"]
    assert diff["python"]["severity"] == "warning"
    assert regress.provenance_diff(baseline, baseline) == []


def test_compare_judges_each_configuration_on_its_ok_repeats(baseline):
    cand = baseline.copy()
    lora = cand["config.method.name"] == "lora"
    cand.loc[lora, "metrics.tokens_per_s"] *= 0.5
    cand.loc[lora, "metrics.peak_memory_gb"] *= 1.5
    rows = regress.compare(baseline, cand)
    by = {(r["point"], r["metric"]): r for r in rows}
    assert by[("lora", "tokens_per_s")]["verdict"] == "regression"
    assert by[("lora", "tokens_per_s")]["ratio"] == pytest.approx(0.5)
    assert by[("lora", "peak_memory_gb")]["verdict"] == "regression"
    assert by[("dora", "tokens_per_s")]["verdict"] == "unchanged"
    tps = by[("lora", "tokens_per_s")]
    assert tps["unit"] and tps["higher_is_better"] is True and tps["test"] == "ratio_ci" and tps["tolerance"] == 0.10
    assert tps["baseline"]["n"] == 3 and tps["candidate"]["median"] == pytest.approx(tps["baseline"]["median"] * 0.5)
    assert tps["baseline_text"].count("[") == 1
    # a configuration missing from the candidate: one "not compared" status row and nothing else
    rows = regress.compare(baseline, cand[~lora])
    lora_rows = [r for r in rows if r["point"] == "lora"]
    assert [(r["metric"], r["verdict"]) for r in lora_rows] == [("status", "not compared")]
    # rows come per configuration, in name order, status row first
    points = [r["point"] for r in rows if r["metric"] == "status"]
    assert points == sorted(points) and rows[0]["metric"] == "status"


def test_a_failed_repeat_is_left_out_of_the_figures_and_zero_throughput_is_not_a_ratio(baseline):
    cand = baseline.copy()
    full = cand.index[cand["config.method.name"] == "full"]
    cand.loc[full[0], "status"] = "oom"
    cand.loc[full[0], "metrics.tokens_per_s"] = 1e-9  # what a failed run left behind: not a measurement
    cand.loc[full[1], "metrics.mfu"] = 0.0
    by = {(r["point"], r["metric"]): r for r in regress.compare(baseline, cand)}
    assert by[("full", "status")]["verdict"] == "regression"
    assert by[("full", "tokens_per_s")]["candidate"]["n"] == 2
    assert by[("full", "tokens_per_s")]["verdict"] == "unchanged"
    assert by[("full", "mfu")]["candidate"]["n"] == 1


def test_regress_reads_both_directories_and_refuses_an_empty_one(tmp_path):
    result = regress.regress(FIXTURES / "baseline", FIXTURES / "rerun")
    assert result["baseline"] == str(FIXTURES / "baseline") and result["candidate"] == str(FIXTURES / "rerun")
    assert result["confidence"] == 0.95 and len(result["rules"]) == len(regress.RULES) + 1
    assert result["summary"]["verdict"] == "ok" and result["created_at"].endswith("+00:00")
    with pytest.raises(UserError, match=r"--candidate .*: no run records in it"):
        regress.regress(FIXTURES / "baseline", tmp_path)


def _with(frame, **metrics):
    out = frame.copy()
    for k, v in metrics.items():
        out[f"metrics.{k}"] = v
    return out


def test_a_score_of_zero_is_judged_against_one_eval_example_not_against_stderr_zero(baseline):
    """A score of 0 reports stderr 0: the floor of 1/n (n = metrics.task_eval_n) keeps one flipped
    example of 24 from being a change, while three are an improvement."""
    lora = baseline[baseline["config.method.name"] == "lora"]
    base = _with(lora, task_score=0.0, task_score_stderr=0.0, task_eval_n=24)
    for flipped, verdict in ((1, "unchanged"), (3, "improvement")):
        cand = _with(base, task_score=flipped / 24)
        row = next(r for r in regress.compare(base, cand) if r["point"] == "lora" and r["metric"] == "task_score")
        assert row["verdict"] == verdict and row["bound"] == pytest.approx(2 / 24), flipped
    # records without task_eval_n: no floor, and nothing breaks
    bare = base.drop(columns="metrics.task_eval_n")
    row = next(r for r in regress.compare(bare, _with(bare, task_score=1 / 24))
               if r["point"] == "lora" and r["metric"] == "task_score")
    assert row["verdict"] == "improvement" and row["bound"] == 0.0


def test_each_side_brings_its_own_stderr_to_the_bound(baseline):
    lora = baseline[baseline["config.method.name"] == "lora"]
    base = _with(lora, task_score=0.5, task_score_stderr=0.0, task_eval_n=1000)
    cand = _with(lora, task_score=0.6, task_score_stderr=0.05, task_eval_n=1000)
    row = next(r for r in regress.compare(base, cand) if r["point"] == "lora" and r["metric"] == "task_score")
    assert row["bound"] == pytest.approx(0.1) and row["verdict"] == "unchanged"


def test_a_metric_missing_on_one_side_skips_that_row_only(baseline):
    cand = _with(baseline, mfu=float("nan"))
    metrics = [r["metric"] for r in regress.compare(baseline, cand) if r["point"] == "lora"]
    assert "mfu" not in metrics
    assert {"tokens_per_s", "peak_memory_gb", "train_loss_last", "task_score"} <= set(metrics)


def test_the_data_changed_row_has_every_field_the_table_prints(baseline):
    base = _with(baseline, test_fingerprint="a")
    row = next(r for r in regress.compare(base, _with(baseline, test_fingerprint="b"))
               if r["point"] == "lora" and r["metric"] == "task_score")
    assert row == {"point": "lora", "metric": "task_score", "unit": "", "test": "data", "verdict": "not compared",
                   "note": "the test examples differ between baseline and candidate (the task's data changed)",
                   "baseline_text": "", "candidate_text": "", "change_text": ""}


def test_regress_refuses_cpu_throughput_measured_concurrently_unless_allowed(tmp_path):
    import json
    import shutil

    shared = tmp_path / "shared"
    shutil.copytree(FIXTURES / "baseline", shared)
    for path in shared.glob("*.json"):
        rec = json.loads(path.read_text())
        rec["execution"] = {"concurrency": 2}
        path.write_text(json.dumps(rec))
    with pytest.raises(UserError, match="allow-concurrent"):
        regress.regress(FIXTURES / "baseline", shared)
    assert regress.regress(FIXTURES / "baseline", shared, allow_concurrent=True)["summary"]["verdict"] == "ok"
