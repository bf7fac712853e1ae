"""The grammar of a call block's body, compiled from the tools' JSON schemas (Lark, for llguidance).

Once the model has written ``[CALL]`` the local backend writes the id itself (`` c3 [HEAD]``, an
id this generation has not used) and constrains the rest of the block to::

    ␠name(arg=value, ...) [END]

- ``name`` is one of the toolset's functions (or the one ``tool_choice`` names);
- its keyword arguments are the parameters of that function's schema, in the schema's order
  (the order of the signature the prompt shows), each at most once; a required one cannot be
  skipped, so the block cannot close before every required argument is written;
- each value is a Python literal of the parameter's JSON-schema type: a string (double-quoted,
  with Python's escapes, never holding a CML marker), an integer, a number, ``True``/``False``,
  ``None``, one of an ``enum`` or a ``const``, a list of its ``items`` (or a fixed-length
  ``prefixItems`` tuple), a dict of its ``properties`` (same rules as arguments, keys quoted) or of
  its ``additionalProperties`` type; ``anyOf``/``oneOf``/a list of types is any of them;
- arguments are separated by ``", "``, exactly as :func:`~counterpoint.protocol.callsyntax.
  format_call_body` writes them, so every piece that is forced (``=``, ``, next_arg=``,
  ``) [END]``) can be written by jump-forward.

A schema the grammar cannot express (``Any``, a recursive ``$ref``, ``not``, an ``allOf`` of
several schemas...) falls back, for that value only, to any Python literal, with a
:func:`warnings.warn` naming the tool and the parameter; it never fails. A free-form ``dict``
(``type: object`` with no properties) falls back to any dict literal: its keys and values are
free, but it is a dict (a model cannot write ``None`` or ``5`` for it).

Grammars are cached per toolset, keyed on the content of the schemas (:func:`call_grammar`).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from counterpoint.core.calls import ToolSpec

__all__ = ["CallGrammar", "GrammarFallbackWarning", "call_grammar", "grammar_key", "literal"]

_MARKER_FREE = r"~/(?s:.*)\[(CALL\]|HEAD\]|END\]|TRAP\]|INTR)(?s:.*)/"
_TERMINALS = (
    # A double-quoted Python string: no raw newline, only escapes Python reads back as written,
    # and never a CML marker (the block would end inside the string).
    r'STRING: /"([^"\\\r\n]|\\(["\\' + "'" + r"nrtabfv0]|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}"
    r'|U[0-9a-fA-F]{8}))*"/ & ' + _MARKER_FREE,
    r"INT: /-?(0|[1-9][0-9]*)/",
    r"NUMBER: /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/",
)
_ANY_RULES = (
    'any_value: STRING | NUMBER | "True" | "False" | "None" | any_list | any_dict',
    'any_list: "[" (any_value (", " any_value)*)? "]"',
    'any_dict: "{" (any_key ": " any_value (", " any_key ": " any_value)*)? "}"',
    'any_key: STRING | NUMBER | "True" | "False" | "None"',
)
_CACHE_SIZE = 64
_cache: OrderedDict[str, CallGrammar] = OrderedDict()
_cache_lock = threading.Lock()


class GrammarFallbackWarning(UserWarning):
    """A parameter's schema cannot be expressed: its value is any Python literal instead."""


@dataclass(frozen=True)
class CallGrammar:
    """The Lark grammar of one call body (`` name(args) [END]``) for a set of tools."""

    key: str
    """A digest of the tools' names and schemas (and of the function ``only`` restricts to)."""
    lark: str
    """The grammar, in llguidance's Lark dialect."""
    functions: tuple[str, ...]
    """The function names the grammar allows."""
    fallbacks: tuple[str, ...]
    """``tool.param`` paths whose values fell back to any literal."""


def grammar_key(tools: Sequence[ToolSpec], only: str | None = None) -> str:
    """The cache key of ``tools``' grammar: a digest of their names and schemas."""
    content = [[t.name, t.parameters] for t in tools]
    text = json.dumps([content, only], sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def call_grammar(tools: Sequence[ToolSpec], *, only: str | None = None) -> CallGrammar:
    """The grammar of a call body for ``tools`` (only the function ``only``, if given).

    Built once per content (names and schemas) and cached; a fallback warning is given when the
    grammar is built. Raises :class:`ValueError` when there is no tool, or ``only`` is not one.
    """
    key = grammar_key(tools, only)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    grammar = _build(tools, only, key)
    with _cache_lock:
        _cache[key] = grammar
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return grammar


def literal(value: Any) -> str:
    """``value`` written as a Python literal (strings double-quoted), as the grammar spells it."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} has no literal")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    raise ValueError(f"a {type(value).__name__} has no literal")


# ----------------------------------------------------------------------------- building


def _build(tools: Sequence[ToolSpec], only: str | None, key: str) -> CallGrammar:
    chosen = [t for t in tools if only is None or t.name == only]
    if not chosen:
        if only is not None:
            raise ValueError(f"tool_choice names {only!r}, which is not one of the tools")
        raise ValueError("a call grammar needs at least one tool")
    builder = _Builder()
    alternatives = []
    for spec in chosen:
        alternatives.append(builder.function(spec))
    lines = ['start: " " call " [END]"', "call: " + " | ".join(alternatives)]
    lines.extend(builder.rules)
    if builder.uses_any:
        lines.extend(_ANY_RULES)
    lines.extend(_TERMINALS)
    return CallGrammar(
        key=key,
        lark="\n".join(lines) + "\n",
        functions=tuple(t.name for t in chosen),
        fallbacks=tuple(builder.fallbacks),
    )


def _lit(text: str) -> str:
    """A Lark string literal for ``text``."""
    return json.dumps(text, ensure_ascii=False)


class _Builder:
    def __init__(self) -> None:
        self.rules: list[str] = []
        self.fallbacks: list[str] = []
        self.uses_any = False
        self._count = 0
        self._shared: dict[str, str] = {}

    def _rule(self, body: str) -> str:
        """A new rule for ``body`` (identical bodies share one rule); returns its name."""
        known = self._shared.get(body)
        if known is not None:
            return known
        self._count += 1
        name = f"r{self._count}"
        self.rules.append(f"{name}: {body}")
        self._shared[body] = name
        return name

    def function(self, spec: ToolSpec) -> str:
        params = spec.parameters if isinstance(spec.parameters, Mapping) else {}
        root = params
        properties = params.get("properties")
        props = properties if isinstance(properties, Mapping) else {}
        required = params.get("required")
        required_set = set(required) if isinstance(required, list) else set()
        items = []
        for pname, pschema in props.items():
            if not isinstance(pname, str) or not pname.isidentifier():
                warnings.warn(
                    f"constrained decoding: {spec.name}.{pname} is not a Python identifier, so "
                    "a call cannot name it as a keyword argument; the grammar leaves it out",
                    GrammarFallbackWarning,
                    stacklevel=4,
                )
                self.fallbacks.append(f"{spec.name}.{pname}")
                continue
            value = self.value(pschema, root, f"{spec.name}.{pname}", ())
            items.append((_lit(f"{pname}="), value, pname in required_set))
        if params.get("additionalProperties") not in (None, False) and not props:
            self._fallback(f"{spec.name}", "takes arbitrary keyword arguments")
        body = self._sequence(items, "(", ")")
        return self._rule(_lit(spec.name) + " " + body)

    def _sequence(self, items: list[tuple[str, str, bool]], opening: str, closing: str) -> str:
        """``opening`` item, item... ``closing``: in order, optional ones skippable, ", "-separated.

        ``items`` are (name literal, value rule, required). ``rest[i]``: what may follow once an
        item before ``i`` was written; ``first[i]``: the same when none was written yet.
        """
        n = len(items)
        if n == 0:
            return _lit(opening + closing)
        # the first required index at or after i (n when none)
        next_required = [n] * (n + 1)
        for i in range(n - 1, -1, -1):
            next_required[i] = i if items[i][2] else next_required[i + 1]
        rest = [""] * (n + 1)  # a reference (rule name, "?" if it may be empty), "" for nothing
        for i in range(n - 1, -1, -1):
            rest[i] = self._choice(items, rest, i, next_required, '", " ')
        inner = self._choice(items, rest, 0, next_required, "")
        return f"{_lit(opening)} {inner} {_lit(closing)}".replace("  ", " ")

    def _choice(
        self,
        items: list[tuple[str, str, bool]],
        rest: list[str],
        i: int,
        next_required: list[int],
        separator: str,
    ) -> str:
        """A reference to: write one of items[i..first required], then rest; optional if none is."""
        n = len(items)
        last = min(next_required[i], n - 1)
        alternatives = [
            f"{separator}{items[j][0]} {items[j][1]} {rest[j + 1]}".strip()
            for j in range(i, last + 1)
        ]
        name = self._rule(" | ".join(alternatives))
        return name + ("?" if next_required[i] == n else "")

    def _fallback(self, where: str, why: str, rule: str = "any_value") -> str:
        """``rule`` (any literal, or any dict literal) for a value the schema does not pin down."""
        self.fallbacks.append(where)
        what = "a dict of any Python literals" if rule == "any_dict" else "any Python literal"
        warnings.warn(
            f"constrained decoding: {where} {why}; its value is {what} "
            "(not checked against a type while the model writes it)",
            GrammarFallbackWarning,
            stacklevel=5,
        )
        self.uses_any = True
        return rule

    def value(self, schema: Any, root: Mapping[str, Any], where: str, refs: tuple[str, ...]) -> str:
        """The rule (or terminal) for a value of ``schema``."""
        if schema is True or (isinstance(schema, Mapping) and not schema):
            return self._fallback(where, "has no type (free-form)")
        if not isinstance(schema, Mapping):
            return self._fallback(where, f"has a schema that is not an object ({schema!r})")
        ref = schema.get("$ref")
        if isinstance(ref, str):
            if ref in refs:
                return self._fallback(where, f"has a recursive type ({ref})")
            target = _resolve(root, ref)
            if target is None:
                return self._fallback(where, f"refers to {ref}, which is not in the schema")
            return self.value(target, root, where, (*refs, ref))
        if "enum" in schema:
            return self._choices(schema["enum"], where)
        if "const" in schema:
            return self._choices([schema["const"]], where)
        for combinator in ("anyOf", "oneOf"):
            options = schema.get(combinator)
            if isinstance(options, list) and options:
                rules = [self.value(o, root, where, refs) for o in options]
                return self._rule(" | ".join(dict.fromkeys(rules)))
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1:
            return self.value(all_of[0], root, where, refs)
        if all_of is not None or "not" in schema:
            return self._fallback(where, "combines schemas (allOf/not)")
        kind = schema.get("type")
        if isinstance(kind, list):
            rules = [self.value({**schema, "type": k}, root, where, refs) for k in kind]
            return self._rule(" | ".join(dict.fromkeys(rules)))
        if kind == "string":
            return "STRING"
        if kind == "integer":
            return "INT"
        if kind == "number":
            return "NUMBER"
        if kind == "boolean":
            return self._rule('"True" | "False"')
        if kind == "null":
            return self._rule('"None"')
        if kind == "array":
            return self._array(schema, root, where, refs)
        if kind == "object" or "properties" in schema:
            return self._object(schema, root, where, refs)
        return self._fallback(where, "has no type (free-form)")

    def _choices(self, values: Any, where: str) -> str:
        if not isinstance(values, list) or not values:
            return self._fallback(where, "has an empty enum")
        try:
            options = [_lit(literal(v)) for v in values]
        except ValueError as exc:
            return self._fallback(where, f"has an enum value with no literal ({exc})")
        return self._rule(" | ".join(dict.fromkeys(options)))

    def _array(
        self, schema: Mapping[str, Any], root: Mapping[str, Any], where: str, refs: Any
    ) -> str:
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list) and prefix:
            rules = [self.value(s, root, f"{where}[{i}]", refs) for i, s in enumerate(prefix)]
            return self._rule('"[" ' + ' ", " '.join(rules) + ' "]"')
        items = schema.get("items")
        item = (
            self.value(items, root, f"{where}[]", refs)
            if isinstance(items, Mapping) and items
            else self._any_quietly()
        )
        return self._rule(f'"[" ({item} (", " {item})*)? "]"')

    def _any_quietly(self) -> str:
        """Any literal for a part whose schema says any (a plain ``list``): no warning needed."""
        self.uses_any = True
        return "any_value"

    def _object(
        self, schema: Mapping[str, Any], root: Mapping[str, Any], where: str, refs: Any
    ) -> str:
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        if isinstance(properties, Mapping) and properties:
            required = schema.get("required")
            required_set = set(required) if isinstance(required, list) else set()
            items = [
                (
                    _lit(f"{literal(name)}: "),
                    self.value(sub, root, f"{where}.{name}", refs),
                    name in required_set,
                )
                for name, sub in properties.items()
            ]
            return self._rule(self._sequence(items, "{", "}"))
        if isinstance(extra, Mapping) and extra:
            value = self.value(extra, root, f"{where}{{}}", refs)
            pair = f'STRING ": " {value}'
            return self._rule(f'"{{" ({pair} (", " {pair})*)? "}}"')
        # a dict all the same: its braces are known, only its keys and values are free
        return self._fallback(where, "is a free-form dict", "any_dict")


def _resolve(root: Mapping[str, Any], ref: str) -> Any:
    """The schema a local ``$ref`` (``#/$defs/Name``) points at, or None."""
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node
