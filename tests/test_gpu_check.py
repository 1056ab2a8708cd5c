"""benchmarks/gpu_check.py: its plan composes into real harness runs; on CUDA, cost-only shapes build on the GPU."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_cost_3b_and_8b_have_the_advertised_shapes():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from harness.config import load_spec

    for name, params in {"cost-3b": 3.213e9, "cost-8b": 8.030e9}.items():
        spec = load_spec([f"model={name}"])
        assert spec.model.source == "tiny" and spec.model.scored is False
        with torch.device("meta"):
            n = sum(p.numel() for p in LlamaForCausalLM(LlamaConfig(**spec.model.arch)).parameters())
        assert abs(n - params) / params < 0.01, (name, n)


def test_every_planned_point_is_a_valid_harness_run(tmp_path):
    """The commands the GPU check would run compose into the runs it claims, without running them."""
    from harness.config import load_spec

    gc = _gpu_check()
    points = gc.plan()
    assert {p.method for p in points} == {"lora", "qlora", "dora", "full", "grpo"}
    for p in points:
        cmd = p.command(tmp_path)
        assert cmd[:3] == [sys.executable, "-m", "harness"]
        spec = load_spec(cmd[3:])
        assert spec.train.dtype == "bf16" and not spec.eval.enabled and spec.train.save == "none"
        assert spec.results_dir == str(tmp_path / "runs")
        flags = {"qlora": ("4bit", False), "dora": (None, True)}.get(p.method, (None, False))
        assert (spec.method.name, spec.method.quantize, spec.method.use_dora) == (p.method, *flags)
        assert spec.model.scored is (not p.cost_only)
        assert gc.estimate_gb(p) > 0


def test_dry_run_prints_the_plan_and_commands_and_exits_0(tmp_path):
    res = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--dry-run", "--out", str(tmp_path)], cwd=REPO,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert res.returncode == 0, res.stderr
    for name in ("smollm2-lora", "smollm2-qlora", "smollm2-dora", "smollm2-full", "smollm2-grpo", "cost-1b-lora", "cost-3b-full", "cost-8b-lora"):
        assert name in res.stdout
    assert res.stdout.count("-m harness") == 11 and "-m advisor validate" in res.stdout
    assert not (tmp_path / "runs").exists()  # nothing ran
    bad = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--dry-run", "--only", "smollm2-loar"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "--only" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.gpu
def test_cost_only_model_is_built_on_the_gpu_and_measured(tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from harness.config import load_spec
    from harness.run import execute

    spec = load_spec(["model=cost-50m", "method=lora", "task=tickets", "train.max_steps=4", "train.batch_size=4",
                      "train.dtype=bf16", "eval.enabled=false", "train.save=none", f"results_dir={tmp_path}"])  # fmt: skip
    rec = execute(spec)
    assert rec["status"] == "ok", rec.get("error")
    m = rec["metrics"]
    assert rec["model_identity"]["built_on"] == "cuda"
    assert m["memory_kind"] == "cuda_allocated" and 0 < m["peak_memory_gb"] <= m["peak_reserved_gb"]
    assert m["tokens_per_s"] > 0


def test_build_on_device_makes_the_model_in_the_compute_dtype_without_touching_disk(tmp_path, monkeypatch):
    """The CUDA path for cost-only shapes, exercised on the CPU: no materialised cache entry."""
    import torch

    from harness.spec import ModelSpec
    from harness.models import _build_on_device

    monkeypatch.setenv("TUNEBENCH_CACHE", str(tmp_path / "cache"))
    arch = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
            "num_key_value_heads": 2, "vocab_size": 2048, "tie_word_embeddings": True}  # fmt: skip
    spec = ModelSpec(name="cost-test", source="tiny", name_or_path=None, revision=None, gguf_package=None, gguf_file=None,
                     arch=arch, scored=False, trust_remote_code=False)
    loaded = _build_on_device(spec, seed=0, dtype=torch.bfloat16, device="cpu")
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}
    assert loaded.identity["built_on"] == "cpu" and loaded.arch["vocab_size"] == 2048
    again = _build_on_device(spec, seed=0, dtype=torch.bfloat16, device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(loaded.model.parameters(), again.model.parameters()))  # the seed fixes the init
    assert not (tmp_path / "cache").exists()
