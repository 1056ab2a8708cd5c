"""rsLoRA, the method added through docs/extending.md: one method file, one YAML, one table line.

It must learn, scale its update by alpha/√r (not LoRA's alpha/r), keep that scale through save,
reload and merged export, validate against the record schema and be sized by the report's advisor.
"""

from __future__ import annotations

import pytest

from harness.config import load_spec
from tests.conftest import TINY

RSLORA = ["method=rslora", "method.r=4", "train.lr=0.02", "train.max_steps=12", "train.save=adapter", "eval.enabled=false"]


def _scales(model) -> set[float]:
    return {m.scaling["default"] for m in model.modules() if isinstance(getattr(m, "scaling", None), dict) and "default" in m.scaling}


def _prepared(method: str, tmp_path):
    import torch

    from harness import models
    from harness.methods import get_method

    spec = load_spec([*TINY, f"results_dir={tmp_path}", f"method={method}", "method.r=4", "method.alpha=8"])
    loaded = models.load(spec.model, seed=0, dtype=torch.float32, device="cpu")
    return get_method(spec.method.name).prepare(loaded.model, spec.method, spec.train)


def test_rslora_scales_the_update_by_alpha_over_sqrt_r(tmp_path):
    assert _scales(_prepared("rslora", tmp_path)) == {8 / 4**0.5}  # alpha/√r = 4
    assert _scales(_prepared("lora", tmp_path)) == {8 / 4}  # LoRA at the same alpha and r: alpha/r = 2


@pytest.fixture(scope="module")
def rslora_run(tmp_path_factory):
    from harness.run import execute

    results = tmp_path_factory.mktemp("runs")
    record = execute(load_spec([*TINY, f"results_dir={results}", *RSLORA]))
    assert record["status"] == "ok", record["error"]
    return record, results


def test_rslora_learns_and_its_record_is_valid(rslora_run):
    from harness.record import validate

    record, results = rslora_run
    losses = record["metrics"]["train_losses"]
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - 0.05, f"loss did not fall: {losses}"
    assert record["config"]["method"]["name"] == "rslora" and validate(record) == []


def test_rslora_artifact_reloads_and_exports_with_its_scale(rslora_run, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from harness import artifacts

    record, results = rslora_run
    located = artifacts.locate(record["run_id"], results)
    model, tok = artifacts.load_trained(located, device="cpu")
    assert _scales(model) == {8 / 4**0.5}  # the YAML's alpha 8 at r=4: use_rslora survived save and reload
    enc = tok(["Is 5 fine? yes", "The quick brown fox"], return_tensors="pt", padding=True)
    with torch.inference_mode():
        tuned = model(**enc).logits.float()
        with model.disable_adapter():
            base = model(**enc).logits.float()
    assert (tuned - base).abs().max() > 1e-3  # the adapter changes the output: the comparison below can fail
    out, _ = artifacts.export(located, tmp_path / "merged", merge_adapter=True)
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    with torch.inference_mode():
        assert torch.allclose(merged(**enc).logits.float(), tuned, atol=1e-4)


def test_the_report_sizes_rslora_exactly_as_lora(rslora_run):
    """rsLoRA changes only the scale, so its estimate is LoRA's for the same record, to the byte,
    and not full fine-tuning's (a sizing that ignored the method would give one number for all;
    on this tiny model full fine-tuning's states are smaller than LoRA's adapters and their overhead)."""
    import copy

    from advisor.validate.memory import estimate_record
    from harness import report

    record, results = rslora_run
    frame = report.load_frame(results)
    estimates, why = report.advisor_estimates(frame, frame)
    assert why is None and len(estimates) == 1 and estimates.notna().all()

    def sized_as(method: str) -> float:
        other = copy.deepcopy(record)
        other["config"]["method"]["name"] = method
        gb, reason = estimate_record(other)
        assert gb is not None, reason
        return gb

    assert estimates.iloc[0] == pytest.approx(sized_as("lora"), rel=1e-9)
    assert sized_as("full") != pytest.approx(sized_as("lora"), rel=1e-3)
