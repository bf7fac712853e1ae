"""One-line, Python-flavoured renderings of JSON schemas, for prompts."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from counterpoint.tools._docstring import collapse

__all__ = ["py_literal", "render_signature", "render_type", "summary"]

_SCALARS = {
    "string": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "null": "None",
}
_MAX_DEPTH = 3


def py_literal(value: Any) -> str:
    """``value`` written as a Python literal (strings in double quotes, ``True``, ``None``)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        inner = ", ".join(py_literal(v) for v in value)
        return (
            f"({inner}{',' if len(value) == 1 else ''})"
            if isinstance(value, tuple)
            else f"[{inner}]"
        )
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{py_literal(k)}: {py_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _union(parts: list[str]) -> str:
    unique = list(dict.fromkeys(parts))
    return " | ".join(unique) if unique else "Any"


def render_type(schema: Any, depth: int = 0) -> str:
    """The type a JSON schema describes, in Python notation: ``list[int]``, ``str | None``,
    ``Literal["c", "f"]``, ``{city: str, days: int}`` for an object with known properties."""
    if not isinstance(schema, Mapping) or not schema:
        return "Any"
    if "const" in schema:
        return f"Literal[{py_literal(schema['const'])}]"
    if isinstance(schema.get("enum"), list):
        return "Literal[" + ", ".join(py_literal(v) for v in schema["enum"]) + "]"
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return ref.rsplit("/", 1)[-1]
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return _union([render_type(s, depth) for s in schema[key]])
    if isinstance(schema.get("allOf"), list) and len(schema["allOf"]) == 1:
        return render_type(schema["allOf"][0], depth)
    kind = schema.get("type")
    if isinstance(kind, list):
        return _union([render_type({**schema, "type": k}, depth) for k in kind])
    if kind in _SCALARS:
        return _SCALARS[kind]
    if kind == "array":
        if isinstance(schema.get("prefixItems"), list):
            return (
                "tuple[" + ", ".join(render_type(s, depth + 1) for s in schema["prefixItems"]) + "]"
            )
        items = schema.get("items")
        return f"list[{render_type(items, depth + 1)}]" if isinstance(items, Mapping) else "list"
    if kind == "object":
        props = schema.get("properties")
        if isinstance(props, Mapping) and props and depth < _MAX_DEPTH:
            fields = ", ".join(f"{k}: {render_type(v, depth + 1)}" for k, v in props.items())
            return "{" + fields + "}"
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping) and extra:
            return f"dict[str, {render_type(extra, depth + 1)}]"
        return "dict"
    return "Any"


def summary(description: str) -> str:
    """The first paragraph of a description, on one line."""
    return collapse(description.strip().split("\n\n", 1)[0]) if description else ""


def render_signature(name: str, parameters: Mapping[str, Any], description: str = "") -> str:
    """``name(city: str, unit: str = "c") - description`` (description's first paragraph).

    Optional parameters without a default are shown as ``= None``: passing ``None`` for them means
    leaving them out.
    """
    props = parameters.get("properties")
    required = set(parameters.get("required") or ())
    parts: list[str] = []
    if isinstance(props, Mapping):
        for pname, pschema in props.items():
            text = f"{pname}: {render_type(pschema)}"
            if pname not in required:
                has_default = isinstance(pschema, Mapping) and "default" in pschema
                text += f" = {py_literal(pschema['default']) if has_default else 'None'}"
            parts.append(text)
    head = f"{name}({', '.join(parts)})"
    text = summary(description)
    return f"{head} - {text}" if text else head
