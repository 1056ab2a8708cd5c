"""Model and GPU catalogs, and how --gpu / --model are read."""

from __future__ import annotations

import json

import pytest

from advisor.errors import AdvisorError
from advisor.facts import GPUS
from advisor.inputs.catalog import MODELS, parse_gpu, resolve_model

REQUIRED_MODELS = [
    "SmolLM2-135M", "SmolLM2-360M", "SmolLM2-1.7B", "Llama-3.2-1B", "Llama-3.2-3B", "Llama-2-7B", "Llama-2-13B",
    "Llama-2-70B", "Llama-3-8B", "Llama-3.1-8B", "Llama-3.1-70B", "Mistral-7B", "Qwen2.5-0.5B", "Qwen2.5-1.5B",
    "Qwen2.5-7B", "Qwen2.5-14B", "Qwen2.5-72B", "Gemma-2-9B", "Phi-3-mini", "Qwen-7B",
]  # fmt: skip
REQUIRED_GPUS = ["T4", "L4", "A10G", "RTX 3090", "RTX 4090", "A6000", "L40S", "A100-40GB", "A100-80GB", "H100", "H200"]

# Published parameter counts (model cards), in billions.
PUBLISHED_B = {"SmolLM2-135M": 0.135, "SmolLM2-360M": 0.362, "SmolLM2-1.7B": 1.71, "Llama-3.2-1B": 1.24,
               "Llama-3.2-3B": 3.21, "Llama-2-7B": 6.74, "Llama-2-13B": 13.0, "Llama-2-70B": 69.0, "Llama-3.1-8B": 8.03,
               "Llama-3.1-70B": 70.6, "Mistral-7B": 7.24, "Qwen2.5-0.5B": 0.49, "Qwen2.5-1.5B": 1.54, "Qwen2.5-7B": 7.62,
               "Qwen2.5-14B": 14.7, "Qwen2.5-72B": 72.7, "Gemma-2-9B": 9.24, "Phi-3-mini": 3.82, "Qwen-7B": 7.7}  # fmt: skip


def test_catalog_has_the_required_models_and_gpus():
    assert set(REQUIRED_MODELS) <= set(MODELS)
    assert set(REQUIRED_GPUS) <= set(GPUS)


@pytest.mark.parametrize("name,billions", PUBLISHED_B.items())
def test_parameter_counts_from_the_architecture_match_the_model_cards(name, billions):
    assert MODELS[name].params / 1e9 == pytest.approx(billions, rel=0.015)


def test_gemma2_head_dim_is_not_hidden_over_heads():
    a = MODELS["Gemma-2-9B"].arch
    assert a.q_dim == 16 * 256 != a.hidden


@pytest.mark.parametrize(
    "text,count,per_gpu,name",
    [("24GB", 1, 24, None), ("80GB", 1, 80, None), ("24 gb", 1, 24, None), ("A10G", 1, 22.0, "A10G"),
     ("RTX 4090", 1, 23.6, "RTX 4090"), ("rtx4090", 1, 23.6, "RTX 4090"), ("H100", 1, 79.1, "H100"),
     ("8xH100", 8, 79.1, "H100"), ("2x24GB", 2, 24, None), ("8×80GB", 8, 80, None), ("A100-80GB", 1, 79.2, "A100-80GB")],
)  # fmt: skip
def test_gpu_forms(text, count, per_gpu, name):
    g = parse_gpu(text)
    assert (g.count, g.per_gpu_gb, g.name) == (count, per_gpu, name)
    assert g.tflops > 0


@pytest.mark.parametrize("text", ["24XB", "", "0x24GB", "H10", "A100", "2000GB", "x24GB"])
def test_bad_gpu_names_the_flag(text):
    with pytest.raises(AdvisorError, match=r"^--gpu: "):
        parse_gpu(text)


def test_bad_gpu_suggests_a_close_name():
    with pytest.raises(AdvisorError, match="did you mean 'H100'"):
        parse_gpu("H10")


@pytest.mark.parametrize(
    "text,name",
    [("Llama-2-7B", "Llama-2-7B"), ("meta-llama/Llama-2-7b-hf", "Llama-2-7B"), ("llama-3.1-8b", "Llama-3.1-8B"),
     ("Qwen/Qwen2.5-7B-Instruct", "Qwen2.5-7B"), ("smollm2-135m", "SmolLM2-135M"), ("7B", "Llama-2-7B"),
     ("70B", "Llama-2-70B"), ("13b", "Llama-2-13B"), ("0.5B", "Qwen2.5-0.5B"), ("Qwen-7B", "Qwen-7B")],
)  # fmt: skip
def test_model_forms(text, name):
    assert resolve_model(text).name == name


def test_a_size_without_a_catalog_model_is_synthesised_to_that_size():
    m = resolve_model("20B")
    assert m.params / 1e9 == pytest.approx(20, rel=0.1)
    assert "shape" in m.name


def test_config_json_path(tmp_path):
    cfg = {"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128,
           "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000, "tie_word_embeddings": True}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    for text in (str(tmp_path / "config.json"), str(tmp_path)):
        m = resolve_model(text)
        assert (m.arch.layers, m.arch.hidden, m.arch.kv_heads, m.arch.vocab, m.arch.tied) == (2, 64, 2, 1000, True)


def test_qwen_v1_config_halves_the_intermediate_size(tmp_path):
    cfg = {"model_type": "qwen", "num_hidden_layers": 32, "hidden_size": 4096, "intermediate_size": 22016,
           "num_attention_heads": 32, "vocab_size": 151936}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert resolve_model(str(tmp_path)).arch == MODELS["Qwen-7B"].arch


@pytest.mark.parametrize("text,match", [("lama-2-7b", "did you mean 'Llama-2-7B'"), ("gpt5", "unknown model"),
                                        ("5000B", "outside"), ("/nonexistent/config.json", "does not exist")])
def test_bad_model_names_the_flag(text, match):
    with pytest.raises(AdvisorError, match=rf"^--model: .*{match}"):
        resolve_model(text)


def test_broken_config_json(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(AdvisorError, match="not a readable config.json"):
        resolve_model(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 64}))
    with pytest.raises(AdvisorError, match="missing num_hidden_layers"):
        resolve_model(str(tmp_path))


# ---------------------------------------------------------------- the 2026 families and config.json shapes

# Published totals (model cards; Llama 4 and Gemma 3 without their vision towers), in billions.
PUBLISHED_2026_B = {"Qwen3-8B": 8.19, "Qwen3-14B": 14.8, "Qwen3-32B": 32.8, "Qwen3-30B-A3B": 30.5, "Qwen3-235B-A22B": 235.0,
                    "Gemma-3-1B": 1.0, "Gemma-3-27B": 27.0, "Llama-3.3-70B": 70.6, "Llama-4-Maverick-17B-128E": 400.0,
                    "gpt-oss-20b": 20.9, "gpt-oss-120b": 116.8, "Phi-4": 14.7, "Mistral-Small-24B": 23.6,
                    "Mixtral-8x7B": 46.7, "DeepSeek-V2-Lite": 15.7}  # fmt: skip
# Active parameters per token: Qwen's "A3B"/"A22B" and Mixtral's 12.9B count embedding and head;
# gpt-oss's model card (3.6B / 5.1B) counts the unembedding only.
ACTIVE_B = {"Qwen3-30B-A3B": (3.3, 2), "Qwen3-235B-A22B": (22.0, 2), "gpt-oss-20b": (3.6, 1), "gpt-oss-120b": (5.1, 1),
            "Mixtral-8x7B": (12.9, 2)}  # fmt: skip


@pytest.mark.parametrize("name,billions", PUBLISHED_2026_B.items())
def test_current_families_match_their_published_sizes(name, billions):
    assert MODELS[name].params / 1e9 == pytest.approx(billions, rel=0.03)


@pytest.mark.parametrize("name,published", ACTIVE_B.items())
def test_moe_active_parameters_count_only_the_routed_experts(name, published):
    billions, vocab_matrices = published
    a = MODELS[name].arch
    active = a.active_linear_params + vocab_matrices * a.vocab * a.hidden + a.small_params
    assert active / 1e9 == pytest.approx(billions, rel=0.08)
    assert a.is_moe and a.expert_linear_params > 0.5 * a.linear_params  # most weights sit in the experts


def test_moe_layer_schedules_from_the_config():
    assert MODELS["Llama-4-Maverick-17B-128E"].arch.moe_layers == 24  # interleave_moe_layer_step 2 over 48
    assert MODELS["Llama-4-Scout-17B-16E"].arch.moe_layers == 48
    ds = MODELS["DeepSeek-V2-Lite"].arch
    assert ds.moe_layers == 26 and ds.shared_intermediate == 2 * 1408 and ds.mla  # first_k_dense_replace 1, 2 shared
    assert MODELS["gpt-oss-20b"].arch.experts_fused and not MODELS["Mixtral-8x7B"].arch.experts_fused


SHIPPED = {  # the reference configs shipped for calibration: family traits read from config.json
    "phi-1.5": ("plain", True, 32, 1.42), "StableLM-Base-Alpha-3B": ("plain", True, 32, 3.64),
    "falcon-7b": ("plain", True, 1, 6.92), "SantaCoder-1.1B": ("plain", False, 1, 1.12),
    "gemma-2b": ("gated", False, 1, 2.51), "TinyLlama-1.1B": ("gated", False, 4, 1.10), "Mixtral-8x7B": ("gated", False, 8, 46.7),
}  # fmt: skip


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_read_as_their_family(name):
    from advisor.inputs import DATA

    mlp, parallel, kv, billions = SHIPPED[name]
    a = resolve_model(str(DATA / "configs" / f"{name}.json")).arch
    assert (a.mlp, a.parallel, a.kv_heads) == (mlp, parallel, kv)
    assert a.total_params / 1e9 == pytest.approx(billions, rel=0.01)


def test_falcon_and_bigcode_tie_embeddings_by_default_llama_does_not(tmp_path):
    base = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100}
    for model_type, tied in (("falcon", True), ("gpt_bigcode", True), ("llama", False)):
        cfg = {**base, "model_type": model_type, "intermediate_size": 256}
        (tmp_path / "config.json").write_text(json.dumps(cfg))
        assert resolve_model(str(tmp_path)).arch.tied is tied, model_type


@pytest.mark.parametrize("cfg,missing", [
    ({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "vocab_size": 100, "intermediate_size": 128}, "num_hidden_layers"),
    ({"model_type": "mixtral", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100,
      "intermediate_size": 128, "num_local_experts": 8}, "num_experts_per_tok"),
    ({"model_type": "deepseek_v2", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100,
      "intermediate_size": 128, "kv_lora_rank": 16}, "qk_nope_head_dim"),
    ({"model_type": "t5", "d_model": 64}, "not a decoder-only"),
])  # fmt: skip
def test_unsupported_config_is_one_line_naming_what_is_missing(tmp_path, run_cli, cfg, missing):
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    code, out, err = run_cli("estimate", "--model", str(tmp_path / "config.json"))
    assert code == 2 and out == "" and missing in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("cfg,total_b,active_b", [
    # DeepSeek-V3 (config.json on the Hub): MLA with a q LoRA rank, 1 shared + 256 routed experts, 3 dense layers first
    ({"model_type": "deepseek_v3", "hidden_size": 7168, "intermediate_size": 18432, "moe_intermediate_size": 2048,
      "num_hidden_layers": 61, "num_attention_heads": 128, "num_key_value_heads": 128, "n_routed_experts": 256,
      "n_shared_experts": 1, "num_experts_per_tok": 8, "first_k_dense_replace": 3, "q_lora_rank": 1536, "kv_lora_rank": 512,
      "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "vocab_size": 129280}, 671, 37),
    # Qwen1.5-MoE-A2.7B: a shared expert 4× the routed width
    ({"model_type": "qwen2_moe", "hidden_size": 2048, "intermediate_size": 5632, "moe_intermediate_size": 1408,
      "shared_expert_intermediate_size": 5632, "num_hidden_layers": 24, "num_attention_heads": 16, "num_key_value_heads": 16,
      "num_experts": 60, "num_experts_per_tok": 4, "vocab_size": 151936}, 14.3, 2.7),
])  # fmt: skip
def test_shared_experts_and_latent_attention_from_config(tmp_path, cfg, total_b, active_b):
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    a = resolve_model(str(tmp_path)).arch
    assert a.total_params / 1e9 == pytest.approx(total_b, rel=0.02)
    assert (a.total_params - a.linear_params + a.active_linear_params) / 1e9 == pytest.approx(active_b, rel=0.03)
