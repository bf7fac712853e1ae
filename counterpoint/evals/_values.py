"""Type and value checks for one argument, with BFCL's semantics (private to the checker).

The checks return ``None`` when the value passes and otherwise a short reason naming the
parameter path (``conditions[1].field``), so the checker can report what went wrong.

The rules are those of BFCL's own AST checker for Python (``type_checker``, ``string_checker``,
``list_checker``, ``dict_checker`` and ``list_dict_checker`` in
``bfcl_eval/eval_checker/ast_eval/ast_checker.py``):

Types (the doc's type names read through :func:`~counterpoint.tools._schema.json_type`):

- a value has the doc's type exactly (``bool`` is never a number), except that an ``int`` passes
  for a ``float`` parameter; ``any`` is read as a string, as BFCL reads it;
- the items of an array are checked one level down, each exactly (an ``int`` item does *not* pass
  for a ``float`` item: BFCL's ``type_error:nested``), or of the type of the first item of the
  possible answer they are checked against. They pass when they fit one possible answer, or when
  one possible answer is not a list (``""``: the parameter may be left out). Nothing deeper is
  type-checked: not the items of nested arrays, not the values inside dicts;
- a variable: where the first possible answer that is not ``""`` has another type than the doc's
  (BFCL spells variables and expressions as strings, and a few docs are wrong), a value of that
  answer's type passes the type check, and the value must then equal an answer exactly.

Values:

- strings compare after :func:`standardize` (case, spaces and ``,./-_*^`` ignored; ``'`` = ``"``);
- a list compares item by item, in order, its string items standardized and its other items as
  they are (nested lists and dicts whole); ``""`` among a list parameter's answers stands for
  ``[]``, so an empty list passes for a list parameter that may be left out;
- a dict answer maps each key to its allowed values; a key the answer does not name is wrong, a
  key may be left out when ``""`` is among its values, string values are standardized and other
  values compared as they are; a list of dicts (an array whose items are dicts) compares its dicts
  in order, each against the answer's dict at the same place;
- anything else compares with ``==`` (so ``2`` equals ``2.0``).

Kept different on purpose (and listed in the checker's docs): tuples are lists at every level;
a ``bool`` never equals a number, inside lists and dicts too (BFCL's ``True in [1]`` is true); a
dict inside a dict is matched key by key like the outer one (BFCL compares it whole, which never
matches its own answer format).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from typing import Any, Literal

from counterpoint.tools._schema import json_type

__all__ = [
    "Kind",
    "argument_error",
    "canonical_type",
    "concrete",
    "normalize",
    "short",
    "standardize",
]

Kind = Literal["string", "integer", "float", "boolean", "array", "dict"]
"""The kinds of value BFCL's Python checker tells apart."""

_KINDS: dict[str, Kind] = {
    "string": "string",
    "integer": "integer",
    "number": "float",
    "boolean": "boolean",
    "array": "array",
    "object": "dict",
}
_IGNORED = re.compile(r"[ ,./\-_*^]")
_SHORT = 60


def canonical_type(schema: object) -> Kind | None:
    """The kind of value a BFCL parameter schema asks for; ``None`` when it names none.

    ``any`` is a string, as BFCL's checker reads it (it maps ``any`` to ``str``).
    """
    if not isinstance(schema, dict):
        return None
    name = schema.get("type")
    if not isinstance(name, str):
        return None
    if name.strip().lower() == "any":
        return "string"
    json_name = json_type(name)
    return _KINDS.get(json_name) if isinstance(json_name, str) else None


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


def _answer_kind(answers: Sequence[Any]) -> str | None:
    """The kind of the first answer that is not ``""`` (BFCL's ``get_possible_answer_type``)."""
    for answer in answers:
        if not (isinstance(answer, str) and answer == ""):
            return _kind(answer)
    return None


def _alternatives(allowed: Any) -> list[Any]:
    return list(allowed) if isinstance(allowed, list) else [allowed]


def _equal(value: Any, answer: Any) -> bool:
    """``value == answer`` the way Python compares them, except that a bool equals only a bool."""
    if isinstance(value, bool) or isinstance(answer, bool):
        return isinstance(value, bool) and isinstance(answer, bool) and value == answer
    if isinstance(value, list) or isinstance(answer, list):
        return (
            isinstance(value, list)
            and isinstance(answer, list)
            and len(value) == len(answer)
            and all(_equal(v, a) for v, a in zip(value, answer, strict=True))
        )
    if isinstance(value, dict) or isinstance(answer, dict):
        return (
            isinstance(value, dict)
            and isinstance(answer, dict)
            and value.keys() == answer.keys()
            and all(_equal(value[k], answer[k]) for k in value)
        )
    return bool(value == answer)


def _difference(value: Any, answer: Any, path: str) -> str:
    """Where ``value`` differs from ``answer`` (which it does not equal), for the reason."""
    if isinstance(value, list) and isinstance(answer, list):
        if len(value) != len(answer):
            return f"{path} has {len(value)} items, expected {len(answer)}"
        for i, (v, a) in enumerate(zip(value, answer, strict=True)):
            if not _equal(v, a):
                return _difference(v, a, f"{path}[{i}]")
    elif isinstance(value, dict) and isinstance(answer, dict):
        for key in value:
            if key not in answer:
                return f"{path} has unexpected key {key!r}"
            if not _equal(value[key], answer[key]):
                return _difference(value[key], answer[key], f"{path}.{key}")
        for key in answer:
            if key not in value:
                return f"{path} is missing key {key!r}"
    return f"{path} = {short(value)}, expected {short(answer)}"


def _not_one_of(path: str, value: Any, answers: Sequence[Any]) -> str:
    return f"{path} = {short(value)} is not one of {short(list(answers))}"


def _choose(path: str, value: Any, answers: Sequence[Any], reasons: Sequence[str | None]) -> str:
    """The reason to give when ``value`` matched none of ``answers`` (each with its reason)."""
    candidates = [(a, r) for a, r in zip(answers, reasons, strict=True) if a != ""]
    if not candidates:
        return f"{path} should be left out"
    (answer, reason), *others = candidates
    if not others and isinstance(answer, list | dict) and reason is not None:
        return reason
    return _not_one_of(path, value, [a for a, _ in candidates])


# -- types --------------------------------------------------------------------------------------


def _items_error(value: list[Any], schema: object, allowed: Sequence[Any], path: str) -> str | None:
    """BFCL's nested type check: why the items of ``value`` fit no possible answer, or ``None``."""
    items = schema.get("items") if isinstance(schema, dict) else None
    expected = canonical_type(items)
    if expected is None:
        return None
    first: str | None = None
    for answer in allowed:
        if not isinstance(answer, list):
            return None  # "" (may be left out) or a variable: the items are not constrained
        own = _answer_kind(answer)
        for i, item in enumerate(value):
            kind = _kind(item)
            if kind != expected and kind != own:
                first = first or f"{path}[{i}] should be {expected}, got {kind} {short(item)}"
                break
        else:
            return None
    return first or f"{path} has no possible answer to check its items against"


# -- values -------------------------------------------------------------------------------------


def _entry_matches(value: Any, answer: Any) -> bool:
    """One value inside a dict against one of its allowed values (BFCL's ``dict_checker``)."""
    if isinstance(value, str):
        return isinstance(answer, str) and standardize(value) == standardize(answer)
    if isinstance(value, dict) and isinstance(answer, dict):
        return _dict_mismatch(value, answer, "") is None  # ours: nested dicts key by key
    return _equal(value, answer)


def _entry_reason(value: Any, allowed: list[Any], path: str) -> str:
    candidates = [a for a in allowed if a != ""]
    if len(candidates) == 1 and isinstance(value, dict) and isinstance(candidates[0], dict):
        reason = _dict_mismatch(value, candidates[0], path)
        assert reason is not None
        return reason
    if len(candidates) == 1 and isinstance(candidates[0], list | dict):
        return _difference(value, candidates[0], path)
    if not candidates:
        return f"{path} should be left out"
    return _not_one_of(path, value, candidates)


def _dict_mismatch(value: dict[str, Any], answer: dict[str, Any], path: str) -> str | None:
    """Why the dict ``value`` is not the dict ``answer`` describes, or ``None``."""
    for key, item in value.items():
        if key not in answer:
            return f"{path} has unexpected key {key!r}"
        allowed = _alternatives(answer[key])
        if not any(_entry_matches(item, a) for a in allowed):
            return _entry_reason(item, allowed, f"{path}.{key}")
    for key, allowed in answer.items():
        if key not in value and "" not in _alternatives(allowed):
            return f"{path} is missing key {key!r}"
    return None


def _item_mismatch(value: Any, answer: Any, path: str, dict_items: bool) -> str | None:
    if dict_items:  # BFCL's list_dict_checker: each dict against the answer's dict there
        if isinstance(value, dict) and isinstance(answer, dict):
            return _dict_mismatch(value, answer, path)
        return f"{path} = {short(value)}, expected {short(answer)}"
    if isinstance(value, str) and isinstance(answer, str):  # BFCL's list_checker
        if standardize(value) == standardize(answer):
            return None
    elif _equal(value, answer):
        return None
    return _difference(value, answer, path)


def _mismatch(value: Any, answer: Any, path: str, dict_items: bool) -> str | None:
    """Why ``value`` (of the doc's type) differs from one possible ``answer``, or ``None``."""
    if isinstance(value, str):
        if isinstance(answer, str) and standardize(value) == standardize(answer):
            return None
    elif isinstance(value, list):
        if isinstance(answer, str) and answer == "":
            answer = []  # BFCL's list checks read the "may be left out" answer as []
        if isinstance(answer, list):
            if len(value) != len(answer):
                return f"{path} has {len(value)} items, expected {len(answer)}"
            for i, (item, expected) in enumerate(zip(value, answer, strict=True)):
                reason = _item_mismatch(item, expected, f"{path}[{i}]", dict_items)
                if reason is not None:
                    return reason
            return None
    elif isinstance(value, dict):
        if isinstance(answer, dict):
            return _dict_mismatch(value, answer, path)
    elif _equal(value, answer):
        return None
    return f"{path} = {short(value)}, expected {short(answer)}"


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
    expected = canonical_type(schema)
    kind = _kind(value)
    if expected == "float" and kind == "integer":  # BFCL: Python's int -> float conversion
        kind = "float"
        with contextlib.suppress(OverflowError):  # past any float: compared as the int it is
            value = float(value)
    answer_kind = _answer_kind(allowed)
    variable = expected is not None and answer_kind is not None and answer_kind != expected
    if expected is not None and kind != expected:
        if kind != answer_kind:
            return f"{name} should be {expected}, got {kind} {short(value)}"
    elif expected == "array":
        reason = _items_error(value, schema, allowed, name)
        if reason is not None:
            return reason
    if variable:  # judged by the answers as they are written
        if any(_equal(value, answer) for answer in allowed):
            return None
        if kind != expected:
            return f"{name} should be {expected}, got {kind} {short(value)}"
        return _not_one_of(name, value, [a for a in allowed if a != ""])
    items = schema.get("items") if isinstance(schema, dict) else None
    dict_items = expected == "array" and canonical_type(items) == "dict"
    reasons = [_mismatch(value, answer, name, dict_items) for answer in allowed]
    if any(reason is None for reason in reasons):
        return None
    return _choose(name, value, allowed, reasons)
