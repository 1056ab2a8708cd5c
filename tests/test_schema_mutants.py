"""harness/schema.py, the record validator: each keyword it claims to check, checked on the smallest
schema that uses it, with the message a user reads when a record is refused. Written against the
survivors of `scripts/mutation.sh schema` (docs/mutation.md)."""

from __future__ import annotations

import json

import pytest

from harness import schema


@pytest.mark.parametrize("kind, good, bad", [
    ("object", {}, []), ("array", [], {}), ("string", "x", 1), ("integer", 3, 3.5), ("integer", 0, True),
    ("number", 2.5, "2.5"), ("number", 2, False), ("boolean", False, 0), ("null", None, 0),
])
def test_each_type_accepts_its_values_and_names_the_type_it_wanted(kind, good, bad):
    assert schema.errors(good, {"type": kind}) == []
    assert schema.errors(bad, {"type": kind}) == [f"$: {bad!r} is not of type {kind}"]


def test_a_type_list_accepts_any_of_them_and_a_wrong_type_stops_further_checks():
    s = {"type": ["integer", "null"], "minimum": 0}
    assert schema.errors(None, s) == [] and schema.errors(4, s) == []
    assert schema.errors("x" * 200, s) == [f"$: {'x' * 200!r:.80} is not of type integer or null"]
    assert schema.errors(-1, s) == ["$: -1 is below the minimum 0"]


def test_const_enum_and_minimum_each_name_the_value_and_the_rule():
    assert schema.errors(2, {"const": 2}) == []
    assert schema.errors(3, {"const": 2}) == ["$: 3 is not 2"]
    assert schema.errors("ok", {"enum": ["ok", "oom"]}) == []
    assert schema.errors("done", {"enum": ["ok", "oom"]}) == ["$: 'done' is not one of ['ok', 'oom']"]
    assert schema.errors(0, {"minimum": 0}) == []  # the minimum is inclusive
    assert schema.errors(-0.5, {"minimum": 0}) == ["$: -0.5 is below the minimum 0"]
    assert schema.errors("-1", {"minimum": 0}) == []  # not a number: the type keyword's job
    assert schema.errors(True, {"minimum": 2}) == []  # bool is not a number here
    # several rules broken at once: every one is reported
    assert len(schema.errors(-3, {"const": 1, "enum": [1], "minimum": 0})) == 3


def test_one_of_needs_exactly_one_matching_shape():
    s = {"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 10}]}
    assert schema.errors(3, s) == []  # integer only
    assert schema.errors(10.5, s) == []  # number ≥ 10 only
    assert schema.errors(12, s) == ["$: matches 2 of the 2 allowed shapes, not exactly one"]
    assert schema.errors(2.5, s) == ["$: matches 0 of the 2 allowed shapes, not exactly one"]


def test_objects_report_missing_unexpected_and_nested_fields_with_their_path():
    s = {"type": "object", "required": ["a", "b"], "additionalProperties": False,
         "properties": {"a": {"type": "object", "properties": {"seed": {"type": "integer", "minimum": 0}}},
                        "b": {"type": "string"}}}
    assert schema.errors({"a": {"seed": 1}, "b": "x"}, s) == []
    assert schema.errors({"a": {"seed": -3}, "c": 1}, s) == [
        "$: missing required 'b'", "$.a.seed: -3 is below the minimum 0", "$: unexpected field 'c'"]
    open_ = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert schema.errors({"a": "x", "extra": 1}, open_) == []  # additionalProperties defaults to allowed
    typed = {"type": "object", "additionalProperties": {"type": "number"}}
    assert schema.errors({"x": 1.0, "y": "fast"}, typed) == ["$.y: 'fast' is not of type number"]
    assert schema.errors([1], {"required": ["a"], "properties": {"a": {"type": "string"}}}) == []  # not an object


def test_array_items_are_checked_with_their_index_and_refs_resolve_within_the_root():
    root = {"$defs": {"run": {"type": "object", "required": ["run_id"]}, "pos": {"type": "integer", "minimum": 1}},
            "type": "array", "items": {"$ref": "#/$defs/run"}}
    assert schema.errors([{"run_id": "a"}], root) == []
    assert schema.errors([{"run_id": "a"}, {}], root) == ["$[1]: missing required 'run_id'"]
    assert schema.errors([0, 2], {"items": {"type": "integer", "minimum": 1}}) == ["$[0]: 0 is below the minimum 1"]
    assert schema.errors({"n": 0}, {"properties": {"n": {"$ref": "#/$defs/pos"}}}, root) == ["$.n: 0 is below the minimum 1"]


def test_load_reads_a_schema_file(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"type": "integer"}))
    assert schema.load(path) == {"type": "integer"} and schema.load(str(path)) == {"type": "integer"}


def test_a_ref_inside_a_referenced_definition_or_a_one_of_resolves_against_the_root():
    root = {"$defs": {"pos": {"type": "integer", "minimum": 1}, "run": {"properties": {"n": {"$ref": "#/$defs/pos"}}},
                      "maybe": {"oneOf": [{"type": "null"}, {"$ref": "#/$defs/pos"}]}},
            "properties": {"run": {"$ref": "#/$defs/run"}, "k": {"$ref": "#/$defs/maybe"}}}
    assert schema.errors({"run": {"n": 2}, "k": None}, root) == []
    assert schema.errors({"run": {"n": 0}}, root) == ["$.run.n: 0 is below the minimum 1"]
    assert schema.errors({"k": 3}, root) == []
    assert schema.errors({"k": 0}, root) == ["$.k: matches 0 of the 2 allowed shapes, not exactly one"]
