"""The memory model against the published measurements and the harness's own runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from advisor.inputs import harness_runs
from advisor.inputs.harness_runs import load_runs
from advisor.validate import memory as validate_memory
from advisor.validate.calibration import mape

from advisor_testkit import make_record, write

REPO = Path(__file__).resolve().parents[2]
HARNESS_CPU = Path(__file__).resolve().parent / "data" / "harness_cpu"


NEW_ROWS = {"LR1", "LR2", "LR3", "LR4", "LR5", "LR6", "LR7", "LR8", "LR9", "LR10", *(f"LC{i}" for i in range(1, 13)),
            *(f"FA{i}" for i in range(1, 12))}  # published-memory-2.csv


def test_published_mape_within_15_percent():
    rows = validate_memory.validate_published()
    assert {r.id for r in rows} >= {"P1", "P2", "P3", "P4", "T1", "T3", "T5", "D1", "D2", "D3", "D4", "D5", "F1", "Q4a", "Q4b", "Q4c"}
    assert mape(rows, metrics=validate_memory.KNOWN) <= 15
    assert mape(rows) <= 15  # the '?' rows too, compared as reserved
    assert all(abs(r.error_pct) <= 30 for r in rows if not r.excluded)  # no row hidden behind the mean


def test_every_new_row_is_estimated_none_refused():
    """MoE, Phi, NeoX, Falcon and BigCode rows included: every row of the second table gets an estimate."""
    rows = {r.id: r for r in validate_memory.validate_published()}
    assert NEW_ROWS <= set(rows)
    assert all(rows[i].predicted_gb and rows[i].predicted_gb > 0 for i in NEW_ROWS)
    features = {r["feature"] for r in validate_memory.published_rows() if r["id"] in NEW_ROWS}
    assert {"moe", "arch-phi", "arch-neox", "arch-falcon", "arch-bigcode"} <= features
    assert all(not rows[r["id"]].excluded for r in validate_memory.published_rows() if r["class"] == "coverage")


def test_leave_one_source_out_mae_and_coverage():
    rows, sources = validate_memory.validate_loso()
    scored = [r for r in rows if r.in_range is not None]
    assert len(scored) == sum(1 for r in rows if not r.excluded) >= 52 and len(sources) == 9
    mae = sum(abs(r.error_pct) for r in scored) / len(scored)
    assert mae <= 12  # the bar; 5.8% at this commit
    assert sum(r.in_range for r in scored) / len(scored) >= 0.90
    for s in sources:  # each source is scored against a range it did not shape
        assert s.n > 0 and s.low < 0 < s.high and s.mae_pct < 15, s
    moe = [r for r in scored if r.model == "Mixtral-8x7B"]
    assert len(moe) == 2 and all(abs(r.error_pct) < 10 for r in moe)  # the experts are counted


def test_loso_range_comes_from_other_sources_only():
    rows_by_frac = {f: validate_memory.validate_published(frag=f) for f in (0.02, 0.1)}
    _, sources = validate_memory.calibration.loso(rows_by_frac)
    # An extreme residual in one source widens every other source's range but never its own.
    worst = max((r for r in validate_memory.calibration.scored(rows_by_frac[0.02]) if r.phase == "backward start"),
                key=lambda r: r.measured_gb / r.predicted_gb)  # fmt: skip
    own = next(s for s in sources if s.source == worst.source)
    # the ranges are per peak phase: compare the sources scored on a backward-start row (a source whose
    # rows all peak in the optimizer step gets that phase's range, which this residual does not shape)
    sharing = {r.source for r in validate_memory.calibration.scored(rows_by_frac[0.02]) if r.phase == "backward start"}
    others = [s for s in sources if s.source != worst.source and s.source in sharing]
    assert len(others) >= 6 and own.high < min(s.high for s in others)


def test_like_is_compared_with_like():
    rows = {r.id: r for r in validate_memory.validate_published()}
    assert rows["F1"].metric == "allocated" and rows["P1"].metric == "reserved"
    b = validate_memory.estimate(validate_memory.published_setup(next(r for r in validate_memory.published_rows() if r["id"] == "F1")))
    assert rows["F1"].predicted_gb == pytest.approx(b.peak_allocated_gb)
    assert "metric unknown" in rows["Q4a"].note  # '?' handled explicitly
    assert "alpaca" in rows["D1"].note and rows["D1"].seq_len == 512  # documented typical length


def test_excluded_rows_say_why():
    rows = {r.id: r for r in validate_memory.validate_published()}
    assert "initialisation" in rows["D5"].excluded
    assert "dubious" in rows["LR9"].excluded and "dubious" in rows["LR10"].excluded
    assert "87%" in rows["LC3"].excluded
    assert {r.id for r in rows.values() if r.excluded} == {"D5", "LR9", "LR10", "LC3"}
    assert all(r.predicted_gb for r in rows.values())  # excluded from the score, still estimated and shown


def test_fit_reproduces_the_shipped_constants():
    from advisor.memory import overhead

    best = validate_memory.fit()
    assert best["mape_pct"] <= 15
    assert best["FRAG"] == overhead.FRAG
    assert best["RANGES"] == overhead.RANGES
    assert best["UNTRACKED_GB"] == overhead.UNTRACKED_GB


def test_verdict_figure_covers_nvidia_smi():
    from advisor.memory import overhead

    rows = validate_memory.device_rows()
    assert len(rows) == 18  # high end + context (+ NCCL) + residue >= nvidia-smi on >= 90% of single-GPU runs
    single = {r["id"] for r in validate_memory.published_rows() if validate_memory.SMI.search(r["notes"]) and r["gpus"] == "1"}
    covered = [r.in_range for r in rows if r.id in single]
    assert len(single) == 12 and sum(covered) >= overhead.UNTRACKED_COVERAGE * len(single) and not all(covered)
    above = [r for r in rows if r.id in single and not r.in_range]  # FA10: cached blocks beside an optimizer-step peak
    assert [(r.id, r.phase) for r in above] == [("FA10", "optimizer step")]
    # without the fitted residue (context alone) the verdict would have passed more runs that used more
    old, overhead.UNTRACKED_GB = overhead.UNTRACKED_GB, 0.0
    try:
        assert sum(r.in_range for r in validate_memory.device_rows() if r.id in single) < sum(covered)
    finally:
        overhead.UNTRACKED_GB = old


def test_validate_json_reports_leave_one_source_out(run_cli, tmp_path):
    code, out, _ = run_cli("validate", str(tmp_path), "--json")
    loso = json.loads(out)["published"]["loso"]
    assert code == 0 and loso["n"] >= 45 and loso["mae_pct"] <= 12 and loso["in_range_pct"] >= 90
    assert {s["source"] for s in loso["sources"]} == {"peft", "torchtune-readme", "torchtune-docs", "torchtune-flags", "qwen",
                                                      "litgpt-tables", "litgpt-hub", "fms-acceleration", "fms-acceleration-liger"}  # fmt: skip


def test_harness_runs_compare_the_right_metric(tmp_path):
    write(tmp_path, make_record("cpu-run", kind="cpu_rss_delta", peak=2.0))
    write(tmp_path, make_record("gpu-run", device="cuda", kind="cuda_allocated", peak=1.0, reserved=1.2))
    write(tmp_path, make_record("failed", status="oom"))
    write(tmp_path, make_record("grpo-run", method="grpo", inner="lora"))
    runs, warnings = load_runs(tmp_path)
    rows = validate_memory.validate_runs(runs)
    kinds = {(r.id, r.metric) for r in rows}
    assert ("cpu-run", "cpu_rss_delta") in kinds
    assert {("gpu-run", "cuda_allocated"), ("gpu-run", "cuda_reserved")} <= kinds
    assert not any(r.id == "failed" for r in rows)  # only ok runs
    grpo = next(r for r in rows if r.id == "grpo-run")
    assert grpo.excluded and grpo.error_pct is None
    cpu = next(r for r in rows if r.id == "cpu-run")
    assert "× mean" in cpu.note  # the padded peak length is an assumption, and says so


def test_real_harness_cpu_runs_within_15_percent():
    """12 real CPU records the harness wrote (tests/advisor/data/harness_cpu/README.md)."""
    runs, warnings = load_runs(HARNESS_CPU)
    rows = validate_memory.validate_runs(runs)
    assert len(runs) == 12 and not warnings and all(r.error_pct is not None for r in rows)
    assert mape(rows) <= 15
    smol = [r for r in rows if r.model == "smollm2-135m"]
    assert len(smol) == 3 and all(abs(r.error_pct) <= 15 for r in smol)


def test_cpu_fit_reproduces_the_shipped_constants():
    from advisor.memory import estimate as memory_estimate

    best = validate_memory.fit_cpu(load_runs(HARNESS_CPU)[0])
    assert (best["CPU_SLACK_FRAC"], best["CPU_RUNTIME_GB"]) == (memory_estimate.CPU_SLACK_FRAC, memory_estimate.CPU_RUNTIME_GB)


def test_harness_cpu_runs_within_15_percent():
    """Over the harness's own CPU runs in results/ (skipped until the harness has written some)."""
    runs, _ = load_runs(REPO / "results")
    rows = [r for r in validate_memory.validate_runs(runs) if r.metric == "cpu_rss_delta" and r.error_pct is not None]
    if not rows:
        pytest.skip("no harness CPU runs in results/ yet")
    assert mape(rows) <= 15


def test_loader_skips_what_is_not_a_record(tmp_path):
    write(tmp_path / "runs", make_record("good"))
    (tmp_path / "runs" / "corrupt.json").write_text("{")
    (tmp_path / "runs" / "report.json").write_text('{"title": "a report"}')
    (tmp_path / "runs" / ".good.json.abc.tmp").write_text("{")
    write(tmp_path / "runs" / "artifacts", make_record("in-artifacts"))
    write(tmp_path / "_cache", make_record("in-cache"))
    (tmp_path / "runs" / "notes.txt").write_text("hello")
    runs, warnings = load_runs(tmp_path)
    assert [r.run_id for r in runs] == ["good"]
    assert any("unreadable" in w and "corrupt.json" in w for w in warnings)
    assert any("not run records" in w and "report.json" in w for w in warnings)


def test_record_shape_errors_never_crash(tmp_path):
    bad = make_record("bad")
    del bad["config"]["train"]
    write(tmp_path, bad)
    runs, warnings = harness_runs.load_runs(tmp_path)
    assert runs == [] and warnings


def test_real_harness_record_round_trips():
    from advisor_testkit import TINY_RECORD

    run = harness_runs.run_from_record(json.loads(TINY_RECORD.read_text()), TINY_RECORD.name)
    assert run.method == "lora" and run.device == "cpu" and run.arch.layers == 2
    from advisor.memory.setup import setup_for_run

    setup, why = setup_for_run(run)
    assert setup is not None and setup.precision == "fp32" and setup.device == "cpu", why


def test_a_records_loss_and_checkpointing_are_what_the_memory_model_sizes():
    """train.loss=chunked and train.checkpointing=selective in a record size as the harness ran them: the
    chunked loss as a fused one of 1,024-token chunks (never all the logits), selective checkpointing as
    such; and the estimate moves the way the mechanisms say (less than the standard loss, no checkpointing)."""
    from advisor.memory.estimate import estimate
    from advisor.memory.setup import setup_for_run

    def sized(loss, ckpt):
        rec = make_record("r", batch=16, seq=512, mean_seq=512)
        rec["config"]["train"].update(loss=loss, checkpointing=ckpt, grad_checkpointing=False)
        setup, why = setup_for_run(harness_runs.run_from_record(rec, "r.json"))
        assert setup is not None, why
        return setup, estimate(setup).peak_allocated_gb

    (plain, plain_gb), (lean, lean_gb) = sized("standard", None), sized("chunked", "selective")
    assert (plain.loss_kind, plain.ckpt) == ("full", "none")
    assert (lean.loss_kind, lean.loss_chunk_tokens, lean.ckpt) == ("fused", 1024, "selective")
    assert lean_gb < plain_gb
    full, _ = sized("standard", "full")
    assert full.grad_checkpointing and full.ckpt == "full"
