"""Hybrid models transformers builds (Mamba-2 / gated delta-net layers beside attention, MoE) are
sized by the simulator: the model built is the real architecture, and every parameter is counted."""

from __future__ import annotations

import json

import pytest

HYBRIDS = {
    # Granite 4: Mamba-2 and attention layers, MoE MLPs with a shared expert
    "granitemoehybrid": dict(model_type="granitemoehybrid", vocab_size=128, hidden_size=64, intermediate_size=128,
                             num_hidden_layers=4, layer_types=["mamba", "attention", "mamba", "mamba"], num_attention_heads=4,
                             num_key_value_heads=2, mamba_n_heads=4, mamba_d_head=16, mamba_d_state=16, mamba_n_groups=1,
                             mamba_d_conv=4, mamba_expand=1, mamba_chunk_size=16, num_local_experts=4, num_experts_per_tok=2,
                             shared_intermediate_size=64),
    # Nemotron-H: Mamba-2 (M), attention (*), MLP (-) and MoE (E) layers by pattern
    "nemotron_h": dict(model_type="nemotron_h", vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                       hybrid_override_pattern="M*-E", num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                       mamba_num_heads=4, mamba_head_dim=16, ssm_state_size=16, n_groups=1, mamba_d_conv=4, mamba_expand=1,
                       chunk_size=16, n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                       moe_shared_expert_intermediate_size=32, n_shared_experts=1),
    # Qwen3-Next: gated delta-net linear attention, one full-attention layer in four, MoE
    "qwen3_next": dict(model_type="qwen3_next", vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=16, linear_num_value_heads=4,
                       linear_num_key_heads=2, linear_key_head_dim=16, linear_value_head_dim=16, linear_conv_kernel_dim=4,
                       full_attention_interval=4, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                       shared_expert_intermediate_size=32, decoder_sparse_step=1),
}  # fmt: skip
LINEAR_MIXERS = {"granitemoehybrid": "Mamba", "nemotron_h": "Mamba", "qwen3_next": "GatedDeltaNet"}


@pytest.mark.parametrize("model_type", [
    "granitemoehybrid",
    pytest.param("nemotron_h", marks=pytest.mark.slow),  # the Mamba reference path: ~20 s on 2 cores
    pytest.param("qwen3_next", marks=pytest.mark.slow),
])  # fmt: skip
def test_a_hybrid_model_is_simulated_from_its_config_json(tmp_path, capsys, model_type):
    import torch

    from advisor.cli import main
    from advisor.simulate import build

    cfg = {**HYBRIDS[model_type], "_name_or_path": f"org/{model_type}-tiny"}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    meta = build.meta_model(HYBRIDS[model_type], torch.bfloat16)  # the independent count: the model transformers builds
    assert any(LINEAR_MIXERS[model_type] in type(m).__name__ for m in meta.modules())
    n_params = sum(p.numel() for p in meta.parameters())
    state_gb = 2 * sum(p.numel() * p.element_size() for p in meta.parameters()) / 2**30  # AdamW: 2 states per weight, its dtype
    assert main(["estimate", "--model", str(tmp_path), "--method", "full", "--batch-size", "2", "--seq-len", "32",
                 "--simulate", "--json"]) == 0  # fmt: skip
    d = json.loads(capsys.readouterr().out)
    assert d["simulated"] is True and d["model"] == f"{model_type}-tiny"  # the config's name, not the folder's
    assert d["total_params"] == d["trainable_params"] == n_params
    step = d["phases"]["optimizer step"]["kinds"]
    # the states, plus at most foreach AdamW's one param-sized temporary while it steps (Mamba keeps A_log, D in fp32)
    assert state_gb - 1e-4 <= step["optimizer_states"] <= 1.5 * state_gb + 1e-4
    assert d["peak_allocated_gb"] > step["parameters"] + step["optimizer_states"]  # activations on top
