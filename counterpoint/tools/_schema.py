"""JSON-schema plumbing: normalising BFCL / OpenAI parameter schemas, tidying pydantic's output,
and building the ``jsonschema`` validator for schema-declared tools.

:func:`normalise_schema` is the project's one BFCL -> JSON Schema translation: tools built with
``Tool.from_schema`` and the evals' tool specs (``counterpoint.evals.datasets.tool_spec``) both use
it, and the evals' checker reads BFCL type names through :func:`json_type`."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

import jsonschema
from jsonschema.protocols import Validator

__all__ = [
    "ArgumentValidator",
    "check_schema",
    "clean_pydantic_schema",
    "json_type",
    "normalise_schema",
]

Schema = dict[str, Any]

# Keys whose value is one sub-schema, a list of sub-schemas, or a mapping of name -> sub-schema.
_ONE = (
    "items",
    "additionalProperties",
    "not",
    "contains",
    "propertyNames",
    "if",
    "then",
    "else",
    "unevaluatedItems",
    "unevaluatedProperties",
)
_LIST = ("prefixItems", "anyOf", "oneOf", "allOf")
_MAP = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")

# BFCL and other function-calling datasets use Python, Java and JavaScript type names.
_TYPES: dict[str, str | None] = {
    "object": "object",
    "dict": "object",
    "map": "object",
    "hashmap": "object",
    "array": "array",
    "list": "array",
    "tuple": "array",
    "set": "array",
    "arraylist": "array",
    "string": "string",
    "str": "string",
    "char": "string",
    "character": "string",
    "integer": "integer",
    "int": "integer",
    "long": "integer",
    "short": "integer",
    "byte": "integer",
    "number": "number",
    "float": "number",
    "double": "number",
    "boolean": "boolean",
    "bool": "boolean",
    "null": "null",
    "none": "null",
    "any": None,
    "": None,
}


def _map_children(node: Schema, fn: Callable[[Any], Any]) -> Schema:
    """A shallow copy of ``node`` with ``fn`` applied to every direct sub-schema."""
    out = dict(node)
    for key in _ONE:
        if isinstance(out.get(key), Mapping):
            out[key] = fn(out[key])
    for key in _LIST:
        if isinstance(out.get(key), list):
            out[key] = [fn(s) for s in out[key]]
    for key in _MAP:
        if isinstance(out.get(key), Mapping):
            out[key] = {name: fn(s) for name, s in out[key].items()}
    return out


def json_type(value: Any) -> str | list[str] | None:
    """Map a (possibly BFCL / Java) type name, or a list of them, to JSON Schema; None = any.

    Names are compared without case or surrounding spaces: ``"dict"`` -> ``"object"``,
    ``"float"`` -> ``"number"``, ``"tuple"`` -> ``"array"``; ``"any"`` and unknown names -> None.
    """
    names = value if isinstance(value, list) else [value]
    mapped: list[str] = []
    for name in names:
        t = _TYPES.get(str(name).strip().lower()) if isinstance(name, str) else None
        if t is None:  # "any", an unknown name, or junk: no constraint at all
            return None
        if t not in mapped:
            mapped.append(t)
    if not mapped:
        return None
    return mapped[0] if len(mapped) == 1 else mapped


def normalise_schema(schema: Any) -> Schema:
    """Turn a BFCL-style or OpenAI-style parameter schema into standard JSON Schema.

    ``dict`` becomes ``object``, ``float`` becomes ``number``, ``tuple`` becomes ``array``,
    ``any`` (and unknown type names) lose their type constraint, a list-valued ``items`` becomes
    ``prefixItems``, and ``required`` names that are not properties are dropped. The input is
    not modified.
    """
    if not isinstance(schema, Mapping):
        return {}
    node: Schema = dict(schema)
    if "type" in node:
        t = json_type(node["type"])
        if t is None:
            del node["type"]
        else:
            node["type"] = t
    if isinstance(node.get("items"), list):
        node["prefixItems"] = node.pop("items")
    node = _map_children(node, normalise_schema)
    props = node.get("properties")
    if isinstance(props, Mapping) and isinstance(node.get("required"), list):
        node["required"] = [r for r in node["required"] if r in props]
    return node


def _drop_titles(node: Any) -> Any:
    if not isinstance(node, Mapping):
        return node
    out = _map_children(dict(node), _drop_titles)
    out.pop("title", None)
    return out


def clean_pydantic_schema(schema: Schema) -> Schema:
    """Make pydantic's JSON schema easier for a model to read.

    Inlines ``$ref`` to ``$defs`` (keeping ``$defs`` only for recursive types) and removes the
    generated ``title`` of every node (a property *named* ``title`` is kept).
    """
    defs: Mapping[str, Any] = schema.get("$defs", {})
    recursive: set[str] = set()

    def inline(node: Any, stack: tuple[str, ...]) -> Any:
        if not isinstance(node, Mapping):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref.removeprefix("#/$defs/")
            if name in stack or name not in defs:
                recursive.add(name)
                return dict(node)
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            return {**inline(defs[name], (*stack, name)), **siblings}
        return _map_children(dict(node), lambda child: inline(child, stack))

    body = inline({k: v for k, v in schema.items() if k != "$defs"}, ())
    if recursive:
        body["$defs"] = {name: inline(defs[name], (name,)) for name in defs}
    cleaned: Schema = _drop_titles(body)
    return cleaned


def _is_array(_checker: Any, instance: Any) -> bool:
    # Calls parsed from Python syntax carry tuples; they are arrays too.
    return isinstance(instance, list | tuple)


_type_checker = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("array", _is_array)

ArgumentValidator: type[Validator] = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft202012Validator, type_checker=_type_checker
)
"""Draft 2020-12 validator that also accepts tuples as arrays (ints pass as numbers already)."""


def check_schema(schema: Schema) -> str | None:
    """``None`` when ``schema`` is a valid JSON schema, else the reason it is not.

    Checking against the meta-schema takes milliseconds, and datasets repeat the same functions
    across cases, so verdicts are cached by the schema's JSON text.
    """
    try:
        key = json.dumps(schema, sort_keys=True)
    except (TypeError, ValueError):  # a default that is not JSON: check without the cache
        return _check_schema(schema)
    return _check_schema_json(key)


@functools.lru_cache(maxsize=4096)
def _check_schema_json(text: str) -> str | None:
    schema: Schema = json.loads(text)
    return _check_schema(schema)


def _check_schema(schema: Schema) -> str | None:
    try:
        ArgumentValidator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return exc.message
    return None
