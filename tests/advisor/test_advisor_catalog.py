"""Model and GPU catalogs, and how --gpu / --model are read."""

from __future__ import annotations

import json

import pytest

from advisor.catalog import GPUS, MODELS, parse_gpu, resolve_model
from advisor.errors import AdvisorError

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
