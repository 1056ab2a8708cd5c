"""A validator for the JSON Schema subset ``harness/data/record.schema.json`` uses.

``jsonschema`` is not a dependency; these ~60 lines cover what the record schema needs:
type (one or a list), enum, const, required, properties, additionalProperties (bool or schema),
items, minimum, oneOf and local ``$ref`` (``#/$defs/…``). Anything else in a schema is ignored,
so keep the shipped schema to this subset (tests/test_record.py validates the schema's own
keywords against ``KEYWORDS``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

KEYWORDS = {"$schema", "$id", "$defs", "$ref", "title", "description", "type", "enum", "const", "required",
            "properties", "additionalProperties", "items", "minimum", "oneOf"}
_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def load(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def errors(instance: Any, schema: dict, root: dict | None = None, where: str = "$") -> list[str]:
    """Every violation as ``"$.config.seed: -3 is below the minimum 0"``; [] when valid."""
    root = root if root is not None else schema
    if "$ref" in schema:
        node: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        return errors(instance, node, root, where)
    out: list[str] = []
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_TYPES[k](instance) for k in kinds):
            return [f"{where}: {instance!r:.80} is not of type {' or '.join(kinds)}"]
    if "const" in schema and instance != schema["const"]:
        out.append(f"{where}: {instance!r:.80} is not {schema['const']!r}")
    if "enum" in schema and instance not in schema["enum"]:
        out.append(f"{where}: {instance!r:.80} is not one of {schema['enum']}")
    if "minimum" in schema and _TYPES["number"](instance) and instance < schema["minimum"]:
        out.append(f"{where}: {instance!r} is below the minimum {schema['minimum']}")
    if "oneOf" in schema:
        fits = [s for s in schema["oneOf"] if not errors(instance, s, root, where)]
        if len(fits) != 1:
            out.append(f"{where}: matches {len(fits)} of the {len(schema['oneOf'])} allowed shapes, not exactly one")
    if isinstance(instance, dict):
        for key in schema.get("required", ()):
            if key not in instance:
                out.append(f"{where}: missing required '{key}'")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, value in instance.items():
            if key in props:
                out += errors(value, props[key], root, f"{where}.{key}")
            elif extra is False:
                out.append(f"{where}: unexpected field '{key}'")
            elif isinstance(extra, dict):
                out += errors(value, extra, root, f"{where}.{key}")
    if isinstance(instance, list) and "items" in schema:
        for i, value in enumerate(instance):
            out += errors(value, schema["items"], root, f"{where}[{i}]")
    return out
