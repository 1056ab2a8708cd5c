"""The analytic memory model: orderings the physics demands, and the guides' arithmetic."""

from __future__ import annotations

from dataclasses import replace

import pytest

from advisor.errors import AdvisorError
from advisor.inputs import DATA
from advisor.inputs.catalog import GIB, MODELS, resolve_model
from advisor.memory.estimate import estimate
from advisor.memory.setup import Setup
from advisor.memory.state import adapter_params

L7 = MODELS["Llama-2-7B"].arch
L8 = MODELS["Llama-3.1-8B"].arch
L70 = MODELS["Llama-2-70B"].arch
DECIMAL = 1e9 / GIB  # the guides quote GB of 10^9 bytes


def est(arch=L7, **kw):
    return estimate(Setup(arch=arch, **{"batch_size": 2, "seq_len": 512, **kw}))


def test_qlora_lt_lora_lt_full_for_7b():
    q, lo, full = est(method="qlora"), est(method="lora"), est(method="full")
    assert q.peak_reserved_gb < lo.peak_reserved_gb < full.peak_reserved_gb


def test_items_sum_to_peak_allocated_and_reserved_exceeds_it():
    for method in ("full", "lora", "qlora", "dora"):
        b = est(method=method)
        assert sum(b.items().values()) == pytest.approx(b.peak_allocated_gb)
        assert b.peak_reserved_gb > b.peak_allocated_gb
        assert b.cpu_resident_gb is None


def test_checkpointing_lowers_activations():
    for method in ("full", "lora", "qlora"):
        off, on = est(method=method, batch_size=4, seq_len=2048), est(method=method, batch_size=4, seq_len=2048, grad_checkpointing=True)
        assert on.activations < 0.5 * off.activations  # guide: "cuts activation memory by up to ~70%"
        assert on.peak_allocated_gb < off.peak_allocated_gb


def test_fsdp_divides_sharded_state_by_n():
    one, eight = est(L70, method="full", precision="bf16"), est(L70, method="full", precision="bf16", gpus=8)
    assert eight.per_gpu and not one.per_gpu
    assert eight.optimizer_states == pytest.approx(one.optimizer_states / 8, rel=0.01) or eight.optimizer_states < one.optimizer_states / 7
    # weights: 1/8 of the shards + gathered layers (2 decoder layers + embeddings/head)
    gathered = (2 * L70.layer_linear_params + L70.embedding_params + L70.head_params) * 2 / GIB
    assert eight.weights == pytest.approx(one.weights / 8 + gathered, rel=0.01)
    # guide: 70B fp16 (140 GB) over 8 GPUs ≈ 17.5 GB/GPU of weights
    assert one.weights / 8 * 1 / DECIMAL == pytest.approx(17.5, rel=0.05)


def test_weights_match_the_guide_arithmetic():
    assert est(method="lora").weights / DECIMAL == pytest.approx(14, rel=0.05)  # "7B ≈ 14 GB"
    assert 3.3 < est(method="qlora", prepare_kbit=False).weights / DECIMAL < 4.0  # "7B ≈ 3.5 GB" (+ bf16 embeddings)
    # prepare_model_for_kbit_training (the HF stack's default for QLoRA) upcasts every non-4-bit param to fp32
    extra = (est(method="qlora").weights - est(method="qlora", prepare_kbit=False).weights) * GIB
    assert extra == pytest.approx(2 * (L7.total_params - L7.linear_params), rel=1e-6)
    q70 = est(L70, method="qlora", prepare_kbit=False)
    assert 35 <= (q70.weights + q70.quant_constants) / DECIMAL <= 39  # "70B ≈ 35–39 GB"


def test_full_finetuning_bytes_per_param():
    """8 B/param pure bf16 AdamW, 16 B/param fp32 (the optimizer-step phase, foreach temp excluded)."""
    for precision, per in (("bf16", 8), ("fp32", 16)):
        b = estimate(Setup(arch=L7, method="full", precision=precision, batch_size=1, seq_len=64, fused_optimizer=True))
        assert b.peak_phase == "optimizer step"
        state = (b.weights + b.gradients + b.optimizer_states) * GIB / L7.total_params
        assert state == pytest.approx(per, rel=0.01)


def test_guide_totals_lora_and_qlora_7b():
    # LoRA (bf16, r=16) "~17–18 GB for 7B"; QLoRA "~6–10 GB" — at a typical micro-batch with checkpointing
    lora = estimate(Setup(arch=L7, method="lora", batch_size=8, seq_len=512, grad_checkpointing=True))
    qlora = estimate(Setup(arch=L7, method="qlora", batch_size=8, seq_len=512, grad_checkpointing=True))
    assert 15 <= lora.peak_reserved_gb / DECIMAL <= 19.5
    assert 6 <= qlora.peak_reserved_gb / DECIMAL <= 10


def test_lora_trainable_parameters_match_the_guide():
    # "32 layers × 4 attention projections × 131K ≈ 16.7M"
    assert adapter_params(Setup(arch=L7, method="lora", rank=16, targets="attn")) == 32 * 4 * 131_072
    assert adapter_params(Setup(arch=L7, method="lora", rank=16, targets="q_proj+v_proj")) == 32 * 2 * 131_072
    assert est(method="lora", rank=64).adapter > est(method="lora", rank=8).adapter


def test_fp32_logits_scale_with_vocabulary():
    small, big = est(L7, method="lora"), est(L8, method="lora")  # 32K vs 128K vocabulary
    assert big.logits / small.logits == pytest.approx(128256 / 32000, rel=0.01)
    # fp32 log-softmax + 2 fp32 grads (HF Trainer drops the bf16 logits before backward) …
    assert big.logits * GIB == pytest.approx(2 * 512 * 128256 * 12, rel=0.01)
    # … + the bf16 logits when the loop still holds the model output
    assert est(L8, method="lora", keep_logits=True).logits * GIB == pytest.approx(2 * 512 * 128256 * 14, rel=0.01)


def test_chunked_and_compiled_loss_shrink_logits():
    full, chunked = est(L8, method="lora", loss="full"), est(L8, method="lora", loss="chunked")
    compiled = est(L8, method="lora", loss="chunked", compile=True)
    assert compiled.logits < chunked.logits < full.logits


def test_dora_and_dropout_add_activations():
    lora, dora = est(method="lora"), est(method="dora")
    assert dora.activations > lora.activations
    assert est(method="lora", lora_dropout=0.0).activations < lora.activations


def test_eager_attention_adds_a_quadratic_term():
    sdpa, eager = est(seq_len=4096, method="lora"), est(seq_len=4096, method="lora", attention="eager")
    assert eager.activations > 1.5 * sdpa.activations


def test_nf4_constants_only_for_qlora():
    assert est(method="lora").quant_constants == 0
    q = est(method="qlora")
    assert q.quant_constants > 0.1  # absmax per 64 weights + one dequantized layer


def test_8bit_and_paged_optimizers():
    adam, eight = est(method="full"), est(method="full", optimizer="adamw8bit")
    paged = est(method="full", optimizer="paged_adamw8bit")
    assert eight.peak_allocated_gb < adam.peak_allocated_gb
    assert paged.paged_optimizer_gb > 0 and paged.optimizer_states == 0


def test_cpu_reports_resident_set_not_reserved():
    b = est(method="lora", precision="fp32", device="cpu")
    assert b.peak_reserved_gb is None and b.cpu_resident_gb > b.peak_allocated_gb * 0.9


def test_grad_accumulation_keeps_full_gradients_alive():
    big = {"method": "full", "batch_size": 8, "seq_len": 1024}  # activations make the backward phase the peak
    with_accum, without = est(**big, grad_accum=4), est(**big)
    assert with_accum.peak_phase == without.peak_phase == "backward start"
    assert with_accum.gradients > 10 * without.gradients
    assert with_accum.peak_allocated_gb > without.peak_allocated_gb


@pytest.mark.parametrize("field,value,flag", [("method", "qlor", "--method"), ("precision", "fp8", "--precision"),
                                              ("optimizer", "adam", "--optimizer"), ("targets", "foo", "--targets"),
                                              ("rank", 0, "--rank"), ("gpus", 0, "--gpus")])
def test_bad_setup_names_the_flag(field, value, flag):
    with pytest.raises(AdvisorError, match=rf"^{flag}: "):
        Setup(arch=L7, **{field: value})


# ---------------------------------------------------------------- mechanisms by phase

MIXTRAL = MODELS["Mixtral-8x7B"].arch
OSS = MODELS["gpt-oss-20b"].arch


def test_qlora_saves_the_input_of_every_4bit_linear_only_with_old_bitsandbytes():
    # bitsandbytes < 0.45's MatMul4Bit kept its input A (`ctx.tensors = (A, B)`): QLoRA's activations exceed
    # LoRA's by exactly the block's linear inputs (attention in, o_proj in, MLP in, down_proj in), all else
    # equal; current releases keep only the packed weight, so QLoRA saves what LoRA saves.
    kw = {"batch_size": 1, "seq_len": 256, "prepare_kbit": False, "adapter_dtype": "bf16"}
    lora, old, new = est(method="lora", **kw), est(method="qlora", bnb_saves_input=True, **kw), est(method="qlora", **kw)
    d, q, ff = L7.hidden, L7.q_dim, L7.intermediate
    per_token_layer = 2 * (d + q + d + ff)
    assert (old.activations - lora.activations) * GIB == pytest.approx(L7.layers * 256 * per_token_layer, rel=1e-6)
    assert new.activations == pytest.approx(lora.activations, rel=1e-9)


def test_kbit_prep_puts_the_mlp_and_residual_stream_in_fp32():
    on, off = est(method="qlora"), est(method="qlora", prepare_kbit=False)
    assert on.activations > 1.2 * off.activations
    # litgpt: no prep, bf16 adapters
    litgpt = est(method="qlora", stack="litgpt").activations  # its 2023 tables: bitsandbytes that kept A
    assert litgpt == est(method="qlora", prepare_kbit=False, adapter_dtype="bf16", bnb_saves_input=True, stack="torchtune").activations


def test_moe_holds_every_expert_but_activates_only_k():
    base = estimate(Setup(arch=MIXTRAL, method="lora", targets="attn", batch_size=1, seq_len=1024))
    assert base.weights * GIB == pytest.approx(MIXTRAL.total_params * 2, rel=1e-6)  # all 8 experts, bf16
    more_experts = estimate(Setup(arch=replace(MIXTRAL, experts=16), method="lora", targets="attn", batch_size=1, seq_len=1024))
    more_active = estimate(Setup(arch=replace(MIXTRAL, experts_per_tok=4), method="lora", targets="attn", batch_size=1, seq_len=1024))
    assert more_experts.weights > 1.9 * base.weights and more_experts.activations == pytest.approx(base.activations, rel=0.01)
    assert more_active.activations > 1.5 * base.activations and more_active.weights == base.weights


def test_lora_on_experts_or_attention_only():
    attn = adapter_params(Setup(arch=MIXTRAL, method="lora", rank=16, targets="attn"))
    assert attn == 32 * 16 * (2 * (4096 + 4096) + 2 * (4096 + 1024))
    experts = adapter_params(Setup(arch=MIXTRAL, method="lora", rank=16, targets="all-linear", lora_experts=True))
    assert experts - attn == 32 * 8 * 16 * 3 * (4096 + 14336)  # every expert's gate/up/down
    shielded = adapter_params(Setup(arch=MIXTRAL, method="lora", rank=16, targets="all-linear"))
    assert shielded == attn  # the default: all-linear does not reach transformers 5's fused experts


def test_gpt_oss_fused_experts_stay_unquantized_under_qlora():
    # bitsandbytes quantizes nn.Linear; gpt-oss's experts are one 3-D parameter, so QLoRA leaves them in bf16
    # (and prepare_model_for_kbit_training upcasts them to fp32): "QLoRA" barely shrinks this model.
    q = estimate(Setup(arch=OSS, method="qlora", targets="attn", prepare_kbit=False))
    assert q.weights * GIB >= OSS.expert_linear_params * 2
    mixtral = estimate(Setup(arch=MIXTRAL, method="qlora", targets="attn", prepare_kbit=False))
    assert mixtral.weights * GIB < MIXTRAL.total_params * 0.7  # Mixtral's experts are nn.Linear: 4-bit


def test_plain_mlp_and_flash_attention_save_less():
    phi = resolve_model(str(DATA / "configs" / "phi-1.5.json")).arch
    gated = replace(phi, mlp="gated", parallel=False, norms_per_layer=2, layernorm=False)
    s = {"method": "lora", "batch_size": 1, "seq_len": 512}
    assert estimate(Setup(arch=phi, **s)).activations < estimate(Setup(arch=gated, **s)).activations
    falcon = resolve_model(str(DATA / "configs" / "falcon-7b.json")).arch  # multi-query: 1 K/V head
    flash, sdpa = estimate(Setup(arch=falcon, attention="flash", **s)), estimate(Setup(arch=falcon, **s))
    # sdpa expands k and v to all 71 heads (repeat_kv); flash-attn takes them as they are
    assert (sdpa.activations - flash.activations) * GIB == pytest.approx(falcon.layers * 512 * 2 * 2 * (falcon.q_dim - falcon.kv_dim), rel=1e-6)


def test_sharding_modes_order_per_gpu_memory():
    kw = {"method": "full", "batch_size": 1, "seq_len": 512, "gpus": 8, "fused_optimizer": True}
    full, grad_op, ddp = (est(L70, sharding=m, **kw) for m in ("full", "grad-op", "ddp"))
    one = est(L70, method="full", batch_size=1, seq_len=512, fused_optimizer=True)
    assert full.peak_allocated_gb < grad_op.peak_allocated_gb < ddp.peak_allocated_gb
    assert ddp.peak_allocated_gb > one.peak_allocated_gb  # DDP: a full copy + gradient buckets on every GPU
    assert grad_op.optimizer_states == pytest.approx(full.optimizer_states)  # ZeRO-2 shards states like ZeRO-3


def test_cpu_offload_moves_states_and_params_to_the_host():
    kw = {"method": "full", "batch_size": 1, "seq_len": 512, "gpus": 2, "fused_optimizer": True}
    none, opt, par, both = (est(L7, offload=o, **kw) for o in ("none", "optimizer", "params", "both"))
    assert opt.optimizer_states == 0 and opt.cpu_offload_gb > 0.9 * none.optimizer_states
    assert par.weights < 0.2 * none.weights and par.cpu_offload_gb == pytest.approx(L7.total_params * 2 / 2 / GIB)
    assert both.peak_allocated_gb < min(opt.peak_allocated_gb, par.peak_allocated_gb)
    assert none.cpu_offload_gb == 0


def test_70b_qlora_with_offload_fits_where_it_did_not():
    kw = {"method": "qlora", "targets": "attn", "batch_size": 2, "seq_len": 4096, "grad_checkpointing": True, "gpus": 2}
    plain, offload = est(L70, **kw), est(L70, offload="both", **kw)
    assert offload.peak_allocated_gb < plain.peak_allocated_gb - 10  # the 4-bit shards (~17 GB per GPU) leave the GPU


def test_range_brackets_the_expected_value_by_phase():
    from advisor.memory import overhead as memory

    b = est(method="lora", batch_size=4, seq_len=2048)
    lo, hi = b.peak_allocated_gb_range
    assert lo < b.peak_allocated_gb < hi and b.peak_phase == "backward start"
    assert hi / b.peak_allocated_gb == pytest.approx(1 + memory.RANGES["backward start"][1])
    step = est(method="full", batch_size=1, seq_len=64)
    assert step.peak_phase == "optimizer step"
    assert step.peak_reserved_gb_range[1] / step.peak_reserved_gb == pytest.approx(1 + memory.RANGES["optimizer step"][1])
    assert b.peak_gb_high == pytest.approx(b.peak_reserved_gb_range[1] + memory.CUDA_CONTEXT_GB + memory.UNTRACKED_GB)
    assert est(method="lora", device="cpu", precision="fp32").peak_allocated_gb_range is None


def test_estimate_json_reports_ranges_and_bad_offload_is_one_line(run_cli):
    import json

    code, out, _ = run_cli("estimate", "--model", "Llama-3.1-8B", "--method", "qlora", "--json")
    d = json.loads(out)
    lo, hi = d["peak_reserved_gb_range"]
    assert code == 0 and lo < d["peak_reserved_gb"] < hi and d["peak_allocated_gb_range"][0] < d["peak_allocated_gb"]
    code, out, err = run_cli("estimate", "--model", "Llama-3.1-8B", "--offload", "disk")
    assert code == 2 and out == "" and err.count("\n") == 1 and "--offload: 'disk'" in err and "optimizer" in err
    code, _, err = run_cli("estimate", "--model", "70B", "--gpus", "8", "--sharding", "zero3", "--offload", "both", "--method", "full")
    assert code == 0
    code, _, err = run_cli("estimate", "--model", "70B", "--sharding", "zero4")
    assert code == 2 and "--sharding" in err


def test_24gb_recommendation_keeps_its_high_end_under_budget(run_cli):
    import json

    code, out, _ = run_cli("recommend", "--gpu", "24GB", "--examples", "3000", "--json")
    d = json.loads(out)
    m = d["memory"]
    from advisor.memory.overhead import UNTRACKED_GB

    high = m["peak_reserved_gb_range"][1] + m["cuda_context_gb"] + UNTRACKED_GB
    assert m["peak_device_gb_high"] == pytest.approx(high, abs=0.01)
    assert code == 0 and d["feasible"] and high <= 24
    assert d["estimated_peak_gb"] == pytest.approx(high, abs=0.01)  # the verdict's figure is the high end
    assert d["margin_gb"] == pytest.approx(24 - high, abs=0.02)
    assert m["peak_reserved_gb_range"][0] < m["peak_reserved_gb"] < m["peak_reserved_gb_range"][1]
