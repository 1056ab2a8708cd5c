"""The facts harness and advisor share (advisor/facts.py) mean the same on both sides: method names,
GPU peaks as the harness's MFU and the advisor's time model look them up, the FLOPs formula's
parameter count, metric directions, target presets, and one translation of a record."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from advisor import facts

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "results" / "mixed"
SMOLLM2 = {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
           "num_key_value_heads": 3, "vocab_size": 49152, "tie_word_embeddings": True}  # fmt: skip


def test_the_harness_ships_exactly_the_methods_the_advisor_knows():
    from harness.method_table import method_names

    assert set(method_names()) == set(facts.METHODS) | set(facts.SIZED_AS)
    assert set(facts.SIZED_AS.values()) <= set(facts.SFT_METHODS)


# What torch.cuda.get_device_name() returns on each card; L40S must not read as L4, nor an A40 as anything.
DEVICE_NAMES = [
    ("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H200", 989e12), ("NVIDIA A100-SXM4-80GB", 312e12),
    ("NVIDIA A100-PCIE-40GB", 312e12), ("NVIDIA L40S", 362e12), ("NVIDIA L4", 121e12), ("Tesla T4", 65e12),
    ("NVIDIA GeForce RTX 4090", 165e12), ("NVIDIA GeForce RTX 3090", 71e12), ("NVIDIA A10G", 70e12),
    ("NVIDIA RTX A6000", 155e12), ("NVIDIA A40", None),
]  # fmt: skip


@pytest.mark.parametrize("device_name,peak", DEVICE_NAMES)
def test_harness_mfu_and_advisor_time_model_use_the_same_gpu_peak(monkeypatch, device_name, peak):
    import torch

    from advisor.inputs.harness_runs import load_runs
    from advisor.validate.speed import run_device
    from harness import measure

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: device_name)
    flops, source = measure.peak_flops("cuda", "bf16")
    assert flops == peak and source.startswith("table:" if peak else "unknown GPU")
    run = replace(load_runs(FIXTURES)[0][0], device="cuda", device_name=device_name)
    dev = run_device(run)  # what `advisor validate` prices the same run's time with
    assert (dev.peak_flops if dev else None) == peak


def test_the_flops_formula_counts_the_matmul_parameters_the_advisor_counts():
    from advisor.inputs.arch import Arch

    arch = Arch.from_hf(SMOLLM2, where="test")
    head = arch.vocab * arch.hidden  # a tied head still multiplies: lookup is free, the projection is not
    assert facts.matmul_params(SMOLLM2) == arch.active_linear_params + head
    full = facts.flops_per_token(SMOLLM2, 128, trains_base=True)
    lora = facts.flops_per_token(SMOLLM2, 128, trains_base=False, adapter_params=1000)
    assert full - lora == pytest.approx(2 * facts.matmul_params(SMOLLM2) - 6000)  # no weight grads: 4N, not 6N


# Written from each metric's meaning, not read from the code under test: faster, more efficient and
# higher-scoring runs are better; more memory, more forgetting, higher loss and longer wall time are worse.
MEANING = {"peak_memory_gb": False, "tokens_per_s": True, "mfu": True, "task_score": True, "forgetting": False,
           "forgot_share": False, "train_loss_last": False, "wall_s": False}


def test_every_metric_points_the_way_its_meaning_says_in_advisor_and_report():
    from harness.analysis import METRICS

    assert facts.HIGHER_IS_BETTER == MEANING
    assert {k: m.higher_is_better for k, m in METRICS.items()} == {k: MEANING[k] for k in METRICS}
    assert set(METRICS) <= set(MEANING) and {"peak_memory_gb", "tokens_per_s", "task_score", "forgetting"} <= set(METRICS)
    assert facts.best_first("tokens_per_s", {"a": 1.0, "b": 2.0}) == ["b", "a"]
    assert facts.best_first("peak_memory_gb", {"a": 1.0, "b": 2.0}) == ["a", "b"]


@pytest.mark.parametrize("preset", list(facts.TARGET_PRESETS))
def test_target_presets_adapt_the_same_modules_in_harness_and_advisor(preset):
    from advisor.inputs.arch import Arch
    from advisor.memory.setup import Setup
    from harness.methods.lora import target_modules
    from harness.spec import MethodSpec

    MethodSpec(name="lora", default_lr=1e-4, r=8, alpha=None, dropout=0.0, targets=preset, quantize=None,
               use_dora=False, inner=None, world_size=1, options={}, init_from=None)  # accepted at the boundary
    advisor = Setup(arch=Arch.from_hf(SMOLLM2, where="test"), method="lora", targets=preset).target_modules
    harness = target_modules(preset)
    # peft's "all-linear" is every Linear but the LM head: the seven of a Llama-style layer
    assert (list(advisor) == harness) or (harness == "all-linear" and advisor == facts.LINEAR_NAMES)


def test_the_report_sizes_a_record_as_advisor_validate_does(tmp_path):
    """One harness → advisor translation: the report's estimate is the one `advisor validate` scores,
    also where a record leaves work to it: the longest batch from the mean length, GRPO's whole setup."""
    import json
    import shutil

    from advisor.inputs.harness_runs import load_runs
    from advisor.validate.memory import validate_runs
    from harness import report

    shutil.copytree(FIXTURES, tmp_path, dirs_exist_ok=True)
    lora = json.loads((FIXTURES / "lora-smollm2-135m-tickets-05105fc867.json").read_text())
    mean = json.loads(json.dumps(lora)) | {"run_id": "lora-mean-length"}
    mean["metrics"]["mean_seq_len"] = 90.0  # no max_batch_seq_len: the peak batch is estimated from it
    grpo = json.loads(json.dumps(lora)) | {"run_id": "grpo-whole-setup"}
    grpo["config"]["method"] |= {"name": "grpo", "inner": "lora", "options": {"num_generations": 4, "max_completion_length": 64}}
    grpo["metrics"] |= {"mean_seq_len": 120.0, "completion_length": 40.0}
    for rec in (mean, grpo):
        (tmp_path / f"{rec['run_id']}.json").write_text(json.dumps(rec))

    frame = report.load_frame(tmp_path)
    estimates, why = report.advisor_estimates(frame, frame)
    assert why is None
    runs, _ = load_runs(tmp_path)
    scored = {r.id: r.predicted_gb for r in validate_runs(runs) if r.metric in ("cpu_rss_delta", "cuda_allocated")}
    by_report = {frame.loc[i, "run_id"]: float(estimates[i]) for i in frame.index if frame.loc[i, "status"] == "ok"}
    assert len(by_report) == 17 and by_report == pytest.approx(scored)
