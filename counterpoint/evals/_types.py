"""BFCL's parameter type names, and their translation to JSON Schema (private).

BFCL function docs use a JSON-Schema-like dialect with Python-flavoured type names: ``dict`` for
objects, ``float`` for numbers, ``tuple`` for arrays, ``any``. :func:`canonical_type` folds the
spellings onto one name per kind; :func:`to_json_schema` rewrites a doc's parameter schema into
standard JSON Schema for tool builders.
"""

from __future__ import annotations

from typing import Any, Literal

__all__ = ["CanonicalType", "canonical_type", "to_json_schema"]

CanonicalType = Literal["string", "integer", "float", "boolean", "array", "dict", "any"]

_CANONICAL: dict[str, CanonicalType] = {
    "string": "string",
    "str": "string",
    "char": "string",
    "integer": "integer",
    "int": "integer",
    "long": "integer",
    "short": "integer",
    "byte": "integer",
    "float": "float",
    "number": "float",
    "double": "float",
    "boolean": "boolean",
    "bool": "boolean",
    "array": "array",
    "list": "array",
    "tuple": "array",
    "dict": "dict",
    "object": "dict",
    "any": "any",
}

_JSON_SCHEMA: dict[CanonicalType, str | None] = {
    "string": "string",
    "integer": "integer",
    "float": "number",
    "boolean": "boolean",
    "array": "array",
    "dict": "object",
    "any": None,
}


def canonical_type(schema: object) -> CanonicalType:
    """The kind of value ``schema`` describes; ``any`` when it names no type this module knows."""
    if not isinstance(schema, dict):
        return "any"
    name = schema.get("type")
    return _CANONICAL.get(name, "any") if isinstance(name, str) else "any"


def to_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema copy of a BFCL parameter schema (recursively, leaving the input untouched).

    ``dict`` becomes ``object``, ``float`` becomes ``number``, ``tuple`` becomes ``array``, and
    ``any`` drops the type constraint. Other keys (description, enum, default, required...) are
    kept as they are.
    """
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type":
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {
                name: to_json_schema(sub) if isinstance(sub, dict) else sub
                for name, sub in value.items()
            }
        elif key == "items" and isinstance(value, dict):
            out[key] = to_json_schema(value)
        else:
            out[key] = value
    if "type" in schema:
        json_type = _JSON_SCHEMA[canonical_type(schema)]
        if json_type is not None:
            out = {"type": json_type, **out}
    return out
