"""What the advisor knows about models and GPUs, and how ``--model`` / ``--gpu`` are read.

Units: "GB" in the advisor means GiB (2**30 bytes), the unit torch.cuda and the harness's
records report, and the unit GPU memory is sold in (an "80 GB" A100 has 81,920 MiB).

Model architecture facts are copied from each model's Hugging Face ``config.json``; parameter
counts are computed from them (and agree with the published sizes to < 1%).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

from advisor.errors import AdvisorError, did_you_mean
from advisor.inputs.arch import Arch
from advisor.facts import GPUS, Gpu

GIB = 2**30


# ---------------------------------------------------------------- models


@dataclass(frozen=True)
class Model:
    name: str  # catalog spelling, e.g. "Llama-2-7B"
    hub_id: str | None
    arch: Arch
    harness_name: str | None = None  # a `model=<name>` the harness ships (tiny, smollm2-135m)
    ladder: bool = False  # a candidate when the advisor picks "the largest that fits"
    note: str = ""

    @property
    def params(self) -> int:
        return self.arch.total_params

    @property
    def size_label(self) -> str:
        return size_label(self.params)


def size_label(params: float) -> str:
    b = params / 1e9
    if b < 1:
        return f"{params / 1e6:.0f}M"
    return f"{b:.1f}B" if b < 10 else f"{b:.0f}B"


def _m(name, hub, L, d, f, h, kv, V, tied, head_dim=None, qkv_bias=False, **kw) -> Model:
    return Model(name, hub, Arch(L, d, f, h, kv, V, tied, head_dim, qkv_bias), **kw)


def _hf(name: str, hub: str, cfg: dict) -> Model:
    return Model(name, hub, Arch.from_hf(cfg, where=f"catalog {name}"))


# The current families, as the main fields of each model's Hugging Face config.json (`text_config`
# for the multimodal Gemma 3 and Llama 4), read through the same `Arch.from_hf` as a user's file.
# Sources: the config.json on the Hub under each hub id (values copied by hand), cross-checked with
# public mirrors of those files: gpt-oss-20b in EchoCog/gpt-oss-20b docs/gpt-oss-20b-architecture.md,
# Llama 4 Scout in Shameerisb/llama-4-scout_Implementation_Pytorch configs/text_config.py, Mixtral and
# others in tunebench's reference/configs (copied from the Hub). Totals agree with the published sizes.
_Q3 = {"model_type": "qwen3", "vocab_size": 151936, "head_dim": 128, "num_key_value_heads": 8}
_G3 = {"model_type": "gemma3_text", "vocab_size": 262208, "head_dim": 256, "tie_word_embeddings": True}
_L4 = {"model_type": "llama4_text", "hidden_size": 5120, "intermediate_size": 8192, "intermediate_size_mlp": 16384,
       "num_hidden_layers": 48, "num_attention_heads": 40, "num_key_value_heads": 8, "head_dim": 128,
       "vocab_size": 202048, "num_experts_per_tok": 1, "tie_word_embeddings": False}
_OSS = {"model_type": "gpt_oss", "hidden_size": 2880, "intermediate_size": 2880, "num_attention_heads": 64,
        "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 201088, "experts_per_token": 4, "num_experts_per_tok": 4,
        "attention_bias": True, "tie_word_embeddings": False}
_CONFIGS = [
    ("Qwen3-0.6B", "Qwen/Qwen3-0.6B", {**_Q3, "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 16, "tie_word_embeddings": True}),
    ("Qwen3-1.7B", "Qwen/Qwen3-1.7B", {**_Q3, "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 28, "num_attention_heads": 16, "tie_word_embeddings": True}),
    ("Qwen3-4B", "Qwen/Qwen3-4B", {**_Q3, "hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36, "num_attention_heads": 32, "tie_word_embeddings": True}),
    ("Qwen3-8B", "Qwen/Qwen3-8B", {**_Q3, "hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36, "num_attention_heads": 32}),
    ("Qwen3-14B", "Qwen/Qwen3-14B", {**_Q3, "hidden_size": 5120, "intermediate_size": 17408, "num_hidden_layers": 40, "num_attention_heads": 40}),
    ("Qwen3-32B", "Qwen/Qwen3-32B", {**_Q3, "hidden_size": 5120, "intermediate_size": 25600, "num_hidden_layers": 64, "num_attention_heads": 64}),
    ("Qwen3-30B-A3B", "Qwen/Qwen3-30B-A3B", {**_Q3, "model_type": "qwen3_moe", "hidden_size": 2048, "intermediate_size": 6144, "moe_intermediate_size": 768,
     "num_hidden_layers": 48, "num_attention_heads": 32, "num_key_value_heads": 4, "num_experts": 128, "num_experts_per_tok": 8}),
    ("Qwen3-235B-A22B", "Qwen/Qwen3-235B-A22B", {**_Q3, "model_type": "qwen3_moe", "hidden_size": 4096, "intermediate_size": 12288, "moe_intermediate_size": 1536,
     "num_hidden_layers": 94, "num_attention_heads": 64, "num_key_value_heads": 4, "num_experts": 128, "num_experts_per_tok": 8}),
    ("Gemma-3-1B", "google/gemma-3-1b-pt", {**_G3, "vocab_size": 262144, "hidden_size": 1152, "intermediate_size": 6912, "num_hidden_layers": 26, "num_attention_heads": 4, "num_key_value_heads": 1}),
    ("Gemma-3-4B", "google/gemma-3-4b-pt", {**_G3, "hidden_size": 2560, "intermediate_size": 10240, "num_hidden_layers": 34, "num_attention_heads": 8, "num_key_value_heads": 4}),
    ("Gemma-3-12B", "google/gemma-3-12b-pt", {**_G3, "hidden_size": 3840, "intermediate_size": 15360, "num_hidden_layers": 48, "num_attention_heads": 16, "num_key_value_heads": 8}),
    ("Gemma-3-27B", "google/gemma-3-27b-pt", {**_G3, "hidden_size": 5376, "intermediate_size": 21504, "num_hidden_layers": 62, "num_attention_heads": 32, "num_key_value_heads": 16, "head_dim": 128}),
    ("Llama-3.3-70B", "meta-llama/Llama-3.3-70B-Instruct", {"hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 128256}),
    ("Llama-4-Scout-17B-16E", "meta-llama/Llama-4-Scout-17B-16E", {**_L4, "num_local_experts": 16, "interleave_moe_layer_step": 1}),
    ("Llama-4-Maverick-17B-128E", "meta-llama/Llama-4-Maverick-17B-128E", {**_L4, "num_local_experts": 128, "interleave_moe_layer_step": 2}),
    ("gpt-oss-20b", "openai/gpt-oss-20b", {**_OSS, "num_hidden_layers": 24, "num_local_experts": 32}),
    ("gpt-oss-120b", "openai/gpt-oss-120b", {**_OSS, "num_hidden_layers": 36, "num_local_experts": 128}),
    ("Phi-4", "microsoft/phi-4", {"model_type": "phi3", "hidden_size": 5120, "intermediate_size": 17920, "num_hidden_layers": 40, "num_attention_heads": 40, "num_key_value_heads": 10, "vocab_size": 100352}),
    ("Mistral-Small-24B", "mistralai/Mistral-Small-24B-Base-2501", {"model_type": "mistral", "hidden_size": 5120, "intermediate_size": 32768, "num_hidden_layers": 40,
     "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 131072}),
    ("Mixtral-8x7B", "mistralai/Mixtral-8x7B-v0.1", {"model_type": "mixtral", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
     "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000, "num_local_experts": 8, "num_experts_per_tok": 2}),
    ("DeepSeek-V2-Lite", "deepseek-ai/DeepSeek-V2-Lite", {"model_type": "deepseek_v2", "hidden_size": 2048, "intermediate_size": 10944, "moe_intermediate_size": 1408,
     "num_hidden_layers": 27, "num_attention_heads": 16, "num_key_value_heads": 16, "n_routed_experts": 64, "n_shared_experts": 2, "num_experts_per_tok": 6,
     "first_k_dense_replace": 1, "kv_lora_rank": 512, "q_lora_rank": None, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "vocab_size": 102400}),
]  # fmt: skip


# (layers, hidden, intermediate, heads, kv heads, vocab, tied) from each config.json.
# `ladder` marks one current family per size class: the candidates for "the largest that fits".
MODELS: dict[str, Model] = {m.name: m for m in [
    _m("SmolLM2-135M", "HuggingFaceTB/SmolLM2-135M", 30, 576, 1536, 9, 3, 49152, True, harness_name="smollm2-135m"),
    _m("SmolLM2-360M", "HuggingFaceTB/SmolLM2-360M", 32, 960, 2560, 15, 5, 49152, True),
    _m("SmolLM2-1.7B", "HuggingFaceTB/SmolLM2-1.7B", 24, 2048, 8192, 32, 32, 49152, True),
    _m("Qwen2.5-0.5B", "Qwen/Qwen2.5-0.5B", 24, 896, 4864, 14, 2, 151936, True, qkv_bias=True, ladder=True),
    _m("Llama-3.2-1B", "meta-llama/Llama-3.2-1B", 16, 2048, 8192, 32, 8, 128256, True, ladder=True),
    _m("Qwen2.5-1.5B", "Qwen/Qwen2.5-1.5B", 28, 1536, 8960, 12, 2, 151936, True, qkv_bias=True, ladder=True),
    _m("Llama-3.2-3B", "meta-llama/Llama-3.2-3B", 28, 3072, 8192, 24, 8, 128256, True, ladder=True),
    _m("Phi-3-mini", "microsoft/Phi-3-mini-4k-instruct", 32, 3072, 8192, 32, 32, 32064, False),
    _m("Llama-2-7B", "meta-llama/Llama-2-7b-hf", 32, 4096, 11008, 32, 32, 32000, False),
    _m("Mistral-7B", "mistralai/Mistral-7B-v0.1", 32, 4096, 14336, 32, 8, 32000, False),
    _m("Qwen-7B", "Qwen/Qwen-7B", 32, 4096, 11008, 32, 32, 151936, False, qkv_bias=True,
       note="original Qwen; config.json says intermediate_size 22016, the MLP halves it"),
    _m("Qwen2.5-7B", "Qwen/Qwen2.5-7B", 28, 3584, 18944, 28, 4, 152064, False, qkv_bias=True),
    _m("Llama-3-8B", "meta-llama/Meta-Llama-3-8B", 32, 4096, 14336, 32, 8, 128256, False),
    _m("Llama-3.1-8B", "meta-llama/Llama-3.1-8B", 32, 4096, 14336, 32, 8, 128256, False, ladder=True),
    _hf("Gemma-2-9B", "google/gemma-2-9b", {"model_type": "gemma2", "num_hidden_layers": 42, "hidden_size": 3584, "intermediate_size": 14336,
        "num_attention_heads": 16, "num_key_value_heads": 8, "vocab_size": 256000, "head_dim": 256,
        "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0}),
    _m("Llama-2-13B", "meta-llama/Llama-2-13b-hf", 40, 5120, 13824, 40, 40, 32000, False),
    _m("Qwen2.5-14B", "Qwen/Qwen2.5-14B", 48, 5120, 13824, 40, 8, 152064, False, qkv_bias=True, ladder=True),
    _m("Qwen2.5-32B", "Qwen/Qwen2.5-32B", 64, 5120, 27648, 40, 8, 152064, False, qkv_bias=True, ladder=True),
    _m("CodeLlama-34B", "codellama/CodeLlama-34b-hf", 48, 8192, 22016, 64, 8, 32000, False),
    _m("Llama-2-70B", "meta-llama/Llama-2-70b-hf", 80, 8192, 28672, 64, 8, 32000, False),
    _m("Llama-3.1-70B", "meta-llama/Llama-3.1-70B", 80, 8192, 28672, 64, 8, 128256, False, ladder=True),
    _m("Qwen2.5-72B", "Qwen/Qwen2.5-72B", 80, 8192, 29568, 64, 8, 152064, False, qkv_bias=True, ladder=True),
    _m("Llama-3.1-405B", "meta-llama/Llama-3.1-405B", 126, 16384, 53248, 128, 8, 128256, False, ladder=True),
    *[_hf(*entry) for entry in _CONFIGS],
]}  # fmt: skip

# max_position_embeddings from each config.json on the Hub (what `--seq-len` is checked against).
MAX_POSITIONS = {
    "SmolLM2-135M": 8192, "SmolLM2-360M": 8192, "SmolLM2-1.7B": 8192, "Qwen2.5-0.5B": 32768, "Qwen2.5-1.5B": 131072,
    "Llama-3.2-1B": 131072, "Llama-3.2-3B": 131072, "Phi-3-mini": 4096, "Llama-2-7B": 4096, "Mistral-7B": 32768,
    "Qwen-7B": 8192, "Qwen2.5-7B": 131072, "Llama-3-8B": 8192, "Llama-3.1-8B": 131072, "Gemma-2-9B": 8192,
    "Llama-2-13B": 4096, "Qwen2.5-14B": 131072, "Qwen2.5-32B": 131072, "CodeLlama-34B": 16384, "Llama-2-70B": 4096,
    "Llama-3.1-70B": 131072, "Qwen2.5-72B": 131072, "Llama-3.1-405B": 131072, "Llama-3.3-70B": 131072,
    "Qwen3-0.6B": 40960, "Qwen3-1.7B": 40960, "Qwen3-4B": 40960, "Qwen3-8B": 40960, "Qwen3-14B": 40960, "Qwen3-32B": 40960,
    "Qwen3-30B-A3B": 40960, "Qwen3-235B-A22B": 40960, "Gemma-3-1B": 32768, "Gemma-3-4B": 131072, "Gemma-3-12B": 131072,
    "Gemma-3-27B": 131072, "gpt-oss-20b": 131072, "gpt-oss-120b": 131072, "Phi-4": 16384, "Mistral-Small-24B": 32768,
    "Mixtral-8x7B": 32768, "DeepSeek-V2-Lite": 163840,
}  # fmt: skip
MODELS = {k: replace(m, arch=replace(m.arch, max_positions=MAX_POSITIONS.get(k, 0))) for k, m in MODELS.items()}

# `--model 7B`: the guides' figures are for the Llama-2 generation, so sizes they quote map there.
SIZE_REPRESENTATIVES = {
    "135M": "SmolLM2-135M", "360M": "SmolLM2-360M", "0.5B": "Qwen2.5-0.5B", "1B": "Llama-3.2-1B",
    "1.5B": "Qwen2.5-1.5B", "1.7B": "SmolLM2-1.7B", "3B": "Llama-3.2-3B", "4B": "Phi-3-mini",
    "7B": "Llama-2-7B", "8B": "Llama-3.1-8B", "9B": "Gemma-2-9B", "13B": "Llama-2-13B",
    "14B": "Qwen2.5-14B", "32B": "Qwen2.5-32B", "34B": "CodeLlama-34B", "70B": "Llama-2-70B", "72B": "Qwen2.5-72B",
    "405B": "Llama-3.1-405B",
}  # fmt: skip

_SUFFIXES = ("-instruct", "-chat", "-hf", "-it", "-base", "-v0.1", "-4k", "-128k")


def _key(name: str) -> str:
    """Loose spelling: 'meta-llama/Llama-2-7b-chat-hf' and 'llama-2-7b' both → 'llama27b'."""
    name = name.strip().lower().rsplit("/", 1)[-1]
    for _ in range(3):
        for s in _SUFFIXES:
            if name.endswith(s):
                name = name[: -len(s)]
    name = name.replace("meta-llama-", "llama-").replace("meta-", "")
    return re.sub(r"[^a-z0-9.]", "", name)


_BY_KEY: dict[str, str] = {}
for _model in MODELS.values():
    _BY_KEY[_key(_model.name)] = _model.name
    if _model.hub_id:
        _BY_KEY[_key(_model.hub_id)] = _model.name
    if _model.harness_name:
        _BY_KEY[_key(_model.harness_name)] = _model.name

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mb])\s*$", re.I)
MODEL_FORMS = "a catalog name such as Llama-3.1-8B (`advisor models` lists them), a size such as 7B, or a path to a config.json"


def _synthetic(params: float, label: str) -> Model:
    """A size with no catalog entry: the nearest catalog model, with its layer count scaled."""
    ref = min((m for m in MODELS.values() if not m.arch.is_moe), key=lambda m: abs(math.log(m.params / params)))
    a = ref.arch
    per_layer = a.layer_linear_params + 2 * a.hidden
    fixed = a.embedding_params + a.head_params + a.hidden
    layers = max(1, round((params - fixed) / per_layer))
    return Model(f"~{label} ({ref.name} shape, {layers} layers)", None, replace(a, layers=layers),
                 note=f"no {label} model in the catalog: {ref.name}'s shape with {layers} layers")  # fmt: skip


def resolve_model(text: str, *, flag: str = "--model") -> Model:
    """A catalog name or hub id, a size (``7B``, ``135M``), or a ``config.json`` path (or its directory)."""
    text = str(text).strip()
    if not text:
        raise AdvisorError(f"{flag}: empty; use {MODEL_FORMS}")
    name = _BY_KEY.get(_key(text))
    if name:
        return MODELS[name]
    m = _SIZE.match(text)
    if m:
        value, unit = float(m.group(1)), m.group(2).upper()
        params = value * (1e9 if unit == "B" else 1e6)
        if not 1e6 <= params <= 2e12:
            raise AdvisorError(f"{flag}: '{text}' is outside 1M–2000B parameters; use {MODEL_FORMS}")
        label = f"{value:g}{unit}"
        if label in SIZE_REPRESENTATIVES:
            return MODELS[SIZE_REPRESENTATIVES[label]]
        near = [mod for mod in MODELS.values() if not mod.arch.is_moe and abs(mod.params / params - 1) <= 0.08]
        if near:
            return min(near, key=lambda mod: abs(mod.params / params - 1))
        return _synthetic(params, label)
    path = Path(text).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise AdvisorError(f"{flag}: {path} does not exist; use {MODEL_FORMS}")
        cfg = read_config_json(path, flag)
        arch = Arch.from_hf(cfg, where=f"{flag} {path}")
        return Model(f"{config_label(cfg)} ({size_label(arch.total_params)})", str(path.parent), arch)
    names = [m.name for m in MODELS.values()]
    raise AdvisorError(f"{flag}: unknown model '{text}'{did_you_mean(text, names, key=_key)}; use {MODEL_FORMS}")


def config_label(cfg: dict) -> str:
    """A config.json's own name: ``_name_or_path`` (its hub id's last part), else its architecture
    class, else its model_type. Never the folder it sits in (``configs/``, a snapshot hash)."""
    name = cfg.get("_name_or_path") or cfg.get("name_or_path")
    if isinstance(name, str) and name.strip():
        return name.strip().rstrip("/").rsplit("/", 1)[-1]
    archs = cfg.get("architectures")
    if isinstance(archs, list) and archs and isinstance(archs[0], str):
        return archs[0]
    return str(cfg.get("model_type") or "config.json")


def check_seq_len(model: Model, seq_len: int, *, long_context: bool = False, flag: str = "--seq-len") -> str | None:
    """A sequence longer than the model's context (``max_position_embeddings``) is an error: positions
    past it were never trained and, without RoPE scaling, the model is not the one being sized. With
    ``long_context`` (training beyond the context with RoPE scaling, e.g. YaRN) it is a warning, returned."""
    ctx = model.arch.max_positions
    if not ctx or seq_len <= ctx:
        return None
    what = f"{flag}: {seq_len} is longer than {model.name}'s context (max_position_embeddings {ctx})"
    if model.arch.positions:  # learned absolute positions (GPT-BigCode): the table has no row past ctx, no scaling
        raise AdvisorError(f"{what}; its positions are a learned table of {model.arch.positions} rows, so a longer "
                           f"sequence cannot run (stacks truncate to it): use --seq-len <= {min(ctx, model.arch.positions)}")
    if not long_context:
        raise AdvisorError(f"{what}; use --seq-len <= {ctx}, or add --long-context to size training beyond it with RoPE scaling")
    scaled = "its config declares rope_scaling" if model.arch.rope_scaled else "set rope_scaling (e.g. YaRN) in its config"
    return f"{what}: long-context training, {scaled}; memory is sized at {seq_len} tokens"


def ladder() -> list[Model]:
    """Candidate base models, smallest first."""
    return sorted((m for m in MODELS.values() if m.ladder), key=lambda m: m.params)


# ---------------------------------------------------------------- GPUs


# A bare "24GB" is priced like the commonest card of that size (only the time estimate uses it).
TYPICAL_BY_MEMORY = {16: "T4", 24: "A10G", 40: "A100-40GB", 48: "A6000", 80: "A100-80GB", 141: "H200"}
GPUS_PER_NODE = 8
GPU_FORMS = "use e.g. 24GB, A10G, 8xH100"


@dataclass(frozen=True)
class GpuBudget:
    """What the user has: ``count`` GPUs of one card (``facts.Gpu``, the one GPU type), each with
    ``per_gpu_gb`` a process may use. A bare size (``24GB``) has no named card: it is priced like the
    commonest card of that size (``named`` is False, and the basis says so)."""

    count: int
    per_gpu_gb: float  # the memory budget one process may use
    card: Gpu
    named: bool = True
    text: str = ""

    @property
    def name(self) -> str | None:
        return self.card.name if self.named else None

    @property
    def tflops(self) -> float:
        return self.card.bf16_tflops  # bf16 dense peak of one GPU

    @property
    def bf16(self) -> bool:
        return self.card.bf16 if self.named else True  # a bare size: assumed a bf16 card (Ampere or later)

    @property
    def tflops_basis(self) -> str:
        if self.named:
            return f"{self.card.name} datasheet"
        return f"assumed {self.card.name}-class ({self.card.bf16_tflops:g} TFLOP/s bf16); name the GPU to refine"

    @property
    def label(self) -> str:
        one = self.name or f"{self.per_gpu_gb:g} GB GPU"
        return one if self.count == 1 else f"{self.count}× {one}"

    @property
    def total_gb(self) -> float:
        return self.count * self.per_gpu_gb

    def with_count(self, count: int) -> "GpuBudget":
        return replace(self, count=count, text="")

    def to_dict(self) -> dict:
        return {"count": self.count, "per_gpu_gb": self.per_gpu_gb, "name": self.name, "tflops": self.tflops,
                "tflops_basis": self.tflops_basis, "bf16": self.bf16, "text": self.text}


def _gkey(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower().replace("nvidia", "").replace("geforce", ""))


_GPU_BY_KEY = {}
for _g in GPUS.values():
    _GPU_BY_KEY[_gkey(_g.name)] = _g.name
    for _a in _g.aliases:
        _GPU_BY_KEY[_gkey(_a)] = _g.name
_AMBIGUOUS = {"a100": "A100-40GB or A100-80GB"}
_COUNT = re.compile(r"^\s*(\d+)\s*[x×*]\s*(.+)$", re.I)
_MEM = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(gb|gib|g)\s*$", re.I)


def parse_gpu(text: str, *, flag: str = "--gpu") -> GpuBudget:
    """``24GB``, ``A10G``, ``RTX 4090``, ``8xH100``, ``2x24GB`` → a GpuBudget."""
    raw = str(text)
    count, rest = 1, raw
    m = _COUNT.match(raw)
    if m:
        count, rest = int(m.group(1)), m.group(2)
        if not 1 <= count <= 4096:
            raise AdvisorError(f"{flag}: '{raw}' asks for {count} GPUs; the count must be 1–4096, e.g. 8xH100")
    mm = _MEM.match(rest)
    if mm:
        gb = float(mm.group(1))
        if not 1 <= gb <= 1024:
            raise AdvisorError(f"{flag}: '{raw}': {gb:g} GB per GPU is outside 1–1024; {GPU_FORMS}")
        typical = GPUS[TYPICAL_BY_MEMORY.get(min(TYPICAL_BY_MEMORY, key=lambda k: abs(k - gb)))]
        return GpuBudget(count, gb, typical, named=False, text=raw)
    key = _gkey(rest)
    if key in _AMBIGUOUS:
        raise AdvisorError(f"{flag}: '{raw}' is ambiguous: say {_AMBIGUOUS[key]}")
    if key in _GPU_BY_KEY:
        g = GPUS[_GPU_BY_KEY[key]]
        return GpuBudget(count, g.usable_gb, g, text=raw)
    names = list(GPUS)
    hint = did_you_mean(rest, names, key=_gkey)
    raise AdvisorError(f"{flag}: '{raw}' is not a GPU budget{hint}; {GPU_FORMS} (known GPUs: {', '.join(names)})")


def model_table() -> list[dict]:
    """One row per model, the same keys on every row (MoE: experts as 'active of total')."""
    rows = []
    for m in sorted(MODELS.values(), key=lambda m: m.params):
        a = m.arch
        dense = {k: v for k, v in a.to_record().items() if k not in ("num_local_experts", "num_experts_per_tok", "moe_intermediate_size")}
        active = a.total_params - a.linear_params + a.active_linear_params
        rows.append({"name": m.name, "params_b": round(m.params / 1e9, 2), "active_params_b": round(active / 1e9, 2),
                     "hub_id": m.hub_id, **dense, "head_dim": a.head_dim,
                     "experts": f"{a.experts_per_tok} of {a.experts}" if a.is_moe else None})  # fmt: skip
    return rows




def read_config_json(path: Path, flag: str) -> dict:
    """A model's config.json as a dict; an unreadable file or a non-object is one line naming ``flag``."""
    try:
        cfg = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AdvisorError(f"{flag}: {path} is not a readable config.json ({e.__class__.__name__})") from None
    if not isinstance(cfg, dict):
        raise AdvisorError(f"{flag}: {path} is not a config.json object")
    return cfg
