"""The private schema helpers: BFCL normalisation, pydantic clean-up, Python-style rendering."""

from __future__ import annotations

from typing import Any

import pytest

from counterpoint.tools._render import py_literal, render_signature, render_type
from counterpoint.tools._schema import (
    check_schema,
    clean_pydantic_schema,
    json_type,
    normalise_schema,
)


@pytest.mark.parametrize(
    ("bfcl", "expected"),
    [
        ({"type": "dict"}, {"type": "object"}),
        ({"type": "HashMap"}, {"type": "object"}),
        ({"type": "float"}, {"type": "number"}),
        ({"type": "double"}, {"type": "number"}),
        ({"type": "long"}, {"type": "integer"}),
        ({"type": "String"}, {"type": "string"}),
        ({"type": "Boolean"}, {"type": "boolean"}),
        ({"type": "ArrayList"}, {"type": "array"}),
        (
            {"type": "tuple", "items": {"type": "float"}},
            {"type": "array", "items": {"type": "number"}},
        ),
        ({"type": "any", "description": "x"}, {"description": "x"}),
        ({"type": "mystery"}, {}),
        ({"type": ["float", "null"]}, {"type": ["number", "null"]}),
        ({"type": ["string", "any"]}, {}),
        (
            {"type": "array", "items": [{"type": "float"}, {"type": "str"}]},
            {"type": "array", "prefixItems": [{"type": "number"}, {"type": "string"}]},
        ),
        (
            {"anyOf": [{"type": "dict"}, {"type": "integer"}]},
            {"anyOf": [{"type": "object"}, {"type": "integer"}]},
        ),
    ],
)
def test_normalise_types(bfcl: dict[str, Any], expected: dict[str, Any]) -> None:
    assert normalise_schema(bfcl) == expected
    assert check_schema(normalise_schema(bfcl)) is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("dict", "object"),
        (" Float ", "number"),
        ("tuple", "array"),
        ("HashMap", "object"),
        ("any", None),
        ("mystery", None),
        (3, None),
        (["integer", "null"], ["integer", "null"]),
        (["int", "long"], "integer"),
    ],
)
def test_json_type_maps_one_type_name(name: object, expected: object) -> None:
    assert json_type(name) == expected


def test_normalise_nested_and_required() -> None:
    schema = normalise_schema(
        {
            "type": "dict",
            "properties": {
                "type": {"type": "string"},  # a property named "type" is not a type keyword
                "inner": {
                    "type": "dict",
                    "properties": {"x": {"type": "float"}},
                    "required": ["x", "y"],
                },
            },
            "required": ["type", "nope"],
        }
    )
    assert schema == {
        "type": "object",
        "properties": {
            "type": {"type": "string"},
            "inner": {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]},
        },
        "required": ["type"],
    }


def test_check_schema_reports_problems() -> None:
    assert check_schema({"type": "object", "required": "city"}) is not None
    assert check_schema({"type": "object", "properties": {"a": {"minimum": "x"}}}) is not None


def test_clean_pydantic_schema_inlines_refs_with_sibling_keys() -> None:
    raw = {
        "$defs": {
            "Point": {"title": "Point", "type": "object", "properties": {"x": {"title": "X"}}}
        },
        "title": "Args",
        "type": "object",
        "properties": {"p": {"$ref": "#/$defs/Point", "description": "A point."}},
    }
    assert clean_pydantic_schema(raw) == {
        "type": "object",
        "properties": {"p": {"type": "object", "properties": {"x": {}}, "description": "A point."}},
    }


def test_py_literal() -> None:
    assert py_literal('a"b') == '"a\\"b"'
    assert py_literal("é") == '"é"'
    assert py_literal(True) == "True" and py_literal(None) == "None"
    assert py_literal([1, "x", None]) == '[1, "x", None]'
    assert py_literal((1,)) == "(1,)"
    assert py_literal({"k": False}) == '{"k": False}'


@pytest.mark.parametrize(
    ("schema", "rendered"),
    [
        ({}, "Any"),
        ({"type": "string"}, "str"),
        ({"type": ["string", "null"]}, "str | None"),
        ({"anyOf": [{"type": "integer"}, {"type": "null"}]}, "int | None"),
        ({"enum": ["a", 1]}, 'Literal["a", 1]'),
        ({"const": "x"}, 'Literal["x"]'),
        ({"type": "array"}, "list"),
        ({"type": "array", "items": {"type": "boolean"}}, "list[bool]"),
        ({"type": "object"}, "dict"),
        ({"type": "object", "additionalProperties": {"type": "number"}}, "dict[str, float]"),
        ({"type": "object", "properties": {"a": {"type": "integer"}}}, "{a: int}"),
        ({"$ref": "#/$defs/Node"}, "Node"),
    ],
)
def test_render_type(schema: dict[str, Any], rendered: str) -> None:
    assert render_type(schema) == rendered


def test_render_signature_uses_first_paragraph_on_one_line() -> None:
    params = {
        "type": "object",
        "properties": {"q": {"type": "string"}, "n": {"type": "integer", "default": 5}},
        "required": ["q"],
    }
    assert render_signature("search", params, "Search\nthe web.\n\nMore text.") == (
        "search(q: str, n: int = 5) - Search the web."
    )
    assert render_signature("search", params) == "search(q: str, n: int = 5)"
