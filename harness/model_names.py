"""Short model names for run ids, labels and tables: ``model=hub model.name_or_path=meta-llama/Llama-3.2-1B``
is ``Llama-3.2-1B``, a local ``/models/my-sft/`` is ``my-sft``; a shipped model keeps its option name.
A ``name_or_path`` is what ``from_pretrained`` loads whatever ``model.name`` says, so it names the model.

The record keeps the full ``name_or_path`` and ``revision`` (``config.model``, ``model_identity``);
only what people read is short. Imports nothing: the config layer and the report both use it.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")  # a run id is a file name


def short_name(name: str, name_or_path: str | None) -> str:
    """The last part of ``name_or_path`` when there is one (it is what loads), else ``name``."""
    if not name_or_path:
        return name
    last = str(name_or_path).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return _UNSAFE.sub("-", last).strip("-.") or name


def model_label(model: Mapping[str, Any] | None) -> str:
    """The short name of a record's ``config.model`` section."""
    model = model or {}
    return short_name(str(model.get("name") or "?"), model.get("name_or_path"))
