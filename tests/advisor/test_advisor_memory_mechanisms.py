"""Mechanisms the simulated step showed the analytic model was missing (docs/estimator_vs_simulation.md):
each checked as the tensors it counts, sized from the config."""

from __future__ import annotations

from dataclasses import replace

import pytest

from advisor.inputs import DATA
from advisor.inputs.catalog import GIB, MODELS, resolve_model
from advisor.memory.activations import expert_merge_bytes, layer_activation_bytes
from advisor.memory.estimate import estimate
from advisor.memory.setup import Setup

MIX = MODELS["Mixtral-8x7B"].arch
OSS = MODELS["gpt-oss-20b"].arch


def test_gpt_oss_attends_eagerly_unless_flash_is_asked_for():
    """transformers' gpt-oss has no SDPA path: its default saves the bf16 S × S softmax per head and layer."""
    a = Setup(arch=OSS, method="lora", batch_size=1, seq_len=4096)
    per_token = layer_activation_bytes(a) - layer_activation_bytes(replace(a, attention="flash"))
    assert per_token >= 2 * OSS.heads * 4096  # the softmax output alone, bf16, per key
    sdpa, flash = estimate(a), estimate(replace(a, attention="flash"))
    assert sdpa.activations - flash.activations >= OSS.layers * OSS.heads * 4096**2 * 2 / GIB


def test_stacked_experts_set_the_per_tensor_temporaries_and_the_merged_lora_weight():
    stacked = MIX.experts * 2 * MIX.expert_intermediate * MIX.hidden  # gate/up of every expert, one 3-D parameter
    assert MIX.largest_tensor(stacked_experts=True) == stacked > MIX.largest_tensor(stacked_experts=False)
    cpu = estimate(Setup(arch=MIX, method="full", device="cpu", batch_size=1, seq_len=512))
    assert cpu.peak_phase == "optimizer step" and cpu.optimizer_states * GIB >= 4 * MIX.total_params + 2 * 2 * stacked
    lora = Setup(arch=MIX, method="lora", lora_experts=True, batch_size=1, seq_len=512)
    assert expert_merge_bytes(lora) == 2 * MIX.experts * MIX.expert_params  # one merged E × 3·ff × d weight per layer, bf16
    assert expert_merge_bytes(replace(lora, arch=OSS)) == 0  # peft does not reach gpt-oss's experts
    assert expert_merge_bytes(replace(lora, lora_experts=False)) == 0


def test_hf_composite_gelu_saves_four_mlp_tensors():
    phi = resolve_model(str(DATA / "configs" / "phi-1.5.json")).arch
    assert phi.act_saved == 4
    s = Setup(arch=phi, method="full", batch_size=1, seq_len=512)
    diff = layer_activation_bytes(s) - layer_activation_bytes(replace(s, stack="litgpt"))
    assert diff == pytest.approx(3 * 2 * phi.intermediate, abs=1)  # litgpt's phi calls torch's fused GELU


def test_gradients_live_during_backward_full_finetuning():
    """The first layer's backward runs with every later layer's gradients allocated; under FSDP a layer's
    gradient is full size until its reduce-scatter."""
    one = estimate(Setup(arch=MIX, method="full", device="cpu", batch_size=16, seq_len=2048, checkpointing="full"))
    assert one.peak_phase == "backward start" and one.gradients * GIB >= (MIX.layers - 1) * MIX.layer_linear_params * 2
    sharded = estimate(Setup(arch=replace(MIX, layers=2, moe_layers=2), method="full", gpus=4, batch_size=4, seq_len=1024,
                             checkpointing="full"))  # fmt: skip
    assert sharded.gradients * GIB >= MIX.layer_linear_params * 2


@pytest.mark.parametrize("ckpt", ["none", "full"])
def test_a_lora_step_without_logits_peaks_at_peft_forward_transient(ckpt):
    """With a fused loss no logits dominate: LoRA's peak is where peft's forward holds its fp32 input cast and
    dropout output for the widest adapted input (down_proj's), at the last layer's forward (no checkpointing) or
    in the recomputed layer's forward (full), on top of what is saved. The fused LoRA op has no such moment."""
    from advisor.memory import activations as act

    arch = resolve_model("Llama-3.1-8B").arch
    s = Setup(arch=arch, method="lora", batch_size=1, seq_len=4096, lora_dropout=0.1, loss="fused", checkpointing=ckpt,
              grad_checkpointing=ckpt == "full")  # fmt: skip
    t = s.batch_size * s.seq_len
    fwd = act.lora_forward_transient_bytes(s) * t
    assert fwd == 8 * arch.intermediate * t
    if ckpt == "none":
        saved = (arch.layers * act.layer_activation_bytes(s) - act.first_layer_savings(s)) * t
    else:
        kept = arch.layers * s.act_bytes * arch.hidden * t
        saved = kept + act.head_activation_bytes(s) * t + act.layer_activation_bytes(s) * t
    assert estimate(s).activations * GIB == pytest.approx(saved + fwd, rel=1e-9)
    fused = estimate(replace(s, kernels=("lora",)))
    assert fused.activations < estimate(s).activations
