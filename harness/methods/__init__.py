"""The method table: ``method=<name>`` ↔ a module here, and what each method is, as data.

Variants are data, not subclasses: ``qlora`` and ``dora`` are the LoRA module with
``quantize``/``use_dora`` set in their YAML. Wrappers (fsdp, grpo, dpo) compose an inner method
(``method.inner`` = full | lora) and take its answer to "does it train the base weights".

This module imports nothing heavy (no torch): the config check, the record, the report and the
method list read it, and only ``get_method`` imports a method's code.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Mapping

from harness.errors import unknown

INNERS = ("full", "lora")  # what a wrapper method may train


@dataclass(frozen=True)
class MethodInfo:
    """What a method is. ``trains_base`` None: the inner method decides (a wrapper)."""

    module: str  # harness.methods.<module> holds METHOD
    summary: str  # one line for the report and the method list
    trains_base: bool | None  # base weights get gradients: 6N vs 4N training FLOPs/token
    needs_reference: bool = False  # the loss pulls towards a frozen reference policy: kl_from_base is scored
    generates: bool = False  # samples completions while training
    launches_job: bool = False  # training runs in its own multi-process job
    default_inner: str | None = None  # wrappers: what ``method.inner: null`` trains
    options: Mapping[str, Any] = field(default_factory=dict)  # accepted method.options → default


METHODS: dict[str, MethodInfo] = {
    "full": MethodInfo("full", "full fine-tuning: every weight trained", trains_base=True),
    "lora": MethodInfo("lora", "LoRA: low-rank adapters on a frozen base", trains_base=False),
    "qlora": MethodInfo("lora", "QLoRA: LoRA on a 4-bit NF4 base", trains_base=False),
    "dora": MethodInfo("lora", "DoRA: LoRA with magnitude and direction split", trains_base=False),
    "fsdp": MethodInfo(
        "fsdp", "FSDP2: the inner method sharded over world_size ranks", trains_base=None, launches_job=True,
        default_inner="full",
        # multi-node launch settings (one node needs none of them) and a job time limit
        options={"nnodes": 1, "node_rank": 0, "master_addr": "localhost", "master_port": 29500,
                 "rdzv_endpoint": None, "rdzv_id": None, "timeout_s": None},
    ),
    "grpo": MethodInfo(
        "grpo", "GRPO: RL on a verifiable task reward", trains_base=None, needs_reference=True, generates=True,
        default_inner="lora",
        options={"num_generations": 4, "max_completion_length": 16, "beta": 0.04, "temperature": 1.0},
    ),
    "dpo": MethodInfo(
        "dpo", "DPO: preference pairs, no reward model", trains_base=None, needs_reference=True,
        default_inner="lora",
        options={"beta": 0.1, "loss_type": "sigmoid"},  # beta: strength of the pull towards the reference
    ),
}


def method_names() -> list[str]:
    return sorted(METHODS)


def info(name: str) -> MethodInfo:
    if name not in METHODS:
        raise unknown("method", name, METHODS)
    return METHODS[name]


def get_method(name: str):
    return importlib.import_module(f"harness.methods.{info(name).module}").METHOD


__all__ = ["INNERS", "METHODS", "MethodInfo", "get_method", "info", "method_names"]
