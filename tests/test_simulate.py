"""The simulator equals reality where both can run: the same step, the same tracker, fake vs real tensors.

For a tiny Llama and each method (QLoRA through bitsandbytes' real layers: real quantization and
kernels on one side, fake packed weights and bitsandbytes' fake kernels on the other), the peak and
its breakdown by kind, and every phase's peak, must be equal byte for byte. The tiny model is the
step's whole mechanism at small size: embeddings, attention with a padding mask, gated MLP, fp32
LoRA adapters under bf16 autocast, the fp32-upcast loss, AdamW's states after a first step.
"""

from __future__ import annotations

from functools import lru_cache

import pytest

TINY = dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=256)  # fmt: skip


# Wide and short: 4-bit MLP weights of 2048 × 128 dominate, so the weight bitsandbytes dequantizes
# for backward (bf16, 512 KiB) sets the backward peak.
WIDE = dict(TINY, hidden_size=128, intermediate_size=2048, num_hidden_layers=1, vocab_size=64)


@lru_cache(maxsize=None)
def _pair(method: str, wide: bool = False):
    from advisor.simulate.step import StepSpec, run

    s = StepSpec(method=method, rank=4, batch_size=1 if wide else 2, seq_len=4 if wide else 32, lora_dropout=0.0)
    cfg = WIDE if wide else TINY
    return run(cfg, s), run(cfg, s, real=True)


@pytest.mark.parametrize("method", ["full", "lora", "qlora", "dora"])
def test_simulated_step_equals_the_real_step(method):
    fake, real = _pair(method)
    assert fake["peak"] == real["peak"]
    assert fake["phases"] == real["phases"]
    # the comparison can fail: optimizer states and gradients are in it, and the peak is activation-sized
    assert fake["phases"]["optimizer step"]["optimizer_states"] > 0
    assert fake["phases"]["optimizer step"]["gradients"] > 0
    assert fake["peak"]["activations"] > fake["peak"]["parameters"] / 4


def test_qlora_counts_the_packed_weight_its_quant_state_and_the_dequantized_copy():
    fake, real = _pair("qlora", wide=True)
    assert fake["quant_bytes"] == real["quant_bytes"] > 0
    assert fake["phases"] == real["phases"]
    # backward dequantizes each 4-bit weight to the compute dtype: the largest such copy is a temporary
    assert fake["phases"]["backward"]["temporaries"] >= fake["bnb_dequant_bytes"] == 2048 * 128 * 2


def test_float8_linears_build_and_run_on_fake_tensors():
    """torchao's Float8Linear (tensorwise) saves its bf16 input and weight for backward and casts to
    fp8 per matmul: the simulated peak is bf16's, the fp8 copies are transient."""
    pytest.importorskip("torchao")
    import torch

    from advisor.simulate import build
    from advisor.simulate.step import StepSpec, run

    cfg = dict(TINY, hidden_size=128, intermediate_size=256)
    meta = build.meta_model(cfg, torch.bfloat16)
    assert build.float8_linears(meta) == 7 * cfg["num_hidden_layers"]  # q k v o gate up down, not the head
    bf16, fp8 = (run(cfg, StepSpec(method="full", batch_size=2, seq_len=32, float8=f)) for f in (False, True))
    assert fp8["peak"]["parameters"] == bf16["peak"]["parameters"]
    assert bf16["peak"]["total"] <= fp8["peak"]["total"] <= 1.1 * bf16["peak"]["total"]


def test_estimate_simulate_answers_in_the_analytic_estimates_keys(tmp_path, capsys):
    import json

    from advisor.cli import main

    (tmp_path / "config.json").write_text(json.dumps({**TINY, "_name_or_path": "org/tiny-llama"}))
    args = ["estimate", "--model", str(tmp_path), "--method", "lora", "--rank", "4", "--batch-size", "2", "--seq-len", "32", "--json"]
    assert main(args) == 0
    analytic = json.loads(capsys.readouterr().out)
    assert main([*args, "--simulate"]) == 0
    sim = json.loads(capsys.readouterr().out)
    assert set(analytic) <= set(sim) and set(analytic["breakdown"]) == set(sim["breakdown"])
    assert sim["simulated"] is True and "simulated" not in analytic
    assert sim["peak_allocated_gb"] == pytest.approx(sum(sim["breakdown"].values()), abs=2e-3)
    assert sim["peak_allocated_gb"] <= sim["peak_reserved_gb"] <= sim["peak_reserved_gb_range"][1]
    assert all(term["mechanism"] for term in sim["overhead"]["terms"].values())
    assert set(sim["phases"]) == {"forward", "loss", "backward", "optimizer step"}


def test_estimate_simulate_refuses_what_transformers_cannot_build_in_one_line(tmp_path):
    import json
    import subprocess
    import sys

    (tmp_path / "config.json").write_text(json.dumps({**TINY, "model_type": "llama-nonsense"}))
    res = subprocess.run([sys.executable, "-m", "advisor", "estimate", "--model", str(tmp_path), "--simulate"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("advisor: error:")]
    assert len(lines) == 1 and "llama-nonsense" in lines[0] and "Traceback" not in res.stderr, res.stderr[-800:]


def test_simulated_reserved_memory_is_the_analytic_overhead_model(monkeypatch):
    """One overhead model: the simulated path's reserved memory is advisor.overhead's terms (cuBLAS
    workspaces + FRAG × the churned items), so changing FRAG there moves it by FRAG × churn."""
    from advisor.memory import overhead
    from advisor.simulate import report

    fake, _ = _pair("lora")
    base = report.breakdown(fake, adapted=True, per_gpu=False)
    churn = overhead.churn_gb(base.items())
    assert churn == pytest.approx(base.activations) and churn > 0  # adapters and weights are static
    assert base.peak_reserved_gb == pytest.approx(overhead.reserved_gb(base.peak_allocated_gb + overhead.CUBLAS_WORKSPACE_GB, churn))
    monkeypatch.setattr(overhead, "FRAG", overhead.FRAG + 0.5)
    moved = report.breakdown(fake, adapted=True, per_gpu=False)
    assert moved.peak_reserved_gb - base.peak_reserved_gb == pytest.approx(0.5 * churn)
    lo, hi = overhead.RANGES[base.peak_phase if base.peak_phase == "optimizer step" else "backward start"]
    assert moved.peak_reserved_gb_range[1] == pytest.approx(moved.peak_reserved_gb * (1 + hi))


def test_doras_identity_matrices_do_not_outlive_their_forward():
    """peft's DoRA forms lora_B(lora_A(eye(d_in))) for a detached weight norm: a real run frees the eye and
    the product when the module returns. The tracker's hook cycles kept them into backward until a full
    collection after each decoder layer (down_proj here: d_in 2048, an eye of 16 MiB in fp32)."""
    from advisor.simulate.step import StepSpec, run

    r = run(WIDE, StepSpec(method="dora", rank=4, batch_size=1, seq_len=4, lora_dropout=0.0))
    assert r["phases"]["forward"]["total"] > 2048 * 2048 * 4  # the eye is there while its module runs
    assert r["phases"]["backward"]["total"] < 2048 * 2048 * 2  # and no d_in × d_in tensor reaches backward


def test_attention_dropout_is_simulated_as_a_gpus_fused_kernel_holds_it():
    """A GPU's flash/memory-efficient SDPA applies attention dropout in the kernel (an RNG seed kept, nothing
    S × S); torch's CPU SDPA would fall back to its math path and keep fp32 scores. GPTBigCode defaults
    attn_pdrop to 0.1: its simulated step must hold what the same step at p = 0 holds."""
    from advisor.simulate.step import StepSpec, run

    big = dict(model_type="gpt_bigcode", n_embd=64, n_head=4, n_layer=1, vocab_size=64, multi_query=True, n_positions=256)
    s = StepSpec(method="full", batch_size=2, seq_len=128)
    assert run({**big, "attn_pdrop": 0.1}, s)["peak"] == run({**big, "attn_pdrop": 0.0}, s)["peak"]
