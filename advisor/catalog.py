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
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from advisor.errors import AdvisorError, did_you_mean

GIB = 2**30


# ---------------------------------------------------------------- architectures


@dataclass(frozen=True)
class Arch:
    """A Llama-style decoder: attention (q, k, v, o) + gated MLP (gate, up, down) per layer."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool
    head_dim: int | None = None  # None → hidden // heads (Gemma-2 sets it: 16 heads × 256 ≠ 3584)
    qkv_bias: bool = False  # Qwen2 has biases on q, k, v

    @property
    def hd(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @property
    def q_dim(self) -> int:
        return self.heads * self.hd

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.hd

    def linears(self) -> dict[str, tuple[int, int]]:
        """(d_in, d_out) of each linear in one layer, by the module names peft targets."""
        d, f, q, kv = self.hidden, self.intermediate, self.q_dim, self.kv_dim
        return {
            "q_proj": (d, q), "k_proj": (d, kv), "v_proj": (d, kv), "o_proj": (q, d),
            "gate_proj": (d, f), "up_proj": (d, f), "down_proj": (f, d),
        }  # fmt: skip

    @property
    def layer_linear_params(self) -> int:
        return sum(i * o for i, o in self.linears().values())

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def head_params(self) -> int:
        """The LM head's own weight: 0 when tied to the embedding."""
        return 0 if self.tied else self.vocab * self.hidden

    @property
    def small_params(self) -> int:
        """Norms and biases: 2 RMSNorms per layer + the final one."""
        bias = (self.q_dim + 2 * self.kv_dim) if self.qkv_bias else 0
        return self.layers * (2 * self.hidden + bias) + self.hidden

    @property
    def linear_params(self) -> int:
        return self.layers * self.layer_linear_params

    @property
    def total_params(self) -> int:
        return self.linear_params + self.embedding_params + self.head_params + self.small_params

    def to_record(self) -> dict:
        """The harness's ``config.model.arch`` spelling."""
        out = {
            "num_hidden_layers": self.layers, "hidden_size": self.hidden,
            "intermediate_size": self.intermediate, "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads, "vocab_size": self.vocab,
            "tie_word_embeddings": self.tied,
        }  # fmt: skip
        if self.head_dim:
            out["head_dim"] = self.head_dim
        return out

    @classmethod
    def from_hf(cls, cfg: dict, *, where: str = "config") -> "Arch":
        """From a Hugging Face config dict (or a harness record's ``arch``)."""
        need = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "vocab_size")
        missing = [k for k in need if cfg.get(k) is None]
        if missing:
            raise AdvisorError(f"{where}: missing {', '.join(missing)} (need a Llama-style decoder config)")
        inter = int(cfg["intermediate_size"])
        if cfg.get("model_type") == "qwen":  # Qwen (v1) stores 2× the MLP width: w1/w2 are each half
            inter //= 2
        heads = int(cfg["num_attention_heads"])
        head_dim = cfg.get("head_dim")
        hidden = int(cfg["hidden_size"])
        return cls(
            layers=int(cfg["num_hidden_layers"]),
            hidden=hidden,
            intermediate=inter,
            heads=heads,
            kv_heads=int(cfg.get("num_key_value_heads") or heads),
            vocab=int(cfg["vocab_size"]),
            tied=bool(cfg.get("tie_word_embeddings", False)),
            head_dim=int(head_dim) if head_dim and int(head_dim) * heads != hidden else None,
            qkv_bias=bool(cfg.get("attention_bias", False)) or cfg.get("model_type") in ("qwen", "qwen2"),
        )


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
    _m("Gemma-2-9B", "google/gemma-2-9b", 42, 3584, 14336, 16, 8, 256000, True, head_dim=256),
    _m("Llama-2-13B", "meta-llama/Llama-2-13b-hf", 40, 5120, 13824, 40, 40, 32000, False),
    _m("Qwen2.5-14B", "Qwen/Qwen2.5-14B", 48, 5120, 13824, 40, 8, 152064, False, qkv_bias=True, ladder=True),
    _m("Qwen2.5-32B", "Qwen/Qwen2.5-32B", 64, 5120, 27648, 40, 8, 152064, False, qkv_bias=True, ladder=True),
    _m("CodeLlama-34B", "codellama/CodeLlama-34b-hf", 48, 8192, 22016, 64, 8, 32000, False),
    _m("Llama-2-70B", "meta-llama/Llama-2-70b-hf", 80, 8192, 28672, 64, 8, 32000, False),
    _m("Llama-3.1-70B", "meta-llama/Llama-3.1-70B", 80, 8192, 28672, 64, 8, 128256, False, ladder=True),
    _m("Qwen2.5-72B", "Qwen/Qwen2.5-72B", 80, 8192, 29568, 64, 8, 152064, False, qkv_bias=True, ladder=True),
    _m("Llama-3.1-405B", "meta-llama/Llama-3.1-405B", 126, 16384, 53248, 128, 8, 128256, False, ladder=True),
]}  # fmt: skip

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
    ref = min(MODELS.values(), key=lambda m: abs(math.log(m.params / params)))
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
        near = [mod for mod in MODELS.values() if abs(mod.params / params - 1) <= 0.08]
        if near:
            return min(near, key=lambda mod: abs(mod.params / params - 1))
        return _synthetic(params, label)
    path = Path(text).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise AdvisorError(f"{flag}: {path} does not exist; use {MODEL_FORMS}")
        try:
            cfg = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise AdvisorError(f"{flag}: {path} is not a readable config.json ({e.__class__.__name__})") from None
        if not isinstance(cfg, dict):
            raise AdvisorError(f"{flag}: {path} is not a config.json object")
        if isinstance(cfg.get("text_config"), dict):  # multimodal wrappers keep the decoder here
            cfg = {**cfg["text_config"], "model_type": cfg["text_config"].get("model_type")}
        arch = Arch.from_hf(cfg, where=f"{flag} {path}")
        label = cfg.get("_name_or_path") or path.parent.name or "local model"
        return Model(f"{Path(str(label)).name} ({size_label(arch.total_params)})", str(path.parent), arch)
    names = [m.name for m in MODELS.values()]
    raise AdvisorError(f"{flag}: unknown model '{text}'{did_you_mean(text, names, key=_key)}; use {MODEL_FORMS}")


def ladder() -> list[Model]:
    """Candidate base models, smallest first."""
    return sorted((m for m in MODELS.values() if m.ladder), key=lambda m: m.params)


# ---------------------------------------------------------------- GPUs


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_gb: float  # as sold
    usable_gb: float  # what torch.cuda.get_device_properties(0).total_memory reports, in GiB
    bf16_tflops: float  # dense tensor-core peak, no sparsity (same table as harness/measure.py)
    bf16: bool = True  # T4 (Turing) has no bf16: fp16 + loss scaling instead
    aliases: tuple[str, ...] = ()


# Usable memory: the card's total minus what the driver keeps (ECC, reserved pages), as torch sees it.
GPUS: dict[str, Gpu] = {g.name: g for g in [
    Gpu("T4", 16, 14.6, 65, bf16=False),  # 65 = fp16 tensor peak
    Gpu("L4", 24, 22.0, 121),
    Gpu("A10G", 24, 22.0, 70, aliases=("a10",)),  # AWS g5: 23,028 MiB visible
    Gpu("RTX 3090", 24, 23.7, 71, aliases=("3090", "rtx3090")),
    Gpu("RTX 4090", 24, 23.6, 165, aliases=("4090", "rtx4090")),
    Gpu("A6000", 48, 47.5, 155, aliases=("rtxa6000",)),
    Gpu("L40S", 48, 44.4, 362),
    Gpu("A100-40GB", 40, 39.4, 312, aliases=("a10040g", "a10040gb", "a100 40gb")),
    Gpu("A100-80GB", 80, 79.2, 312, aliases=("a10080g", "a10080gb", "a100 80gb")),
    Gpu("H100", 80, 79.1, 989, aliases=("h100sxm", "h10080gb", "h10080g")),  # SXM; PCIe is 756
    Gpu("H200", 141, 139.8, 989),
]}  # fmt: skip

# A bare "24GB" is priced like the commonest card of that size (only the time estimate uses it).
TYPICAL_BY_MEMORY = {16: "T4", 24: "A10G", 40: "A100-40GB", 48: "A6000", 80: "A100-80GB", 141: "H200"}
GPUS_PER_NODE = 8
GPU_FORMS = "use e.g. 24GB, A10G, 8xH100"


@dataclass(frozen=True)
class GpuBudget:
    count: int
    per_gpu_gb: float  # the memory budget one process may use
    name: str | None  # a catalog GPU, or None for a bare size
    tflops: float  # bf16 dense peak of one GPU (assumed for a bare size)
    tflops_basis: str
    bf16: bool = True
    text: str = ""

    @property
    def label(self) -> str:
        one = self.name or f"{self.per_gpu_gb:g} GB GPU"
        return one if self.count == 1 else f"{self.count}× {one}"

    @property
    def total_gb(self) -> float:
        return self.count * self.per_gpu_gb

    def to_dict(self) -> dict:
        return asdict(self)


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
        return GpuBudget(count, gb, None, typical.bf16_tflops,
                         f"assumed {typical.name}-class ({typical.bf16_tflops:g} TFLOP/s bf16); name the GPU to refine",
                         True, raw)  # fmt: skip
    key = _gkey(rest)
    if key in _AMBIGUOUS:
        raise AdvisorError(f"{flag}: '{raw}' is ambiguous: say {_AMBIGUOUS[key]}")
    if key in _GPU_BY_KEY:
        g = GPUS[_GPU_BY_KEY[key]]
        return GpuBudget(count, g.usable_gb, g.name, g.bf16_tflops, f"{g.name} datasheet", g.bf16, raw)
    names = list(GPUS)
    hint = did_you_mean(rest, names, key=_gkey)
    raise AdvisorError(f"{flag}: '{raw}' is not a GPU budget{hint}; {GPU_FORMS} (known GPUs: {', '.join(names)})")


def model_table() -> list[dict]:
    return [{"name": m.name, "params_b": round(m.params / 1e9, 2), "hub_id": m.hub_id, **m.arch.to_record()}
            for m in sorted(MODELS.values(), key=lambda m: m.params)]  # fmt: skip


__all__ = ["Arch", "Model", "MODELS", "Gpu", "GPUS", "GpuBudget", "parse_gpu", "resolve_model", "ladder", "GIB"]
