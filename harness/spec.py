"""The typed run spec: frozen dataclasses, one per config section, each checking its own values.

``harness/config.py`` composes the YAML and builds these from it, once, at the entry point; nothing
below it sees a ``DictConfig``. Defaults live in the YAML under ``sweeps/``; the dataclasses only
declare the fields and check their values. No Hydra, no torch: every layer of the harness reads them.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from advisor.facts import OPTIMIZERS, TARGET_PRESETS, default_lora_alpha, parse_kernels  # shared with the advisor's memory model
from harness.errors import UserError, unknown
from harness.method_table import METHODS  # the method table: data only, imports nothing heavy
from harness.model_names import short_name

DTYPES = ("auto", "fp32", "bf16", "fp16")
SAVE_MODES = ("adapter", "merged", "none")
BATCHING = ("by_length", "shuffled")  # how SFT batches are formed (harness.train.training_batches)
LOSSES = ("standard", "chunked")  # harness/loss.py (kept here too: config checks import no torch)
CHECKPOINTING = ("none", "full", "selective")  # harness/checkpointing.py
# transformers' SchedulerType values that need no extra scheduler arguments
SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str  # tiny | gguf | pretrained
    name_or_path: str | None  # set → plain from_pretrained(name_or_path)
    revision: str | None
    gguf_package: str | None
    gguf_file: str | None
    arch: Mapping[str, Any]  # tiny / cost-only: LlamaConfig kwargs
    scored: bool  # False for random-init cost-only models: score is meaningless
    trust_remote_code: bool

    def __post_init__(self):
        if self.name_or_path is None and self.source not in ("tiny", "gguf", "pretrained"):
            raise UserError(f"model.source '{self.source}' must be tiny, gguf or pretrained")
        if self.name_or_path is None and self.source == "pretrained":
            raise UserError("model.name_or_path is required for a pretrained model (a hub id or a local path)")

    @property
    def short_name(self) -> str:
        """``hub`` models by their path's last part (``Llama-3.2-1B``); others by name (harness/model_names.py)."""
        return short_name(self.name, self.name_or_path)


@dataclass(frozen=True)
class MethodSpec:
    name: str
    default_lr: float
    r: int | None  # adapter rank; None for methods without adapters
    alpha: float | None  # None → 2r (advisor.facts.default_lora_alpha)
    dropout: float
    targets: str
    quantize: str | None  # "4bit" → NF4 base (QLoRA / QDoRA)
    use_dora: bool
    inner: str | None  # fsdp / grpo: what is trained inside (full | lora)
    world_size: int
    options: Mapping[str, Any]  # method-specific settings
    init_from: str | None  # dpo / grpo (needs_reference): start from this run's saved adapter (harness/init_from.py)

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
        refines = [n for n, m in METHODS.items() if m.capabilities.needs_reference]
        if self.init_from is not None and self.name not in refines:
            raise UserError(f"method.init_from applies to methods that refine a trained policy ({', '.join(refines)}), "
                            f"not to {self.name}")

    @property
    def lora_alpha(self) -> float:
        return float(self.alpha if self.alpha is not None else default_lora_alpha(self.r or 0))


@dataclass(frozen=True)
class TaskSpec:
    name: str
    seed: int
    n_train: int
    n_validation: int
    n_test: int
    difficulty: str | None  # arithmetic
    train_file: str | None  # custom
    eval_file: str | None  # custom
    metric: str  # custom

    def __post_init__(self):
        _at_least("task.seed", self.seed, 0)
        for name in ("n_train", "n_validation", "n_test"):  # 0: unused (task=custom reads its files whole)
            _at_least(f"task.{name}", getattr(self, name), 0)


@dataclass(frozen=True)
class TrainSpec:
    max_steps: int  # > 0 wins over epochs; -1 → train for `epochs`
    epochs: float
    batch_size: int
    grad_accum: int
    lr: float | None  # None → the method's default_lr
    warmup_ratio: float
    scheduler: str
    weight_decay: float
    max_seq_len: int
    grad_checkpointing: bool
    dtype: str
    optimizer: str
    measure_skip_steps: int  # warm-up steps left out of throughput
    save: str
    log_every: int
    batching: str  # by_length | shuffled (harness.train.BATCHING)
    loss: str  # standard | chunked (harness/loss.py)
    checkpointing: str | None  # none | full | selective (harness/checkpointing.py); null: grad_checkpointing decides
    kernels: tuple[str, ...]  # fused kernels (harness/kernels.py): rms_norm, swiglu, rope, lora; liger / unsloth

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
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise UserError(f"train.weight_decay must be a number >= 0 (got {self.weight_decay!r})")
        _at_least("train.measure_skip_steps", self.measure_skip_steps, 0)
        _at_least("train.log_every", self.log_every, 1)
        for name, value, allowed in (("dtype", self.dtype, DTYPES), ("optimizer", self.optimizer, OPTIMIZERS),
                                     ("save", self.save, SAVE_MODES), ("scheduler", self.scheduler, SCHEDULERS),
                                     ("batching", self.batching, BATCHING), ("loss", self.loss, LOSSES),
                                     ("checkpointing", self.checkpointing or "none", CHECKPOINTING)):  # fmt: skip
            if value not in allowed:
                raise unknown(f"train.{name}", value, allowed)
        if self.checkpointing == "none" and self.grad_checkpointing:
            raise UserError("train.checkpointing=none contradicts train.grad_checkpointing=true; set one")
        try:
            object.__setattr__(self, "kernels", parse_kernels(self.kernels))  # canonical: liger → its three
        except ValueError as e:
            raise UserError(f"train.kernels: {e}") from None

    @property
    def checkpoint_mode(self) -> str:  # none | full | selective
        return self.checkpointing or ("full" if self.grad_checkpointing else "none")


@dataclass(frozen=True)
class EvalSpec:
    limit: int | None  # test examples scored (None → all)
    batch_size: int
    probes: tuple[str, ...]
    probe_limit: int | None
    enabled: bool

    def __post_init__(self):
        if self.limit is not None and self.limit < 1:
            raise UserError(f"eval.limit must be >= 1 or null (got {self.limit})")
        if self.batch_size < 1:
            raise UserError(f"eval.batch_size must be >= 1 (got {self.batch_size})")
        if self.probe_limit is not None:
            _at_least("eval.probe_limit", self.probe_limit, 1)


@dataclass(frozen=True)
class RunSpec:
    model: ModelSpec
    method: MethodSpec
    task: TaskSpec
    train: TrainSpec
    eval: EvalSpec
    seed: int
    repeat: int  # repetition index: same config measured again gets its own record
    results_dir: str
    budget_gb: float | None
    timeout_s: float | None

    def __post_init__(self):
        _at_least("seed", self.seed, 0)
        _at_least("repeat", self.repeat, 0)
        for name in ("budget_gb", "timeout_s"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise UserError(f"{name} must be a number > 0, or null for no limit (got {value!r})")
        if not self.results_dir.strip():
            raise UserError("results_dir must be a directory path (got an empty string)")

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
        for key, default in (("loss", "standard"), ("checkpointing", None), ("kernels", ())):  # added later: at their default,
            identity["train"].pop(key) if identity["train"][key] == default else None  # earlier ids stay
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:10]
        return f"{self.method.name}-{self.model.short_name}-{self.task.name}-{digest}"


def _at_least(key: str, value: int, low: int) -> None:
    if value < low:
        raise UserError(f"{key} must be an integer >= {low} (got {value!r})")
