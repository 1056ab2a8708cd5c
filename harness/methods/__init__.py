"""Method registry: ``method=<name>`` ↔ a module here. Variants are data, not subclasses:
``qlora`` and ``dora`` are the LoRA module with ``quantize``/``use_dora`` set in their YAML."""

from __future__ import annotations

import importlib

from harness.errors import unknown
from harness.methods.base import Method

_METHODS = {
    "full": "harness.methods.full",
    "lora": "harness.methods.lora",
    "qlora": "harness.methods.lora",
    "dora": "harness.methods.lora",
    "fsdp": "harness.methods.fsdp",
    "grpo": "harness.methods.grpo",
    "dpo": "harness.methods.dpo",
}


def method_names() -> list[str]:
    return sorted(_METHODS)


def get_method(name: str) -> Method:
    if name not in _METHODS:
        raise unknown("method", name, _METHODS)
    return importlib.import_module(_METHODS[name]).METHOD


__all__ = ["Method", "get_method", "method_names"]
