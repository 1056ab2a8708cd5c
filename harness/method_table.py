"""The method table: ``method=<name>`` ↔ a module in ``harness/methods/``, and what each method is, as data.

Variants are data, not subclasses: ``qlora`` and ``dora`` are the LoRA module with
``quantize``/``use_dora`` set in their YAML. Wrappers (fsdp, grpo, dpo) compose an inner method
(``method.inner`` = full | lora) and take its answer to "does it train the base weights".

This module imports nothing heavy (no torch) and nothing of the harness but its errors: the spec
types, the config check, the record, the report and the method list read it, and only
``harness.methods.get_method`` imports a method's code. It sits below the spec types
(tests/test_imports.py, LAYERS) so that they can read it while the methods' code imports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from advisor.facts import SIZED_AS
from harness.errors import UserError, did_you_mean, unknown

INNERS = ("full", "lora")  # what a wrapper method may train


@dataclass(frozen=True)
class Capabilities:
    """What a method does, as data: run.py reads these, never a method's name."""

    trains_base: bool | None  # base weights get gradients (6N vs 4N training FLOPs/token); None: the inner method's
    needs_reference: bool = False  # the loss pulls towards a frozen reference policy: kl_from_base is scored
    generates: bool = False  # samples completions while training
    launches_job: bool = False  # training runs in its own multi-process job
    sequences_per_example: int = 1  # sequences trained on per example (DPO: a chosen and a rejected one)


@dataclass(frozen=True)
class MethodInfo:
    module: str  # harness.methods.<module> holds METHOD (or, for a wrapper, WRAPPER)
    summary: str  # one line for the method list (``harness --help``)
    capabilities: Capabilities
    default_inner: str | None = None  # a wrapper: what ``method.inner: null`` trains; None: not a wrapper
    options: Mapping[str, Any] = field(default_factory=dict)  # accepted method.options → default
    sized_as: str | None = None  # the advisor's memory model sizes it as this method (same weights, states, adapters)


METHODS: dict[str, MethodInfo] = {
    "full": MethodInfo("full", "full fine-tuning: every weight trained", Capabilities(trains_base=True)),
    "lora": MethodInfo("lora", "LoRA: low-rank adapters on a frozen base", Capabilities(trains_base=False)),
    "qlora": MethodInfo("lora", "QLoRA: LoRA on a 4-bit NF4 base", Capabilities(trains_base=False)),
    "dora": MethodInfo("lora", "DoRA: LoRA with magnitude and direction split", Capabilities(trains_base=False)),
    "rslora": MethodInfo("rslora", "rsLoRA: LoRA with the update scaled by alpha/√r", Capabilities(trains_base=False),
                         sized_as=SIZED_AS["rslora"]),  # only the scale differs: same memory (advisor/facts.py)
    "fsdp": MethodInfo(
        "fsdp", "FSDP2: the inner method sharded over world_size ranks",
        Capabilities(trains_base=None, launches_job=True), default_inner="full",
        # multi-node launch settings (one node needs none of them) and a job time limit
        options={"nnodes": 1, "node_rank": 0, "master_addr": "localhost", "master_port": 29500,
                 "rdzv_endpoint": None, "rdzv_id": None, "timeout_s": None},
    ),
    "grpo": MethodInfo(
        "grpo", "GRPO: RL on a verifiable task reward",
        Capabilities(trains_base=None, needs_reference=True, generates=True), default_inner="lora",
        options={"num_generations": 4, "max_completion_length": 16, "beta": 0.04, "temperature": 1.0},
    ),
    "dpo": MethodInfo(
        "dpo", "DPO: preference pairs, no reward model",
        Capabilities(trains_base=None, needs_reference=True, sequences_per_example=2), default_inner="lora",
        options={"beta": 0.1, "loss_type": "sigmoid"},  # beta: strength of the pull towards the reference
    ),
}


def method_names() -> list[str]:
    return sorted(METHODS)


def info(name: str) -> MethodInfo:
    if name not in METHODS:
        raise unknown("method", name, METHODS)
    return METHODS[name]


def options(name: str, given: Mapping[str, Any]) -> dict:
    """``method.options`` merged over the table's defaults; a key the method does not read is a
    one-line error for every method (a typo must not be a silent no-op)."""
    accepted = info(name).options
    for key in given:
        if key not in accepted:
            raise UserError(f"unknown {name} option 'method.options.{key}'{did_you_mean(key, accepted)}; "
                            f"accepted: {', '.join(accepted) or 'none (method.options must be {})'}")
    return {**accepted, **given}


def inner_of(name: str, inner: str | None) -> str | None:
    """What a wrapper trains (``method.inner``, else its default); None for a method that is no wrapper."""
    entry = info(name)
    if entry.default_inner is None:
        if inner is not None:
            raise UserError(f"method.inner='{inner}' applies to the wrapper methods "
                            f"({', '.join(n for n, i in METHODS.items() if i.default_inner)}), not to {name}")
        return None
    inner = inner or entry.default_inner
    if inner not in INNERS:
        raise UserError(f"method.inner '{inner}' for {name} must be one of: {', '.join(INNERS)}")
    return inner


def capabilities(name: str, inner: str | None = None) -> Capabilities:
    """What ``method.name`` (with ``method.inner``) does, from the table alone (no method code is
    imported): a wrapper trains the base exactly when its inner method does."""
    caps = info(name).capabilities
    inner = inner_of(name, inner)
    if inner is None:
        return caps
    return replace(caps, trains_base=info(inner).capabilities.trains_base)


__all__ = ["INNERS", "METHODS", "Capabilities", "MethodInfo", "capabilities", "info", "inner_of", "method_names", "options"]
