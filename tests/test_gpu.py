"""CUDA paths: the allocator budget, the memory kinds, bf16, the QLoRA device map and the datasheet
MFU table. Marked ``gpu`` (not in the fast tier: run with ``pytest -m gpu``) and skipped cleanly
where there is no CUDA device."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

from tests.conftest import REPO, TINY  # noqa: E402


def _cli(tmp_path, name: str, *overrides: str) -> tuple[int, dict]:
    """A fresh process: the allocator cap (set_per_process_memory_fraction) must not outlive the run."""
    out = tmp_path / name
    res = subprocess.run([sys.executable, "-m", "harness", *TINY, f"results_dir={out}", *overrides], cwd=REPO,
                         capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    (path,) = out.glob("*.json")
    return res.returncode, json.loads(path.read_text())


def _run(tmp_path, *overrides: str) -> dict:
    from harness.config import load_spec
    from harness.run import execute

    record = execute(load_spec([*TINY, f"results_dir={tmp_path}", *overrides]))
    assert record["status"] == "ok", record["error"]
    return record


def test_cuda_memory_kinds(tmp_path):
    m = _run(tmp_path, "eval.enabled=false")["metrics"]
    assert m["memory_kind"] == "cuda_allocated"
    # allocated is the growth above the pre-load baseline; reserved is the caching allocator's total
    assert 0 < m["peak_memory_gb"] <= m["peak_reserved_gb"]


def test_cuda_budget_is_the_allocator_cap(tmp_path):
    """budget_gb caps the caching allocator: a budget far above the tiny run fits, one below it is `oom`."""
    code, roomy = _cli(tmp_path, "roomy", "eval.enabled=false", "budget_gb=4")
    assert roomy["status"] == "ok", roomy["error"]
    grew = roomy["metrics"]["peak_reserved_gb"]
    big = ["model.arch.hidden_size=1024", "model.arch.intermediate_size=4096", "model.arch.num_hidden_layers=8",
           "model.arch.num_attention_heads=8", "model.arch.num_key_value_heads=8", "method=full", "eval.enabled=false"]
    code, tight = _cli(tmp_path, "tight", *big, f"budget_gb={max(0.05, grew / 2):.3f}")
    assert tight["status"] == "oom", tight["error"]
    assert "out of memory" in tight["error"]["message"].lower() or tight["error"]["type"].endswith("OutOfMemoryError")


def test_bf16_is_the_cuda_default_and_trains(tmp_path):
    from harness import models

    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    assert models.resolve_dtype("auto", "cuda") == torch.bfloat16
    record = _run(tmp_path, "method=lora", "eval.enabled=false", "train.max_steps=12")
    losses = record["metrics"]["train_losses"]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.05, losses
    assert record["metrics"]["peak_flops_source"].startswith(("table:", "unknown GPU"))


def test_qlora_device_map_puts_the_4bit_base_on_the_gpu(tmp_path):
    from bitsandbytes.nn import Linear4bit

    from harness import models
    from harness.config import load_spec

    spec = load_spec([*TINY, "method=qlora"])
    loaded = models.load(spec.model, seed=0, dtype=torch.bfloat16, device="cuda", quantize="4bit")
    layers = [m for m in loaded.model.modules() if isinstance(m, Linear4bit)]
    assert layers and all(m.weight.device.type == "cuda" and m.weight.dtype == torch.uint8 for m in layers)
    assert all(m.compute_dtype == torch.bfloat16 for m in layers)
    record = _run(tmp_path, "method=qlora", "eval.enabled=false", "train.max_steps=12")
    losses = record["metrics"]["train_losses"]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.05, losses


def test_datasheet_mfu_table(tmp_path):
    """On the card at hand: the peak is its datasheet's dense bf16 figure (tests/test_facts.py's
    DEVICE_NAMES, written from NVIDIA's datasheets), and the run's MFU is the FLOPs counted by hand
    for the tiny Llama (tests/conftest.py) × tokens/s over that peak."""
    from tests.conftest import tiny_flops_per_token
    from tests.test_facts import DEVICE_NAMES

    name = torch.cuda.get_device_name()
    peak = dict(DEVICE_NAMES).get(name)
    if peak is None:
        pytest.skip(f"{name}: no datasheet figure written in tests/test_facts.py")
    record = _run(tmp_path, "eval.enabled=false")
    m, t = record["metrics"], record["config"]["train"]
    assert m["peak_flops_source"].startswith("table:") and m["peak_tflops"] * 1e12 == pytest.approx(peak)
    seq = m["tokens_trained"] / (m["steps"] * t["batch_size"] * t["grad_accum"])
    fpt = tiny_flops_per_token(record["model_arch"], seq, trains_base=False, adapter_params=m["trainable_params"])
    assert m["mfu"] == pytest.approx(fpt * m["tokens_per_s"] / peak, rel=1e-6)
