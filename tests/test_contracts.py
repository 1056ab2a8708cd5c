"""Contract tests across layers: a record written by a real tiny run goes through ``results``,
``report`` and ``regress``, and each layer's verdict is asserted, in both directions per metric.

The run happens once per session (``measured`` in conftest.py, ~10 s). Candidates are that record with one
measured field moved, the way a slower build, a fatter allocator, a better checkpoint or a run
that forgot would move it; a forgetting entry is rebuilt with ``forgetting.entry`` from moved
scores, never signed by hand. Every baseline/candidate directory holds 3 repeats with ±1% noise
on the timed and memory fields, so regress's confidence intervals are real intervals.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from harness import analysis, regress, report, results
from harness.claims import claims as group_claims
from harness.evaluate import Score
from harness import forgetting
from harness.record import write_record

NOISE = (0.99, 1.0, 1.01)  # per repeat, on tokens/s, MFU and peak memory


def _moved_probe(entry: dict, tuned_mean: float, tuned_stderr: float) -> dict:
    """A forgetting entry as the harness writes it, with the tuned score moved (base kept)."""
    hib, metric, n = entry["higher_is_better"], entry["metric"], entry["n"]
    return forgetting.entry(Score(entry["base"], entry["base_stderr"], n, 1.0, metric, hib),
                      Score(tuned_mean, tuned_stderr, n, 1.0, metric, hib))


# How each metric moves, per direction. Score and forgetting cannot move both ways from a tiny
# model that scores 0 and barely changes its probes, so "worse" is the better candidate used as the
# baseline (regress is symmetric in its inputs; the test asserts the verdict flips with them).
def slower(m, f=0.6):
    m["tokens_per_s"] *= f
    m["mfu"] *= f  # MFU = flops_per_token × tokens/s / peak: moves with throughput


def faster(m):
    slower(m, 1.6)


def fatter(m, f=1.3):
    m["peak_memory_gb"] *= f


def leaner(m):
    fatter(m, 0.7)


def scores_higher(m):
    n = m["task_eval_n"]
    m["task_score"] = min(1.0, m["task_score"] + 0.75)
    p = m["task_score"]
    m["task_score_stderr"] = (p * (1 - p) / n) ** 0.5


def forgets(m):
    """Tuned perplexity ×20 on general_ppl (lower is better): the tuned model lost fluency."""
    e = m["forgetting"]["general_ppl"]
    m["forgetting"]["general_ppl"] = _moved_probe(e, e["tuned"] * 20, e["tuned_stderr"] * 20)


def _suite(directory: Path, rec: dict, change=None) -> Path:
    for k, f in enumerate(NOISE):
        r = copy.deepcopy(rec)
        r["run_id"] = f"{rec['run_id']}-rep{k}"
        r["config"]["repeat"] = k
        m = r["metrics"]
        for key in ("tokens_per_s", "mfu", "peak_memory_gb"):
            m[key] *= f
        if change:
            change(m)
        write_record(directory, r)
    return directory


def _regress(capsys, base: Path, cand: Path) -> tuple[int, dict]:
    code = regress.main(["--baseline", str(base), "--candidate", str(cand), "--json", "--out", str(cand.parent / "verdict.json")])
    return code, json.loads(capsys.readouterr().out)


CASES = [  # (direction, baseline change, candidate change, regress metric, verdict)
    ("throughput worse", None, slower, "tokens_per_s", "regression"),
    ("throughput better", None, faster, "tokens_per_s", "improvement"),
    ("mfu worse", None, slower, "mfu", "regression"),
    ("memory worse", None, fatter, "peak_memory_gb", "regression"),
    ("memory better", None, leaner, "peak_memory_gb", "improvement"),
    ("score worse", scores_higher, None, "task_score", "regression"),
    ("score better", None, scores_higher, "task_score", "improvement"),
    ("forgetting worse", None, forgets, "forgetting:general_ppl", "regression"),
    ("forgetting better", forgets, None, "forgetting:general_ppl", "improvement"),
]


@pytest.mark.parametrize("direction, base_change, cand_change, metric, verdict", CASES, ids=[c[0].replace(" ", "-") for c in CASES])
def test_regress_verdicts_on_measured_records(measured, tmp_path, capsys, direction, base_change, cand_change, metric, verdict):
    base = _suite(tmp_path / "baseline", measured, base_change)
    cand = _suite(tmp_path / "candidate", measured, cand_change)
    code, result = _regress(capsys, base, cand)
    (point,) = {r["point"] for r in result["rows"]}
    row = next(r for r in result["rows"] if r["metric"] == metric)
    assert row["verdict"] == verdict, row
    assert code == (1 if verdict == "regression" else 0)
    moved = {metric} | ({"mfu"} if metric == "tokens_per_s" else {"tokens_per_s"} if metric == "mfu" else set())
    others = {r["metric"]: r["verdict"] for r in result["rows"] if r["metric"] not in moved}
    assert set(others.values()) == {"unchanged"}, others  # nothing else moved, nothing else is flagged


def test_an_unmoved_copy_is_unchanged(measured, tmp_path, capsys):
    code, result = _regress(capsys, _suite(tmp_path / "b", measured), _suite(tmp_path / "c", measured))
    assert code == 0 and {r["verdict"] for r in result["rows"]} == {"unchanged"}
    metrics = {r["metric"] for r in result["rows"]}
    assert {"tokens_per_s", "mfu", "peak_memory_gb", "task_score", "forgetting:general_mc", "forgetting:general_ppl"} <= metrics


def test_report_names_the_winner_of_each_criterion(measured, tmp_path):
    """Two configurations in one directory: the measured one, and one that is faster, leaner and
    scores higher but forgot. The report must give it every criterion except "least forgetting"."""
    d = _suite(tmp_path / "runs", measured)
    other = copy.deepcopy(measured)
    other["config"]["train"]["lr"] = 0.5  # another configuration: its own label in the report
    other["run_id"] = f"{measured['run_id']}-other"
    for change in (faster, leaner, scores_higher, forgets):
        change(other["metrics"])
    write_record(d, other)

    frame = report.load_frame(d)
    runs = report.tidy(frame)
    label = runs.set_index("run_id")["point"][other["run_id"]]
    drop = runs.set_index("run_id")["forgetting"]  # share of probes with a significant drop
    assert drop[other["run_id"]] > drop[measured["run_id"] + "-rep0"]  # positive = forgot, larger = worse
    probes = analysis.aggregate_probes(runs, analysis.probe_drops(frame))
    (claims,) = group_claims(analysis.aggregate(runs, probes))  # one task and budget: one comparable group
    name = lambda i: claims.points.at[i, "point"]  # noqa: E731
    assert name(claims.fastest) == name(claims.lowest_memory) == name(claims.best_score) == label
    assert label not in {name(i) for i in claims.no_drop} and label in {name(i) for i in claims.flagged}

    md = report.to_markdown(report.build(d)[0])
    least = [line for line in md.splitlines() if "no significant drop" in line or "flagged" in line]
    assert least and all(f"no significant drop: {label}" not in line for line in least)


def test_results_table_carries_the_records_numbers(measured, tmp_path, capsys):
    d = _suite(tmp_path / "runs", measured)
    fast = copy.deepcopy(measured)
    fast["run_id"] = "zz-fast"
    faster(fast["metrics"])
    write_record(d, fast)
    df = results.load(d).set_index("run_id")
    assert df.loc["zz-fast", "metrics.tokens_per_s"] == pytest.approx(fast["metrics"]["tokens_per_s"])
    assert df.loc["zz-fast", "metrics.forgetting.general_ppl.drop"] == pytest.approx(
        measured["metrics"]["forgetting"]["general_ppl"]["drop"])
    assert results.main([str(d), "--sort=-tokens_per_s", "--columns", "run_id,tokens_per_s"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "-rep" in ln or "zz-fast" in ln]
    assert "zz-fast" in lines[0] and len(lines) == 4  # fastest first, every run listed
