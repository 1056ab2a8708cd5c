"""The transformers config dict of a model the advisor names (no torch here).

A ``config.json`` path is read as is (multimodal wrappers: their ``text_config``). A catalog model
built from a config dict (``advisor.inputs.catalog._CONFIGS``) uses that dict; one given by shape only
(``catalog._m``) becomes the Llama-style config its shape describes (``qwen2`` where q/k/v carry
biases, ``gemma2`` with its soft-capping), which is what its family's modeling code builds.
"""

from __future__ import annotations

from pathlib import Path

from advisor.errors import AdvisorError
from advisor.inputs.catalog import read_config_json


def raw(path: str | Path) -> dict:
    """The config.json as written (a directory: its config.json); one-line errors."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "config.json"
    return read_config_json(p, "--model")


def from_path(path: str | Path) -> dict:
    """What transformers builds the model from: the decoder's config, loading details dropped."""
    cfg = raw(path)
    if isinstance(cfg.get("text_config"), dict):
        cfg = {**cfg["text_config"], "model_type": cfg["text_config"].get("model_type") or cfg.get("model_type")}
    return _clean(cfg)


def _clean(cfg: dict) -> dict:
    """Drop what only concerns loading (weights' dtype and quantization, hub bookkeeping)."""
    drop = ("architectures", "auto_map", "quantization_config", "_name_or_path", "transformers_version", "torch_dtype", "dtype")
    return {k: v for k, v in cfg.items() if k not in drop}


def from_catalog(model) -> dict:
    """The config dict for a catalog ``advisor.inputs.catalog.Model``."""
    from advisor.inputs.catalog import _CONFIGS

    for name, _hub, cfg in _CONFIGS:
        if name == model.name:
            return {"model_type": "llama", **cfg}
    return from_arch(model.arch)


def from_arch(a) -> dict:
    """A Llama-style config from an ``advisor.inputs.arch.Arch`` (dense, gated MLP, RMSNorm)."""
    if a.is_moe or a.mla or a.mlp != "gated":
        raise AdvisorError(f"--simulate: no config.json for this {a.family} model in the catalog; pass its config.json path")
    cfg = dict(a.to_record())
    cfg["model_type"] = "qwen2" if a.qkv_bias and a.family in ("llama", "qwen2") else a.family
    if a.family == "gemma2":
        cfg.update(attn_logit_softcapping=50.0, final_logit_softcapping=30.0, query_pre_attn_scalar=a.hd)
    return cfg


def label(cfg: dict) -> str:
    """The model's name from its config (``_name_or_path``'s last part, else the architecture), never its folder."""
    name = cfg.get("_name_or_path") or (cfg.get("architectures") or [None])[0] or cfg.get("model_type") or "model"
    return str(name).rstrip("/").rsplit("/", 1)[-1]


def stand_in_arch(cfg: dict):
    """An ``Arch`` holding only the config's main sizes, for a model the analytic path cannot size:
    the flags need a shape; the simulation builds the real one."""
    from advisor.inputs.arch import Arch

    def first(*keys, default=1):
        return int(next((cfg[k] for k in keys if cfg.get(k)), default))

    heads = first("num_attention_heads", "n_head")
    return Arch(first("num_hidden_layers", "n_layer"), first("hidden_size", "d_model"), first("intermediate_size", default=1),
                heads, first("num_key_value_heads", default=heads), first("vocab_size"), bool(cfg.get("tie_word_embeddings")),
                family=str(cfg.get("model_type") or "unknown"))  # fmt: skip


def with_layers(cfg: dict, layers: int) -> dict:
    """The same transformers config with ``layers`` decoder layers (per-layer lists cut to match),
    for simulating a model at reduced depth at its real widths."""
    c = {**cfg}
    for k in ("num_hidden_layers", "n_layer", "num_layers"):
        if k in c:
            c[k] = layers
    if "num_hidden_layers" not in c and "n_layer" not in c:
        c["num_hidden_layers"] = layers
    if "layer_types" in c:
        c["layer_types"] = c["layer_types"][:layers]
    return c
