"""The runtime type checker behind the run spec: a Hydra/YAML mapping checked field by field against
a frozen dataclass's annotations, each bad value a one-line ``UserError`` naming the setting and
what it accepts. Kept apart from the spec types (harness/spec.py) and Hydra composition (harness/config.py)."""

from __future__ import annotations

import types
import typing
from dataclasses import fields
from typing import Any, Mapping

from harness.errors import UserError, did_you_mean

_KINDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _type_ok(value: Any, hint: Any) -> bool:
    """Does ``value`` fit the annotation? Covers the shapes the specs use: scalars, X | None,
    Mapping[str, Any] and tuple[str, ...]. bool is not an int here (``r=true`` is a typo)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is Any:
        return True
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (Mapping, dict) or hint in (Mapping, dict):
        return isinstance(value, Mapping)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        return isinstance(value, (tuple, list)) and all(_type_ok(v, item) for v in value)
    return True  # a nested spec: built and checked by its own class


def _describe(hint: Any) -> str:
    """'an integer or null', 'a list of names', … for the message that names what is accepted."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        parts = [_describe(h) for h in typing.get_args(hint) if h is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in typing.get_args(hint) else "")
    if origin is tuple:
        return "a list (or a comma-separated string) of names"
    if origin in (Mapping, dict) or hint in (Mapping, dict):
        return "a mapping of key: value"
    return _KINDS.get(hint, str(hint))


def _check_types(cls, data: Mapping[str, Any], prefix: str) -> None:
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        if not _type_ok(value, hints[key]):
            name = f"{prefix}.{key}" if prefix != "config" else key
            raise UserError(f"{name} must be {_describe(hints[key])} (got {value!r})")


def build(cls, data: Mapping[str, Any], prefix: str):
    known = {f.name for f in fields(cls)}
    extra = set(data) - known
    if extra:
        key = sorted(extra)[0]
        name = f"{prefix}.{key}" if prefix != "config" else key
        raise UserError(f"unknown setting '{name}'{did_you_mean(key, known)}")
    missing = [f.name for f in fields(cls) if f.name not in data]
    if missing:  # every field is required: the YAML under sweeps/ sets each one
        name = f"{prefix}.{missing[0]}" if prefix != "config" else missing[0]
        raise UserError(f"missing setting '{name}' (every setting has its default in sweeps/*.yaml)")
    _check_types(cls, data, prefix)
    return cls(**data)


def tupled(value):
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(p for p in value.split(",") if p)
    return tuple(value) if isinstance(value, (list, tuple)) else value  # anything else: the type check names it
