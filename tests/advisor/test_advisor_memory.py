"""The analytic memory model: orderings the physics demands, and the guides' arithmetic."""

from __future__ import annotations

import pytest

from advisor.catalog import GIB, MODELS
from advisor.errors import AdvisorError
from advisor.memory import Setup, adapter_params, estimate

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
    assert 3.3 < est(method="qlora").weights / DECIMAL < 4.0  # "7B ≈ 3.5 GB" (+ bf16 embeddings)
    q70 = est(L70, method="qlora")
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
