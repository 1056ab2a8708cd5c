"""`advisor validate --simulate`'s memory table: the simulated path on the published rows, leave-one-source-out,
built from the committed cache (advisor/data/simulated_published.json); nothing is simulated here."""

from __future__ import annotations

import copy
from functools import lru_cache

from advisor.simulate import published


@lru_cache(maxsize=None)
def _cache() -> dict:
    return published.load_cache()


def test_the_simulated_loso_table_is_built_from_the_cache_for_every_scored_source():
    from advisor.validate import calibration
    from advisor.validate.memory import validate_published

    d = published.loso(copy.deepcopy(_cache()))
    simulated_ids = {r.id for r in next(iter(published.rows_by_frac(_cache())[0].values()))}
    scored = {r.source for r in calibration.scored(validate_published()) if r.id in simulated_ids}
    assert {s["source"] for s in d["simulated"]} == scored
    assert [s["source"] for s in d["analytic"]] == [s["source"] for s in d["simulated"]]  # the same rows, both paths
    for s in d["simulated"] + d["analytic"]:
        assert s["n"] > 0 and 0 <= s["under_high"] / s["n"] <= 1 and s["mae_pct"] >= 0
    assert d["versions"]["torch"] and "simulated_published.py" in d["command"]
    skipped = {s["id"] for s in d["skipped"]}
    assert {i for i, e in _cache()["rows"].items() if "error" in e} <= skipped  # listed, not dropped
    assert "T1" in skipped and all(s["why"] for s in d["skipped"])  # torchtune's optimizer in backward: not the harness's step


def test_leaving_out_the_overhead_model_changes_the_simulated_table():
    with_overhead = published.loso(copy.deepcopy(_cache()))["simulated"]
    without = published.loso(copy.deepcopy(_cache()), overhead_term=False)["simulated"]
    assert [s["mae_pct"] for s in with_overhead] != [s["mae_pct"] for s in without]
    assert sum(s["bias_pct"] * s["n"] for s in without) < sum(s["bias_pct"] * s["n"] for s in with_overhead)


def test_a_row_missing_from_the_cache_is_listed_with_the_reason():
    cache = copy.deepcopy(_cache())
    gone = next(i for i, e in cache["rows"].items() if "error" not in e)
    del cache["rows"][gone]
    _, skipped = published.rows_by_frac(cache)
    assert (gone, "not in the cache (not simulated yet)") in skipped


def test_full_depth_is_extrapolated_per_phase_and_the_peak_phase_chosen_at_full_depth():
    two = {"phases": {"forward": {"total": 10, "activations": 4}, "optimizer step": {"total": 12, "activations": 0}},
           "trainable_params": 1, "total_params": 10, "trainable_bytes": 2, "quant_bytes": 0, "bnb_dequant_bytes": 5}
    three = {"phases": {"forward": {"total": 14, "activations": 7}, "optimizer step": {"total": 15, "activations": 0}},
             "trainable_params": 1, "total_params": 12, "trainable_bytes": 2, "quant_bytes": 0, "bnb_dequant_bytes": 5}
    full = published.extrapolate({"L2": two, "L3": three}, 10)
    assert full["phases"]["forward"] == {"total": 10 + 8 * 4, "activations": 4 + 8 * 3}
    assert full["peak_phase"] == "forward"  # 42 > 12 + 8 × 3 = 36, though the optimizer step leads at 2 layers
    assert full["total_params"] == 10 + 8 * 2 and full["bnb_dequant_bytes"] == 5


def test_fragmentation_is_applied_to_the_rows_that_measured_reserved_memory_only():
    by_frac, _ = published.rows_by_frac(_cache())
    low, high = by_frac[min(by_frac)], by_frac[max(by_frac)]
    for a, b in zip(low, high):
        if a.metric == "allocated":
            assert a.predicted_gb == b.predicted_gb, a.id
        elif a.phase == "backward start":  # FRAG × the churn (activations): more reserved at a larger FRAG
            assert b.predicted_gb > a.predicted_gb + 0.1, a.id
        else:  # a LoRA optimizer step churns only the adapters' gradients
            assert b.predicted_gb >= a.predicted_gb, a.id


def test_a_records_step_extrapolated_from_two_depths_equals_the_step_at_its_depth():
    """`validate DIR --simulate` simulates each SmolLM2 record at 2 and 3 layers and extrapolates to its depth
    (the published rows' method); for LoRA the extrapolation is exact."""
    from dataclasses import replace

    from advisor.inputs.catalog import MODELS
    from advisor.memory.setup import Setup
    from advisor.simulate import model_config, step, step_spec
    from advisor.simulate.published import step_at_depth
    from advisor.simulate.validate_sim import _extrapolated_peak

    arch = replace(MODELS["SmolLM2-135M"].arch, layers=4, vocab=512)
    setup = Setup(arch=arch, method="lora", rank=8, batch_size=2, seq_len=32, lora_dropout=0.1)
    cfg, cpu = model_config.from_arch(arch), {"amp": "cpu", "optimizer_impl": "default"}
    assert _extrapolated_peak(setup, cfg, cpu) == step.run(cfg, step_spec(setup, **cpu))["peak"]
    two, three = (step_at_depth(setup, cfg, d, **cpu)["peak"]["total"] for d in (2, 3))
    assert two < three  # the depths are simulated as asked, not at the record's own depth
