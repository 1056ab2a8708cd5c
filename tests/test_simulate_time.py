"""Time from the simulated step: the operators' FLOPs match the closed form, the pricing is a
roofline on the datasheet, and the validation reads its published rows.

Closed form for a dense decoder trained in full (every weight trains): each linear's forward is
2·N·T FLOPs (N its weights, T the tokens), its backward 4·N·T (input and weight gradients), so
the matmuls of a step are exactly 6·N·T with N every linear weight including the LM head; SDPA's
QKᵀ and AV are 4·B·S²·d per layer forward and 2.5× that backward (torch's formulas count the
full square), 3.5 × 4·B·S²·d·L in all. Full checkpointing re-runs each decoder layer's forward up
to its last saved tensor: torch's non-reentrant checkpoint stops early, so the layer's final
matmul (down_proj, whose output nothing saves) is not re-run.
"""

from __future__ import annotations

import json
from functools import lru_cache

import pytest

TINY = dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=256)  # fmt: skip
B, S = 2, 32


def _linear_weights(cfg: dict) -> tuple[int, int]:
    """(decoder linears, LM head) weights of TINY: q, o = d×d; k, v = d×kv; gate, up, down = d×ff."""
    d, ff, heads, kv = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    kv_dim = d // heads * kv
    per_layer = 2 * d * d + 2 * d * kv_dim + 3 * d * ff
    return per_layer * cfg["num_hidden_layers"], d * cfg["vocab_size"]


@lru_cache(maxsize=None)
def _totals(method: str = "full", checkpointing: str = "none"):
    from advisor.simulate.ops import totals, trace
    from advisor.simulate.step import StepSpec

    spec = StepSpec(method=method, rank=4, batch_size=B, seq_len=S, lora_dropout=0.0, checkpointing=checkpointing)
    return totals(trace(TINY, spec))


def test_matmul_flops_of_a_full_step_are_6NT():
    decoder, head = _linear_weights(TINY)
    t = _totals()["micro"]
    assert t["matmul"]["flops"] == 6 * (decoder + head) * B * S
    attn_fwd = 4 * B * S * S * TINY["hidden_size"] * TINY["num_hidden_layers"]
    assert t["attention"]["flops"] == 3.5 * attn_fwd
    assert t["memory"]["bytes"] > 0 and t["memory"]["flops"] == 0


def test_full_checkpointing_reruns_each_decoder_forward_once():
    decoder, head = _linear_weights(TINY)
    plain, ckpt = _totals()["micro"], _totals(checkpointing="full")["micro"]
    down_proj = TINY["intermediate_size"] * TINY["hidden_size"] * TINY["num_hidden_layers"]
    assert ckpt["matmul"]["flops"] - plain["matmul"]["flops"] == 2 * (decoder - down_proj) * B * S
    assert ckpt["attention"]["flops"] - plain["attention"]["flops"] == 4 * B * S * S * TINY["hidden_size"] * TINY["num_hidden_layers"]


def test_lora_step_skips_the_frozen_weight_gradients():
    decoder, head = _linear_weights(TINY)
    full, lora = _totals()["micro"], _totals("lora")["micro"]
    # frozen base: no weight-gradient matmuls (2NT of 6NT), adapters add a little back
    assert 4 * (decoder + head) * B * S * 0.85 < lora["matmul"]["flops"] < 5 * (decoder + head) * B * S
    assert lora["matmul"]["flops"] < full["matmul"]["flops"]


def test_optimizer_step_moves_the_adamw_states_once():
    """AdamW (foreach, as on CUDA) reads and writes every trainable parameter, gradient and both moments."""
    decoder, head = _linear_weights(TINY)
    t = _totals()["optimizer"]["memory"]
    params = decoder + head + TINY["vocab_size"] * TINY["hidden_size"] + (2 * TINY["num_hidden_layers"] + 1) * TINY["hidden_size"]
    state_bytes = params * 2 * 4  # bf16 p, g, m, v
    assert 1.5 * state_bytes < t["bytes"] < 6 * state_bytes


def test_pricing_is_a_roofline_on_the_datasheet():
    from advisor.simulate.ops import Op
    from advisor.simulate.pricing import KERNEL_GAP_S, MAMF, price, rates
    from advisor.speed.step import gpu_rates

    from advisor.facts import GPUS

    dev = gpu_rates(GPUS["A100-80GB"])
    big = Op("aten.mm", "matmul", 1e15, 1e9, "micro")
    stream = Op("aten.add", "memory", 0.0, 1e10, "micro")
    attn = Op("aten._scaled_dot_product_flash_attention_for_cpu", "attention", 1e14, 1e8, "micro")
    fast = rates("A100-80GB", True)
    p = price([big, stream], dev, gpu_name="A100-80GB", grad_accum=1, tokens=1000, causal=False)
    expect = 1e15 / (312e12 * MAMF["A100-80GB"]) + 1e10 / (2039e9 * fast.bandwidth) + 2 * KERNEL_GAP_S
    assert p.low == pytest.approx(expect, rel=1e-9)
    assert p.low < p.seconds < p.high
    # grad accumulation repeats the micro-batch; a causal kernel skips half of attention's blocks
    assert price([big], dev, gpu_name="A100-80GB", grad_accum=4, tokens=1, causal=False).low == pytest.approx(4 * (1e15 / (312e12 * 0.859) + KERNEL_GAP_S))
    full = price([attn], dev, gpu_name="A100-80GB", grad_accum=1, tokens=1, causal=False).low
    half = price([attn], dev, gpu_name="A100-80GB", grad_accum=1, tokens=1, causal=True).low
    assert half == pytest.approx((full - KERNEL_GAP_S) / 2 + KERNEL_GAP_S)
    # a skinny matmul (LoRA's A and B: few FLOPs per byte) falls to the bandwidth line
    skinny = Op("aten.mm", "matmul", 1e9, 1e10, "micro")
    assert price([skinny], dev, gpu_name="A100-80GB", grad_accum=1, tokens=1, causal=False).low == pytest.approx(1e10 / (2039e9 * fast.bandwidth) + KERNEL_GAP_S)
    # many tiny kernels: the host's issue rate bounds the step
    tiny = [Op("aten.mul", "memory", 0.0, 1e3, "micro")] * 1000
    assert price(tiny, dev, gpu_name="A100-80GB", grad_accum=1, tokens=1, causal=False).low == pytest.approx(1000 * fast.host_s)


def test_published_throughput_rows_name_their_sources():
    from advisor.validate.speed import published_rows, published_setup

    rows = published_rows()
    assert len(rows) >= 10 and len({r["src"] for r in rows}) >= 3
    for r in rows:
        assert r["source"] and float(r["tokens_per_s"]) > 0
        _, gpu, setup, mean_len = published_setup(r)
        assert gpu.bandwidth and 0 < mean_len <= setup.seq_len


def test_simulated_validation_prices_a_row_and_reports_it_per_source(tmp_path):
    from advisor.simulate.validate_time_sim import as_dict, simulated_time_rows
    from advisor.validate.speed import published_rows, published_time_rows

    (tmp_path / "config.json").write_text(json.dumps({**TINY, "architectures": ["LlamaForCausalLM"]}))
    row = {**next(r for r in published_rows() if r["id"] == "PT2"), "model": str(tmp_path / "config.json"),
           "effective_seq_len": "32", "mean_len": "30"}  # fmt: skip
    (r,) = simulated_time_rows([row])
    assert r.id == "PT2" and r.note == "peft" and r.low_tps < r.predicted_tps < r.high_tps
    assert r.error_pct == pytest.approx(100 * (r.predicted_tps - 7174) / 7174)
    d = as_dict([r], published_time_rows())
    assert d["by_source"]["peft"]["n"] == 1 and d["analytic_same_rows"]["peft"]["n"] == 1


def test_estimate_simulate_gpu_prints_the_analytic_step_time_keys(tmp_path, capsys):
    from advisor.cli import main

    (tmp_path / "config.json").write_text(json.dumps({**TINY, "_name_or_path": "org/tiny-llama"}))
    args = ["estimate", "--model", str(tmp_path), "--method", "full", "--batch-size", str(B), "--seq-len", str(S),
            "--gpu", "A100-80GB", "--json"]  # fmt: skip
    assert main(args) == 0
    analytic = json.loads(capsys.readouterr().out)["step_time"]
    assert main([*args, "--simulate"]) == 0
    sim = json.loads(capsys.readouterr().out)["step_time"]
    assert set(analytic) <= set(sim) and sim["simulated"] is True and "simulated" not in analytic
    lo, hi = sim["seconds_range"]
    assert lo < sim["seconds"] < hi and sim["tokens_per_step"] == B * S
    decoder, head = _linear_weights(TINY)
    assert sim["flops_per_micro_batch"] >= 6 * (decoder + head) * B * S
