"""The methods' code: ``method=<name>`` ↔ a module here (which one: the method table,
``harness/method_table.py``). ``get_method`` is the one place that imports a method's code.

Variants are data, not subclasses: ``qlora`` and ``dora`` are the LoRA module with
``quantize``/``use_dora`` set in their YAML. Wrappers (fsdp, grpo, dpo) compose an inner method
(``method.inner`` = full | lora); ``get_method`` builds them around it.
"""

from __future__ import annotations

import importlib

from harness.method_table import info, inner_of


def get_method(name: str, inner: str | None = None):
    """The method object for ``method.name`` (and, for a wrapper, ``method.inner``): a wrapper is
    built around its inner method, so no two runs share state through a module-level object."""
    module = importlib.import_module(f"harness.methods.{info(name).module}")
    inner = inner_of(name, inner)
    return module.METHOD if inner is None else module.WRAPPER(inner=get_method(inner))


__all__ = ["get_method"]
