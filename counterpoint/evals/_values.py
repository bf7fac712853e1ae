"""Type and value checks for one argument, with BFCL's semantics (private to the checker).

The checks return ``None`` when the value passes and otherwise a short reason naming the
parameter path (``conditions[1].field``), so the checker can report what went wrong.

The facts carried over from BFCL's AST checker:

- strings compare after :func:`standardize` (case, spaces and ``,./-_*^`` ignored; ``'`` = ``"``);
- an ``int`` is accepted where a ``float`` is expected (``bool`` is never a number);
- tuples are lists;
- a dict answer maps each key to its allowed values; a key may be left out when ``""`` is among
  them, and a key the answer does not name is wrong;
- an empty list passes for a list parameter that may be left out;
- where a possible answer itself contradicts the doc's type (BFCL spells variables and expressions
  as strings, and a few docs are wrong), a value that fails the doc's type is judged against that
  answer: exactly when the value's own kind differs from the doc's, as usual otherwise.

Where BFCL stops at one level (types of list items, dicts inside dicts or lists), these checks
recurse.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from counterpoint.evals._types import canonical_type

__all__ = [
    "argument_error",
    "concrete",
    "normalize",
    "short",
    "standardize",
    "type_error",
]

_IGNORED = re.compile(r"[ ,./\-_*^]")
_SHORT = 60


def standardize(text: str) -> str:
    """A string as BFCL compares it: lower case, no spaces or ``,./-_*^``, ``'`` read as ``"``."""
    return _IGNORED.sub("", text).lower().replace("'", '"')


def normalize(value: Any) -> Any:
    """``value`` with every tuple turned into a list, recursively."""
    if isinstance(value, list | tuple):
        return [normalize(v) for v in value]
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    return value


def short(value: Any) -> str:
    """``repr(value)``, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= _SHORT else text[: _SHORT - 3] + "..."


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "dict"
    if value is None:
        return "null"
    return type(value).__name__


def type_error(value: Any, schema: object, path: str) -> str | None:
    """Why ``value`` does not fit ``schema``'s type (recursively), or ``None``."""
    expected = canonical_type(schema)
    kind = _kind(value)
    if expected == "any":
        return None
    ok = kind == expected or (expected == "float" and kind == "integer")
    if not ok:
        return f"{path} should be {expected}, got {kind} {short(value)}"
    assert isinstance(schema, dict)  # canonical_type() is "any" for anything else
    if expected == "array" and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            reason = type_error(item, schema["items"], f"{path}[{i}]")
            if reason is not None:
                return reason
    elif expected == "dict" and isinstance(schema.get("properties"), dict):
        properties = schema["properties"]
        for key, item in value.items():
            if key in properties:
                reason = type_error(item, properties[key], f"{path}.{key}")
                if reason is not None:
                    return reason
    return None


def _alternatives(allowed: Any) -> list[Any]:
    return list(allowed) if isinstance(allowed, list) else [allowed]


def _mismatch(value: Any, answer: Any, path: str) -> str | None:
    """Why ``value`` differs from one possible ``answer``, or ``None`` when it matches."""
    if isinstance(answer, str):
        if isinstance(value, str) and standardize(value) == standardize(answer):
            return None
    elif isinstance(answer, bool) or isinstance(value, bool):
        if value is answer:
            return None
    elif isinstance(answer, int | float):
        if isinstance(value, int | float) and value == answer:
            return None
    elif isinstance(answer, list):
        if isinstance(value, list):
            if len(value) != len(answer):
                return f"{path} has {len(value)} items, expected {len(answer)}"
            for i, (item, expected) in enumerate(zip(value, answer, strict=True)):
                reason = _mismatch(item, expected, f"{path}[{i}]")
                if reason is not None:
                    return reason
            return None
    elif isinstance(answer, dict):
        if isinstance(value, dict):
            return _dict_mismatch(value, answer, path)
    elif value == answer:
        return None
    return f"{path} = {short(value)}, expected {short(answer)}"


def _dict_mismatch(value: dict[str, Any], answer: dict[str, Any], path: str) -> str | None:
    for key, item in value.items():
        if key not in answer:
            return f"{path} has unexpected key {key!r}"
        reason = _value_error(item, _alternatives(answer[key]), f"{path}.{key}")
        if reason is not None:
            return reason
    for key, allowed in answer.items():
        if key not in value and "" not in _alternatives(allowed):
            return f"{path} is missing key {key!r}"
    return None


def _value_error(value: Any, allowed: Sequence[Any], path: str) -> str | None:
    """Why ``value`` matches none of ``allowed``, or ``None``."""
    reasons = [_mismatch(value, answer, path) for answer in allowed]
    if any(reason is None for reason in reasons):
        return None
    candidates = [(a, r) for a, r in zip(allowed, reasons, strict=True) if a != ""]
    if not candidates:
        return f"{path} should be left out"
    if len(candidates) == 1 and isinstance(candidates[0][0], list | dict):
        return candidates[0][1]
    return f"{path} = {short(value)} is not one of {short([a for a, _ in candidates])}"


def _same(value: Any, answer: Any) -> bool:
    if isinstance(value, bool) or isinstance(answer, bool):
        return value is answer
    return bool(value == answer)


def concrete(answer: Any) -> Any:
    """A value that one possible ``answer`` describes: inside dict answers (each key mapped to its
    allowed values), the first allowed value of each key; keys whose first value is ``""`` (may
    be left out) are left out."""
    if isinstance(answer, dict):
        out: dict[str, Any] = {}
        for key, values in answer.items():
            options = _alternatives(values)
            if options and options[0] != "":
                out[key] = concrete(options[0])
        return out
    if isinstance(answer, list):
        return [concrete(item) for item in answer]
    return answer


def argument_error(name: str, value: Any, schema: object, allowed: Sequence[Any]) -> str | None:
    """Why argument ``name=value`` fails its parameter ``schema`` or the ``allowed`` values."""
    value = normalize(value)
    allowed = [normalize(a) for a in allowed]
    if value == [] and "" in allowed:
        return None  # BFCL: an empty list stands for a list parameter that may be left out
    reason = type_error(value, schema, name)
    if reason is None:
        return _value_error(value, allowed, name)
    # BFCL: where the possible answer itself contradicts the doc's type (it spells a variable or
    # an expression, or the doc is wrong), a value of the answer's type is judged by the answer:
    # exactly when the value is of another kind than the doc's (a variable name is
    # case-sensitive), as usual when only items inside it differ.
    shallow = {"type": schema.get("type")} if isinstance(schema, dict) else schema
    exact = type_error(value, shallow, name) is not None
    for answer in allowed:
        if answer == "" or type_error(concrete(answer), schema, name) is None:
            continue
        matches = _same(value, answer) if exact else _mismatch(value, answer, name) is None
        if matches:
            return None
    return reason
