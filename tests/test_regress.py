"""`harness regress`: verdicts, exit codes and the provenance diff, on fixture result directories.

tests/fixtures/regress/: baseline (4 methods x 3 repeats), rerun (same distribution, other noise),
slow (throughput x 0.7), newtorch (torch 2.14), fullooms (full fine-tuning runs out of memory),
forgets (full fine-tuning's general_mc accuracy 0.44 → 0.14; entries built by forgetting.entry).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness import regress
from harness.paths import CONFIG_DIR

FIXTURES = Path(__file__).parent / "fixtures" / "regress"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """regress writes its verdict to results/regress/ below the working directory: keep it out of the repo."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def dirs(tmp_path):
    """Copies, so that a test that writes into one cannot spoil the fixtures."""
    out = {}
    for name in ("baseline", "rerun", "slow", "newtorch", "fullooms", "forgets"):
        out[name] = tmp_path / name
        shutil.copytree(FIXTURES / name, out[name])
    out["same"] = tmp_path / "same"
    shutil.copytree(FIXTURES / "baseline", out["same"])
    return out


def run(capsys, base: Path, cand: Path) -> tuple[int, dict]:
    code = regress.main(["--baseline", str(base), "--candidate", str(cand), "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_identical_directories_are_unchanged_and_exit_0(dirs, capsys):
    code, result = run(capsys, dirs["baseline"], dirs["same"])
    assert code == 0
    assert result["summary"]["verdict"] == "ok"
    assert {r["verdict"] for r in result["rows"]} == {"unchanged"}
    assert {r["point"] for r in result["rows"]} == {"lora", "qlora", "dora", "full"}
    assert [d for d in result["provenance"] if d["severity"] == "warning"] == []
    tps = next(r for r in result["rows"] if r["point"] == "lora" and r["metric"] == "tokens_per_s")
    assert tps["ratio"] == pytest.approx(1.0) and tps["ci"][0] < 1.0 < tps["ci"][1]  # the repeats' own noise


def test_the_verdict_goes_beside_the_command_never_into_the_judged_folders(dirs, capsys, tmp_path, monkeypatch):
    """A committed baseline (or candidate) stays clean: the result lands in results/regress/<time>.json."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    before = {d: sorted(p.relative_to(dirs[d]) for p in dirs[d].rglob("*")) for d in ("baseline", "same")}
    code, result = run(capsys, dirs["baseline"], dirs["same"])
    assert code == 0
    assert {d: sorted(p.relative_to(dirs[d]) for p in dirs[d].rglob("*")) for d in ("baseline", "same")} == before
    written = list((work / "results" / "regress").glob("*.json"))
    assert len(written) == 1 and re.fullmatch(r"\d{8}T\d{6}Z\.json", written[0].name)
    assert json.loads(written[0].read_text())["summary"] == result["summary"]
    out = tmp_path / "elsewhere" / "verdict.json"
    assert regress.main(["--baseline", str(dirs["baseline"]), "--candidate", str(dirs["same"]), "--json", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["summary"] == result["summary"]


def test_a_rerun_with_fresh_noise_is_unchanged(dirs, capsys):
    code, result = run(capsys, dirs["baseline"], dirs["rerun"])
    assert code == 0, [r for r in result["rows"] if r["verdict"] != "unchanged"]
    assert result["summary"]["regression"] == 0


def test_throughput_cut_by_30_percent_is_a_regression_exit_1(dirs, capsys):
    code, result = run(capsys, dirs["baseline"], dirs["slow"])
    assert code == 1
    assert result["summary"]["verdict"] == "regression"
    for method in ("lora", "qlora", "dora", "full"):
        row = next(r for r in result["rows"] if r["point"] == method and r["metric"] == "tokens_per_s")
        assert row["verdict"] == "regression"
        assert row["ratio"] == pytest.approx(0.70, abs=0.01)
        assert row["ci"][1] < 0.90  # the whole interval lies below the 10% tolerance
    memory = [r for r in result["rows"] if r["metric"] == "peak_memory_gb"]
    assert {r["verdict"] for r in memory} == {"unchanged"}


def test_forgetting_that_got_worse_is_a_regression_exit_1(dirs, capsys):
    code, result = run(capsys, dirs["baseline"], dirs["forgets"])
    assert code == 1 and result["summary"]["verdict"] == "regression"
    bad = [r for r in result["rows"] if r["verdict"] != "unchanged"]
    assert [(r["point"], r["metric"], r["verdict"]) for r in bad] == [("full", "forgetting:general_mc", "regression")]
    # drop = base − tuned for accuracy: 0.06 in the baseline, 0.30 in the candidate
    assert bad[0]["delta"] == pytest.approx(0.30 - 0.06) and bad[0]["delta"] > bad[0]["bound"]


def test_harness_regress_exits_1_when_forgetting_got_worse(dirs, tmp_path):
    from tests.conftest import cli

    res = cli("regress", "--baseline", str(dirs["baseline"]), "--candidate", str(dirs["forgets"]), "--json",
              "--out", str(tmp_path / "verdict.json"), timeout=120)
    assert res.returncode == 1, res.stderr[-2000:]
    rows = json.loads(res.stdout)["rows"]
    assert any(r["metric"] == "forgetting:general_mc" and r["verdict"] == "regression" for r in rows)


def test_forgetting_that_got_better_is_an_improvement_exit_0(dirs, capsys):
    code, result = run(capsys, dirs["forgets"], dirs["baseline"])
    assert code == 0 and result["summary"]["verdict"] == "ok"
    row = next(r for r in result["rows"] if r["point"] == "full" and r["metric"] == "forgetting:general_mc")
    assert row["verdict"] == "improvement" and row["delta"] == pytest.approx(0.06 - 0.30)


def test_forgetting_direction_follows_the_probe_metric(dirs, capsys, tmp_path):
    """Perplexity (lower is better): tuned perplexity rising is forgetting, through forgetting.entry."""
    from harness.evaluate import Score
    from harness import forgetting

    def with_ppl(src, dst, tuned_ppl):
        shutil.copytree(src, dst)
        for path in dst.glob("full-*.json"):
            rec = json.loads(path.read_text())
            rec["metrics"]["forgetting"]["general_ppl"] = forgetting.entry(
                Score(20.0, 0.5, 100, 1.0, "word_perplexity", False), Score(tuned_ppl, 0.5, 100, 1.0, "word_perplexity", False))
            path.write_text(json.dumps(rec))
        return dst

    base, worse, better = (with_ppl(dirs["baseline"], tmp_path / n, t) for n, t in (("b", 21.0), ("w", 30.0), ("g", 18.0)))
    for cand, verdict, code_expected in ((worse, "regression", 1), (better, "improvement", 0)):
        code, result = run(capsys, base, cand)
        row = next(r for r in result["rows"] if r["point"] == "full" and r["metric"] == "forgetting:general_ppl")
        assert (row["verdict"], code) == (verdict, code_expected), row


def test_a_different_torch_version_is_flagged_in_the_provenance_diff(dirs, capsys):
    code, result = run(capsys, dirs["baseline"], dirs["newtorch"])
    assert code == 0
    torch = [d for d in result["provenance"] if d["field"] == "packages.torch"]
    assert torch == [{"field": "packages.torch", "kind": "provenance", "baseline": ["2.13.0+cpu"],
                      "candidate": ["2.14.0+cpu"], "severity": "warning"}]


def test_the_table_output_names_the_warning_and_the_verdict(dirs, capsys):
    assert regress.main(["--baseline", str(dirs["baseline"]), "--candidate", str(dirs["newtorch"])]) == 0
    out = capsys.readouterr().out
    assert "packages.torch differs: 2.13.0+cpu → 2.14.0+cpu" in out
    assert "OK: 0 regression(s)" in out


def test_a_config_field_new_in_the_candidate_schema_still_matches_configurations(dirs, capsys):
    for path in dirs["same"].glob("*.json"):
        rec = json.loads(path.read_text())
        rec["config"]["train"]["new_knob"] = 3  # a later schema version adds a field
        path.write_text(json.dumps(rec))
    code, result = run(capsys, dirs["baseline"], dirs["same"])
    assert code == 0 and result["summary"]["not compared"] == 0
    assert {r["point"] for r in result["rows"]} == {"lora", "qlora", "dora", "full"}
    knob = next(d for d in result["provenance"] if d["field"] == "train.new_knob")
    assert knob["kind"] == "suite setting" and knob["baseline"] == ["null"] and knob["candidate"] == ["3"]


def test_a_method_that_no_longer_fits_is_a_regression(dirs, capsys):
    code, result = run(capsys, dirs["baseline"], dirs["fullooms"])
    assert code == 1
    status = next(r for r in result["rows"] if r["point"] == "full" and r["metric"] == "status")
    assert status["verdict"] == "regression" and status["candidate_text"] == "3 oom"


def test_log_ratio_ci_is_a_welch_t_interval():
    base = np.array([100.0, 102.0, 98.0])
    cand = base[::-1] * 0.8  # the same relative spread: equal log variances
    ratio, (lo, hi) = regress.log_ratio_ci(base, cand)
    lb, lc = np.log(base), np.log(cand)
    assert ratio == pytest.approx(np.exp(lc.mean() - lb.mean()))
    se = np.sqrt(lb.var(ddof=1) / 3 + lc.var(ddof=1) / 3)
    # equal variances: Welch df = 4, t(0.975, 4) = 2.776
    assert np.log(hi / ratio) / se == pytest.approx(2.776, abs=0.02)
    assert lo < ratio < hi < 0.9


def test_memory_band_and_score_equivalence():
    mem = regress.RULES[2]
    assert mem.metric == "peak_memory_gb"
    base = np.array([1.00, 1.01, 0.99])
    assert regress.judge_ratio(mem, False, base, base * 1.03)["verdict"] == "unchanged"  # within ±5%
    assert regress.judge_ratio(mem, False, base, base * 1.10)["verdict"] == "regression"
    assert regress.judge_ratio(mem, False, base, base * 0.90)["verdict"] == "improvement"
    score = regress.RULES[4]
    same = np.array([0.60, 0.60, 0.60])
    # stderr 0.1 a side → combined 0.141 → unchanged within ±0.283
    assert regress.judge_equivalence(score, True, same, same - 0.25, 0.1, 0.1)["verdict"] == "unchanged"
    assert regress.judge_equivalence(score, True, same, same - 0.30, 0.1, 0.1)["verdict"] == "regression"
    # a score of 0 has stderr 0: the floor of one example in 24 keeps one flipped example unchanged
    zero = np.zeros(3)
    assert regress.judge_equivalence(score, True, zero, zero + 1 / 24, 0.0, 0.0, floor=1 / 24)["verdict"] == "unchanged"
    assert regress.judge_equivalence(score, True, zero, zero + 3 / 24, 0.0, 0.0, floor=1 / 24)["verdict"] == "improvement"


def test_bad_directories_are_one_line_errors(tmp_path, capsys):
    assert regress.main(["--baseline", str(tmp_path / "nope"), "--candidate", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--baseline" in err and "no such directory" in err and "Traceback" not in err


def test_without_candidate_the_suite_runs_into_a_fresh_directory(dirs, tmp_path, monkeypatch, capsys):
    calls = []

    class Done:
        returncode = 0

    def fake_run(cmd, stdout=None):
        calls.append(cmd)
        results = Path(next(a for a in cmd if a.startswith("results_dir=")).split("=", 1)[1])
        shutil.copytree(dirs["baseline"], results)
        return Done()

    monkeypatch.setattr(regress.subprocess, "run", fake_run)
    fresh = tmp_path / "fresh"
    assert regress.main(["--baseline", str(dirs["baseline"]), "--results", str(fresh), "--json", "method.r=16"]) == 0
    assert calls[0][1:] == ["-m", "harness", "sweep=regression", f"results_dir={fresh}", "method.r=16"]
    assert json.loads(capsys.readouterr().out)["summary"]["verdict"] == "ok"


def test_the_regression_suite_is_affordable_and_repeated():
    from harness.config import compose
    from harness.sweep import plan

    assert (CONFIG_DIR / "sweep" / "regression.yaml").exists()
    cfg = compose(["sweep=regression", "results_dir=/tmp/unused"])
    sweep, points, _ = plan(cfg, ["sweep=regression"])
    assert sweep.name == "regression" and sweep.repeats >= 3
    assert {p.spec.method.name for p in points} >= {"lora", "qlora", "dora", "full", "fsdp"}
    assert all(p.spec.train.max_steps <= 10 and p.spec.eval.limit <= 32 and p.spec.train.save == "none" for p in points)
    assert len({p.run_id for p in points}) == len(points)


def test_task_scores_over_other_examples_are_not_compared(dirs, capsys, tmp_path):
    """The same settings can give other data (a new generator version, an edited file): the record's
    data fingerprints keep regress from calling a score over other test examples a regression."""
    def rewrite(src, dst, score, fingerprint):
        shutil.copytree(src, dst)
        for path in dst.glob("lora-*.json"):
            rec = json.loads(path.read_text())
            rec["metrics"].update(task_score=score, test_fingerprint=fingerprint, train_fingerprint="t0")
            path.write_text(json.dumps(rec))

    base, same, other = tmp_path / "b", tmp_path / "s", tmp_path / "o"
    score = json.loads(next(dirs["baseline"].glob("lora-*.json")).read_text())["metrics"]["task_score"]
    rewrite(dirs["baseline"], base, score, "aaaa")
    rewrite(dirs["baseline"], same, score - 0.4, "aaaa")
    rewrite(dirs["baseline"], other, score - 0.4, "bbbb")

    code, result = run(capsys, base, same)  # same examples, much lower score: a regression
    assert code == 1
    assert any(r["point"] == "lora" and r["metric"] == "task_score" and r["verdict"] == "regression" for r in result["rows"])

    code, result = run(capsys, base, other)  # other examples: said, not judged
    row = next(r for r in result["rows"] if r["point"] == "lora" and r["metric"] == "task_score")
    assert code == 0 and row["verdict"] == "not compared" and "test examples" in row["note"]
