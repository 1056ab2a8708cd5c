"""advisor/memory/estimate.py: the figures and notes `advisor estimate` prints that the ordering tests
in test_advisor_memory.py do not pin. Written against the survivors of
`scripts/mutation.sh advisor_estimate` (docs/mutation.md)."""

from __future__ import annotations

import pytest

from advisor.inputs.catalog import GIB, MODELS
from advisor.memory.estimate import estimate
from advisor.memory.setup import Setup

L7 = MODELS["Llama-2-7B"].arch


def est(**kw):
    return estimate(Setup(arch=L7, **{"batch_size": 2, "seq_len": 512, **kw}))


def test_two_gpus_are_sharded_and_say_so():
    two, one = est(method="full", gpus=2), est(method="full")
    assert two.per_gpu and not one.per_gpu
    assert two.weights < 0.6 * one.weights  # a half shard each, plus the gathered layers
    note = next(n for n in two.notes if "over 2 GPUs" in n)
    assert note.startswith("FSDP full shard (ZeRO-3) over 2 GPUs: states sharded 1/2; +")
    assert note.endswith("GB of gathered layers")
    ddp = est(method="full", gpus=2, sharding="ddp")
    assert "DDP (a full copy per GPU) over 2 GPUs" in ddp.notes
    grad_op = next(n for n in est(method="full", gpus=2, sharding="grad-op").notes if "over 2 GPUs" in n)
    assert grad_op == "FSDP shard-grad-op (ZeRO-2) over 2 GPUs: states sharded 1/2"
    assert not any("GPUs" in n for n in one.notes)


def test_sharded_gradients_are_per_gpu_shards():
    two, one = est(method="full", gpus=2), est(method="full")
    assert two.gradients < 0.6 * one.gradients


def test_bf16_mixed_full_shard_gathers_bf16_layers():
    fp32 = est(method="full", gpus=2, precision="fp32")
    mixed = est(method="full", gpus=2, precision="bf16-mixed")
    g = lambda b: float(next(n for n in b.notes if "gathered layers" in n).split("+")[1].split(" GB")[0])  # noqa: E731
    assert g(mixed) < 0.9 * g(fp32)  # all-gathered in bf16, not in fp32


def test_offloaded_parameters_keep_only_two_layers_constants_on_the_gpu():
    q = est(method="qlora", offload="params")
    assert q.quant_constants > 0 and q.cpu_offload_gb > 1.0
    assert any(n.startswith("parameters offloaded to CPU (") for n in q.notes)


def test_foreach_adamw_holds_a_copy_of_the_parameters_at_the_step_and_fused_does_not():
    plain, fused = est(method="full"), est(method="full", fused_optimizer=True)
    assert plain.peak_phase == "optimizer step"
    gap = plain.peak_allocated_gb - fused.peak_allocated_gb
    assert gap == pytest.approx(L7.total_params * 2 / GIB, rel=0.25)  # one bf16 copy of the params
    assert any(n.startswith("optimizer states include foreach AdamW's temporary copy (") for n in plain.notes)
    assert est(method="full", optimizer="sgd").optimizer_states < plain.optimizer_states


def test_paged_states_are_named_in_gigabytes():
    b = est(method="full", optimizer="paged_adamw8bit")
    note = next(n for n in b.notes if n.startswith("paged 8-bit states ("))
    assert float(note.split("(")[1].split(" GB")[0]) == pytest.approx(b.paged_optimizer_gb, abs=0.06)
    assert 1.0 < b.paged_optimizer_gb < 20.0


def test_the_other_phase_and_the_context_are_in_gigabytes():
    for kw in ({"method": "full"}, {"method": "lora"}, {"method": "lora", "device": "cpu"}):
        b = est(**kw)
        assert 0 < b.other_phase_gb <= b.peak_allocated_gb, kw
    assert est(method="lora", device="cpu").cuda_context_gb == 0.0
    assert est(method="lora").cuda_context_gb > 0.1


def test_notes_name_selective_checkpointing_float8_and_moe():
    sel = est(method="full", checkpointing="selective")
    assert "selective checkpointing: matmul and attention outputs saved, norms and activations recomputed" in sel.notes
    f8 = est(method="full", precision="bf16-mixed", float8=True)
    assert any(n.startswith("float8 linears (torchao)") for n in f8.notes)
    moe = next((m.arch for m in MODELS.values() if m.arch.is_moe), None)
    if moe is not None:
        full = estimate(Setup(arch=moe, method="full", batch_size=1, seq_len=256))
        assert any(n.startswith(f"MoE: all {moe.experts} experts' weights held") and n.endswith("active per token")
                   for n in full.notes)


def test_foreach_adamw_copies_the_adapters_at_the_step_too():
    plain, fused = est(method="lora"), est(method="lora", fused_optimizer=True)
    assert plain.peak_phase == fused.peak_phase == "backward start"
    # the step phase (shown by `explain`) holds one more fp32 copy of the adapter weights
    assert plain.other_phase_gb - fused.other_phase_gb == pytest.approx(plain.trainable_params * 4 / GIB, rel=0.01)
