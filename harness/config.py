"""Typed run configuration: Hydra composes YAML, this module turns it into frozen dataclasses.

Nothing below the entry point sees a ``DictConfig``. Defaults live in the YAML under
``sweeps/``; the dataclasses only declare the fields and check their values.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from harness.errors import UserError, did_you_mean, unknown
from harness.paths import CONFIG_DIR

TARGET_PRESETS = ("q_proj+v_proj", "attn", "all-linear")
DTYPES = ("auto", "fp32", "bf16", "fp16")
OPTIMIZERS = ("adamw", "adamw8bit", "paged_adamw8bit", "sgd")
SAVE_MODES = ("adapter", "merged", "none")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str  # tiny | gguf | pretrained
    name_or_path: str | None = None  # set → plain from_pretrained(name_or_path)
    revision: str | None = None
    gguf_package: str | None = None
    gguf_file: str | None = None
    arch: Mapping[str, Any] = field(default_factory=dict)  # tiny / cost-only: LlamaConfig kwargs
    scored: bool = True  # False for random-init cost-only models: score is meaningless
    trust_remote_code: bool = False

    def __post_init__(self):
        if self.name_or_path is None and self.source not in ("tiny", "gguf", "pretrained"):
            raise UserError(f"model.source '{self.source}' must be tiny, gguf or pretrained")
        if self.name_or_path is None and self.source == "pretrained":
            raise UserError("model.name_or_path is required for a pretrained model (a hub id or a local path)")


@dataclass(frozen=True)
class MethodSpec:
    name: str
    default_lr: float
    r: int | None = None  # adapter rank; None for methods without adapters
    alpha: float | None = None  # None → 2r
    dropout: float = 0.05
    targets: str = "all-linear"
    quantize: str | None = None  # "4bit" → NF4 base (QLoRA / QDoRA)
    use_dora: bool = False
    inner: str | None = None  # fsdp / grpo: what is trained inside (full | lora)
    world_size: int = 1
    options: Mapping[str, Any] = field(default_factory=dict)  # method-specific settings
    init_from: str | None = None  # dpo / grpo: start from this run's saved adapter (harness/init_from.py)

    def __post_init__(self):
        if self.r is not None and (not isinstance(self.r, int) or self.r < 1):
            raise UserError(f"method.r must be a positive integer (got {self.r!r})")
        if self.alpha is not None and not self.alpha > 0:
            raise UserError(f"method.alpha must be > 0 (got {self.alpha!r})")
        if not 0 <= self.dropout < 1:
            raise UserError(f"method.dropout must be in [0, 1) (got {self.dropout!r})")
        if self.targets not in TARGET_PRESETS and not all(t.strip() for t in self.targets.split("+")):
            raise UserError(f"method.targets '{self.targets}': use {', '.join(TARGET_PRESETS)} or module names joined by '+'")
        if self.quantize not in (None, "4bit"):
            raise UserError(f"method.quantize must be null or 4bit (got {self.quantize!r})")
        if self.world_size < 1:
            raise UserError(f"method.world_size must be >= 1 (got {self.world_size!r})")

    @property
    def lora_alpha(self) -> float:
        return float(self.alpha) if self.alpha is not None else 2.0 * (self.r or 0)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    seed: int = 0
    n_train: int = 600
    n_validation: int = 100
    n_test: int = 200
    difficulty: str | None = None  # arithmetic
    train_file: str | None = None  # custom
    eval_file: str | None = None  # custom
    metric: str = "exact_match"  # custom


@dataclass(frozen=True)
class TrainSpec:
    max_steps: int = 48  # > 0 wins over epochs; -1 → train for `epochs`
    epochs: float = 1.0
    batch_size: int = 8
    grad_accum: int = 1
    lr: float | None = None  # None → the method's default_lr
    warmup_ratio: float = 0.1
    scheduler: str = "cosine"
    weight_decay: float = 0.0
    max_seq_len: int = 256
    grad_checkpointing: bool = False
    dtype: str = "auto"
    optimizer: str = "adamw"
    measure_skip_steps: int = 2  # warm-up steps left out of throughput
    save: str = "adapter"
    log_every: int = 1
    batching: str = "by_length"  # by_length | shuffled (harness.train.BATCHING)

    def __post_init__(self):
        if self.lr is not None and not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise UserError(f"train.lr must be a positive number (got {self.lr!r})")
        if self.max_steps == 0 or self.max_steps < -1:
            raise UserError(f"train.max_steps must be > 0, or -1 to train for train.epochs (got {self.max_steps})")
        if self.max_steps == -1 and not self.epochs > 0:
            raise UserError(f"train.epochs must be > 0 (got {self.epochs})")
        for name in ("batch_size", "grad_accum", "max_seq_len"):
            if getattr(self, name) < 1:
                raise UserError(f"train.{name} must be >= 1 (got {getattr(self, name)})")
        if not 0 <= self.warmup_ratio < 1:
            raise UserError(f"train.warmup_ratio must be in [0, 1) (got {self.warmup_ratio})")
        if self.dtype not in DTYPES:
            raise unknown("train.dtype", self.dtype, DTYPES)
        if self.optimizer not in OPTIMIZERS:
            raise unknown("train.optimizer", self.optimizer, OPTIMIZERS)
        if self.save not in SAVE_MODES:
            raise unknown("train.save", self.save, SAVE_MODES)
        if self.measure_skip_steps < 0:
            raise UserError("train.measure_skip_steps must be >= 0")
        if self.batching not in ("by_length", "shuffled"):
            raise unknown("train.batching", self.batching, ("by_length", "shuffled"))


@dataclass(frozen=True)
class EvalSpec:
    limit: int | None = 100  # test examples scored (None → all)
    batch_size: int = 16
    probes: tuple[str, ...] = ()
    probe_limit: int | None = None
    enabled: bool = True

    def __post_init__(self):
        if self.limit is not None and self.limit < 1:
            raise UserError(f"eval.limit must be >= 1 or null (got {self.limit})")
        if self.batch_size < 1:
            raise UserError(f"eval.batch_size must be >= 1 (got {self.batch_size})")


@dataclass(frozen=True)
class RunSpec:
    model: ModelSpec
    method: MethodSpec
    task: TaskSpec
    train: TrainSpec
    eval: EvalSpec
    seed: int = 0
    repeat: int = 0  # repetition index: same config measured again gets its own record
    results_dir: str = "results/runs"
    budget_gb: float | None = None
    timeout_s: float | None = None

    @property
    def lr(self) -> float:
        return float(self.train.lr if self.train.lr is not None else self.method.default_lr)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def run_id(self) -> str:
        """Stable id from everything that changes what is measured (not where it is written)."""
        identity = self.to_dict()
        identity.pop("results_dir")
        identity.pop("timeout_s")  # a limit on the run, not part of what it measures
        identity["train"].pop("save")
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:10]
        return f"{self.method.name}-{self.model.name}-{self.task.name}-{digest}"


def _build(cls, data: Mapping[str, Any], prefix: str):
    known = {f.name for f in fields(cls)}
    extra = set(data) - known
    if extra:
        key = sorted(extra)[0]
        raise UserError(f"unknown setting '{prefix}.{key}'{did_you_mean(key, known)}")
    try:
        return cls(**data)
    except TypeError as e:  # a required field is missing
        raise UserError(f"{prefix}: {e}") from None


def _tupled(value):
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(p for p in value.split(",") if p)
    return tuple(value)


def spec_from_dict(cfg: Mapping[str, Any]) -> RunSpec:
    """Turn a resolved config (plain dict) into a RunSpec, checking every value."""
    cfg = dict(cfg)
    cfg.pop("sweep", None)
    cfg.pop("debug", None)
    cfg.pop("hydra", None)
    cfg.pop("launcher", None)  # sweep-runner settings: not part of a run
    cfg.pop("retry_failed", None)
    ev = dict(cfg.pop("eval", {}) or {})
    ev["probes"] = _tupled(ev.get("probes"))
    parts = {
        "model": _build(ModelSpec, cfg.pop("model"), "model"),
        "method": _build(MethodSpec, cfg.pop("method"), "method"),
        "task": _build(TaskSpec, cfg.pop("task"), "task"),
        "train": _build(TrainSpec, cfg.pop("train"), "train"),
        "eval": _build(EvalSpec, ev, "eval"),
    }
    return _build(RunSpec, {**cfg, **parts}, "config")


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def compose(overrides: list[str]):
    """Compose ``sweeps/config.yaml`` with command-line overrides; bad overrides → UserError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    for ov in overrides:
        key, _, value = ov.partition("=")
        key = key.lstrip("+~")
        if "." not in key and (CONFIG_DIR / key).is_dir() and value not in ("", "null"):
            options = group_options(key)
            if value not in options:
                raise unknown(f"{key} option", value, options)
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return hydra_compose(config_name="config", overrides=overrides)
    except MissingConfigException as e:
        raise UserError(str(e).splitlines()[0]) from None
    except (HydraException, OmegaConfBaseException) as e:
        msg = str(e).splitlines()[0]
        if "Could not override" in msg or "Key '" in msg:
            key = msg.split("'")[1] if "'" in msg else msg
            raise UserError(f"unknown setting '{key}' (add it with '+{key}=…' only if you mean to)") from None
        raise UserError(msg) from None


def load_spec(overrides: list[str]) -> RunSpec:
    from omegaconf import OmegaConf

    cfg = compose(overrides)
    return spec_from_dict(OmegaConf.to_container(cfg, resolve=True))


def resolve_path(path: str | None) -> Path | None:
    return Path(path).expanduser().resolve() if path else None
