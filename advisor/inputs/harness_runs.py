"""The harness's run records, read as evidence: JSON only (no pandas), never trusting a file's shape.

A results directory holds one ``<run_id>.json`` per run, possibly in subfolders (``runs/``);
``artifacts/`` and ``_cache/`` folders, hidden files and ``.tmp`` files are not records. Files
that are unreadable or are some other JSON are skipped with one summarising warning.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from advisor.errors import AdvisorError
from advisor.facts import SIZED_AS
from advisor.inputs.arch import Arch

STATUSES = ("ok", "oom", "error", "timeout")
SKIP_DIRS = {"artifacts", "_cache", "__pycache__"}
# Batches are padded to their longest example and the peak comes from the longest batch, but a
# record keeps only the mean non-padding length. The longest of n examples seen grows like the log
# of n: for the tickets task (SmolLM2 chat template: mean 90 tokens, cv 0.11, max 129 over 600),
# simulated batches of 8 give a longest padded batch of mean × (1 + 0.072·ln n) within ±3% for
# n = 24 … 600 examples seen. Capped at train.max_seq_len; a record that states
# `max_batch_seq_len` is used as is.
PEAK_LEN_SPREAD = 0.072


@dataclass(frozen=True)
class Run:
    path: str
    run_id: str
    status: str
    method: str  # effective: full | lora | qlora | dora | fsdp | grpo | dpo
    inner: str | None
    model_name: str
    arch: Arch | None
    rank: int | None
    targets: str
    dropout: float
    batch_size: int
    grad_accum: int
    max_seq_len: int
    grad_checkpointing: bool
    dtype: str
    optimizer: str
    world_size: int
    task: str
    device: str
    device_name: str
    budget_gb: float | None
    metrics: dict = field(default_factory=dict, compare=False)
    options: dict = field(default_factory=dict, compare=False)  # method.options (GRPO: num_generations, max_completion_length, beta)
    hardware: dict = field(default_factory=dict, compare=False)  # the record's hardware block (torch_threads, device_memory_gb)
    sweep: str | None = None  # record["sweep"]["name"]: lr_rank / data_scaling records feed advisor.decide.evidence
    lr: float | None = None  # config.train.lr, else the method's default_lr
    n_train: int | None = None  # config.task.n_train: training examples (data_scaling's x axis)
    loss: str = "standard"  # config.train.loss: standard | chunked (harness/loss.py)
    checkpointing: str = "none"  # none | full | selective: config.train.checkpointing, else grad_checkpointing
    kernels: tuple = ()  # config.train.kernels: fused kernels the run patched in (harness/kernels.py)

    @property
    def memory_kind(self) -> str | None:
        return self.metrics.get("memory_kind")

    @property
    def peak_memory_gb(self) -> float | None:
        return number(self.metrics.get("peak_memory_gb"))

    @property
    def tokens_per_s(self) -> float | None:
        return number(self.metrics.get("tokens_per_s"))

    @property
    def task_gain(self) -> float | None:
        s, b = number(self.metrics.get("task_score")), number(self.metrics.get("task_score_base"))
        return None if s is None or b is None else s - b

    @property
    def peak_seq_len(self) -> tuple[int, str]:
        """Padded length of the longest batch, and how it was obtained."""
        stated = number(self.metrics.get("max_batch_seq_len"))
        if stated:
            return int(stated), "recorded"
        mean = number(self.metrics.get("mean_seq_len"))
        steps = number(self.metrics.get("steps"))
        if mean and steps:
            seen = max(1.0, steps * self.batch_size * self.grad_accum)
            ratio = 1 + PEAK_LEN_SPREAD * math.log(seen)
            return min(self.max_seq_len, math.ceil(ratio * mean)), f"longest of {seen:.0f} examples ≈ {ratio:.2f}× mean {mean:.0f}"
        return self.max_seq_len, "max_seq_len (no mean length recorded)"


def number(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def run_from_record(d: dict, path: str = "") -> Run:
    """A Run from a parsed record; KeyError/TypeError/ValueError when it is not shaped like one."""
    cfg = d["config"]
    model, method, train = cfg["model"], cfg["method"], cfg["train"]
    name = method["name"]
    effective = SIZED_AS.get(name, name)
    if name == "lora" and method.get("quantize") == "4bit":
        effective = "qlora"
    if name == "lora" and method.get("use_dora"):
        effective = "dora"
    inner = method.get("inner")  # fsdp/grpo/dpo wrap an inner method; its 4-bit and DoRA flags are the wrapper's
    if inner == "lora" and method.get("quantize") == "4bit":
        inner = "qlora"
    elif inner == "lora" and method.get("use_dora"):
        inner = "dora"
    arch_d = d.get("model_arch") or model.get("arch") or {}  # schema 2: measured arch apart; 1: in config
    arch = Arch.from_hf(arch_d, where=path) if arch_d.get("num_hidden_layers") else None
    hw = d.get("hardware") or {}
    return Run(
        path=path, run_id=str(d["run_id"]), status=d["status"], method=effective, inner=inner,
        model_name=str(model.get("name")), arch=arch, rank=method.get("r"), targets=str(method.get("targets") or "all-linear"),
        dropout=float(method.get("dropout") or 0.0), batch_size=int(train["batch_size"]), grad_accum=int(train.get("grad_accum") or 1),
        max_seq_len=int(train["max_seq_len"]), grad_checkpointing=bool(train.get("grad_checkpointing")),
        dtype=str(train.get("dtype") or "auto"), optimizer=str(train.get("optimizer") or "adamw"),
        world_size=int(method.get("world_size") or 1), task=str((cfg.get("task") or {}).get("name")),
        device=str(hw.get("device") or "?"), device_name=str(hw.get("device_name") or ""), budget_gb=number(cfg.get("budget_gb")),
        metrics=d.get("metrics") or {}, options=dict(method.get("options") or {}), hardware=dict(hw),
        sweep=_sweep_name(d.get("sweep")),
        lr=number(train.get("lr")) or number(method.get("default_lr")), n_train=_int_or_none((cfg.get("task") or {}).get("n_train")),
        loss=str(train.get("loss") or "standard"), kernels=tuple(train.get("kernels") or ()),
        checkpointing=str(train.get("checkpointing") or ("full" if train.get("grad_checkpointing") else "none")),
    )  # fmt: skip


def _sweep_name(v) -> str | None:
    return str(v["name"]) if isinstance(v, dict) and v.get("name") else None


def _int_or_none(v) -> int | None:
    return int(v) if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def load_runs(results_dir: str | Path, *, must_exist: bool = False, flag: str = "--results") -> tuple[list[Run], list[str]]:
    """Every run record under ``results_dir`` (recursively), and warnings about what was skipped."""
    root = Path(results_dir)
    if not root.is_dir():
        if must_exist:
            raise AdvisorError(f"{flag}: '{results_dir}' is not a directory (a harness results dir, e.g. results/)")
        return [], []
    runs: list[Run] = []
    unreadable: list[str] = []
    foreign: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for fn in sorted(filenames):
            if not fn.endswith(".json") or fn.startswith("."):
                continue  # .tmp files from atomic writes end in .tmp, not .json
            path = Path(dirpath) / fn
            rel = str(path.relative_to(root))
            try:
                d = json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                unreadable.append(rel)
                continue
            if not isinstance(d, dict) or "run_id" not in d or d.get("status") not in STATUSES:
                foreign.append(rel)
                continue
            try:
                runs.append(run_from_record(d, rel))
            except (KeyError, TypeError, ValueError, AttributeError, AdvisorError):
                foreign.append(rel)
    warnings = []
    for what, files in (("unreadable", unreadable), ("not run records", foreign)):
        if files:
            more = f" and {len(files) - 3} more" if len(files) > 3 else ""
            warnings.append(f"{results_dir}: skipped {len(files)} file(s) {what}: {', '.join(files[:3])}{more}")
    return runs, warnings


def same_model(run: Run, arch: Arch) -> bool:
    return run.arch is not None and (run.arch.layers, run.arch.hidden, run.arch.intermediate, run.arch.vocab) == (
        arch.layers, arch.hidden, arch.intermediate, arch.vocab)  # fmt: skip
