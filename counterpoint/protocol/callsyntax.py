"""Parse the body of a CML call block into a function name and literal arguments.

Two forms are accepted::

    get_weather(city="Paris", days=[1, 2], units=None)           Python call syntax
    {"name": "get_weather", "arguments": {"city": "Paris"}}      JSON ("parameters" works too)

Python bodies are parsed with :mod:`ast` and the tree is walked: nothing is ever evaluated.
Arguments must be literals — strings, numbers (a leading minus included), ``True``/``False``/
``None`` (and the JSON spellings ``true``/``false``/``null``), lists, tuples (returned as lists)
and dicts with literal keys, nested freely. The function name may be dotted (``spotify.play``).
Keyword arguments named after Python keywords (``book(from="NYC")``) are accepted too.

Anything else raises :class:`CallSyntaxError`, whose message is written for the model: what was
wrong, where, and how to write it instead. The session injects that message as the call's error.
"""

from __future__ import annotations

import ast
import io
import json
import keyword
import math
import re
import tokenize
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_CALL_CHARS", "CallSyntaxError", "ParsedCall", "format_call_body", "parse_call"]

_HOW = (
    "Write one call as name(arg=value, ...) with literal values: strings in quotes, numbers, "
    "True/False/None, lists and dicts."
)
_JSON_NAMES: dict[str, Any] = {"true": True, "false": False, "null": None}
_JSON_ARGUMENT_KEYS = ("arguments", "parameters")
_KW_PLACEHOLDER = "_cp_kw_"
_FENCE = re.compile(r"^```[A-Za-z0-9_-]*\s*\n?(.*?)\n?\s*```$", re.DOTALL)


class CallSyntaxError(ValueError):
    """The call body cannot be used; the message tells the model what to fix."""


@dataclass(frozen=True)
class ParsedCall:
    """A parsed call: the (possibly dotted) function name and its literal arguments."""

    name: str
    arguments: dict[str, Any]
    positional: tuple[Any, ...] = ()


MAX_CALL_CHARS = 65_536
"""The longest call body :func:`parse_call` reads by default (``Limits.max_call_chars``)."""


def parse_call(body: str, *, max_chars: int = MAX_CALL_CHARS) -> ParsedCall:
    """Parse a call body in Python call syntax or JSON form. Never evaluates anything.

    A body longer than ``max_chars`` is refused before any parsing (a hostile body cannot cost
    time or memory); so is an integer past Python's digit limit, or nesting too deep to read.

    Raises:
        CallSyntaxError: the body is empty, too long, malformed, or uses something other than
            literals. Nothing else escapes.
    """
    if len(body) > max_chars:
        raise CallSyntaxError(
            f"The call is {len(body)} characters long, over the limit of {max_chars} "
            "(Limits.max_call_chars): pass large data by reference (a path, an id), not inline."
        )
    text = _unwrap(body)
    if not text:
        raise CallSyntaxError(f"The call is empty. {_HOW}")
    try:
        if text.startswith("{"):
            return _parse_json_form(text)
        return _parse_python_form(text)
    except CallSyntaxError:
        raise
    except RecursionError:
        raise CallSyntaxError(f"The call is nested too deeply to read. {_HOW}") from None
    except (ValueError, MemoryError) as exc:  # e.g. an integer literal past Python's digit limit
        raise CallSyntaxError(f"The call has a value that cannot be read ({exc}). {_HOW}") from None


def format_call_body(name: str, arguments: Mapping[str, Any]) -> str:
    """Write ``name(a=1, b="x")``; :func:`parse_call` reads it back to the same values.

    Raises:
        ValueError: ``name`` is not a dotted identifier, an argument name is not an identifier,
            or a float is not finite.
        TypeError: a value is not a str, int, float, bool, None, sequence or mapping.
    """
    if not _is_dotted_name(name):
        raise ValueError(f"a function name must be a dotted identifier, got {name!r}")
    parts = []
    for key, value in arguments.items():
        if not isinstance(key, str) or not _is_identifier(key) or key in ("True", "False", "None"):
            raise ValueError(f"an argument name must be an identifier, got {key!r}")
        parts.append(f"{key}={_format_value(value)}")
    return f"{name}({', '.join(parts)})"


# -- Python form ---------------------------------------------------------------------------------


def _parse_python_form(text: str) -> ParsedCall:
    module = _parse_module(text)
    statements = module.body
    if not statements:
        raise CallSyntaxError(f"The call is empty. {_HOW}")
    if len(statements) > 1:
        raise CallSyntaxError(
            f"Found {len(statements)} statements; a [CALL] block holds exactly one call. "
            "Put each call in its own [CALL] ... [END] block."
        )
    (statement,) = statements
    if not isinstance(statement, ast.Expr):
        raise CallSyntaxError(
            f"{_snippet(text, statement)} is not a function call. "
            f"Write just the call, without assigning or defining anything. {_HOW}"
        )
    call = statement.value
    if not isinstance(call, ast.Call):
        snippet = _snippet(text, call)
        hint = f" Add the arguments: {snippet}(...)." if _is_name_chain(call) else ""
        raise CallSyntaxError(f"{snippet} is not a function call.{hint} {_HOW}")
    name = _call_name(call.func, text)
    positional = tuple(
        _literal(arg, text, f"positional argument {i + 1}") for i, arg in enumerate(call.args)
    )
    arguments: dict[str, Any] = {}
    for kw in call.keywords:
        if kw.arg is None:
            raise CallSyntaxError(
                f"{_snippet(text, kw)} unpacks a dict with **, which is not allowed "
                f"(column {kw.col_offset + 1}). Write each argument as name=value."
            )
        arg = kw.arg.removeprefix(_KW_PLACEHOLDER)
        if arg in arguments:
            raise CallSyntaxError(f"The argument {arg!r} is given twice. Give it once.")
        arguments[arg] = _literal(kw.value, text, f"argument {arg!r}")
    return ParsedCall(name=name, arguments=arguments, positional=positional)


def _parse_module(text: str) -> ast.Module:
    error = _try_parse(text)
    if isinstance(error, ast.Module):
        return error
    renamed = _rename_keyword_arguments(text)
    if renamed is not None:
        retry = _try_parse(renamed)
        if isinstance(retry, ast.Module):
            return retry
    where = (
        f" at line {error.lineno}, column {error.offset}" if error.lineno and error.offset else ""
    )
    reason = error.msg or "invalid syntax"
    if "unterminated" in reason or "was never closed" in reason or "EOF" in reason:
        reason += " (check that every quote and bracket is closed)"
    raise CallSyntaxError(f"Could not parse the call{where}: {reason}. {_HOW}")


def _try_parse(text: str) -> ast.Module | SyntaxError:
    try:
        return ast.parse(text, mode="exec")
    except SyntaxError as exc:
        return exc
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes, huge ints, deep nesting
        return SyntaxError(str(exc) or type(exc).__name__)


def _rename_keyword_arguments(text: str) -> str | None:
    """Rename keyword arguments spelled as Python keywords (``from=``) to parseable names."""
    if _KW_PLACEHOLDER in text:
        return None
    try:
        tokens = [
            t
            for t in tokenize.generate_tokens(io.StringIO(text).readline)
            if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT)
        ]
    except (tokenize.TokenError, SyntaxError, ValueError):
        return None
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    edits: list[int] = []
    for i in range(1, len(tokens) - 1):
        tok = tokens[i]
        if (
            tok.type == tokenize.NAME
            and keyword.iskeyword(tok.string)
            and tok.string not in ("True", "False", "None")
            and tokens[i - 1].string in ("(", ",")
            and tokens[i + 1].string == "="
        ):
            edits.append(offsets[tok.start[0] - 1] + tok.start[1])
    if not edits:
        return None
    for start in reversed(edits):
        text = text[:start] + _KW_PLACEHOLDER + text[start:]
    return text


def _call_name(func: ast.expr, text: str) -> str:
    parts: list[str] = []
    node = func
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise CallSyntaxError(
            f"The function to call must be a name such as get_weather or spotify.play, "
            f"not {_snippet(text, func)}. {_HOW}"
        )
    parts.append(node.id)
    return ".".join(reversed(parts))


def _literal(node: ast.expr, text: str, where: str) -> Any:
    """Convert a literal expression node to its value; raise for anything else."""
    if isinstance(node, ast.Constant):
        value = node.value
        if value is None or isinstance(value, str | bool | int | float):
            return value
        kind = {bytes: "a bytes literal", complex: "a complex number"}.get(
            type(value), "an ellipsis"
        )
        raise _not_literal(node, text, where, kind)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = _literal(node.operand, text, where)
        if isinstance(operand, int | float) and not isinstance(operand, bool):
            return -operand if isinstance(node.op, ast.USub) else operand
        raise _not_literal(node, text, where, "a sign in front of something other than a number")
    if isinstance(node, ast.List | ast.Tuple):
        return [_literal(item, text, where) for item in node.elts]
    if isinstance(node, ast.Dict):
        result: dict[Any, Any] = {}
        for key_node, value_node in zip(node.keys, node.values, strict=True):
            if key_node is None:
                raise _not_literal(value_node, text, where, "a ** unpacking inside a dict")
            key = _literal(key_node, text, where)
            if isinstance(key, list | dict):
                raise _not_literal(key_node, text, where, "a list or dict used as a dict key")
            result[key] = _literal(value_node, text, where)
        return result
    if isinstance(node, ast.Name):
        if node.id in _JSON_NAMES:
            return _JSON_NAMES[node.id]
        raise CallSyntaxError(
            f"In {where} (column {node.col_offset + 1}): {node.id} is a name, not a value; "
            f'only literal values are allowed. If you meant the text, write "{node.id}". {_HOW}'
        )
    if isinstance(node, ast.Call):
        raise _not_literal(node, text, where, "a function call inside an argument")
    if isinstance(node, ast.Attribute):
        raise _not_literal(node, text, where, "an attribute or variable")
    if isinstance(node, ast.Starred):
        raise _not_literal(node, text, where, "a * unpacking")
    if isinstance(node, ast.Set):
        raise _not_literal(node, text, where, "a set (use a list [...] instead)")
    if isinstance(node, ast.JoinedStr):
        raise _not_literal(node, text, where, "an f-string (write the finished text in quotes)")
    if isinstance(node, ast.BinOp | ast.BoolOp | ast.Compare):
        raise _not_literal(node, text, where, "an expression (write its result instead)")
    if isinstance(node, ast.Lambda):
        raise _not_literal(node, text, where, "a lambda")
    raise _not_literal(node, text, where, "an expression")


def _not_literal(node: ast.AST, text: str, where: str, kind: str) -> CallSyntaxError:
    column = getattr(node, "col_offset", None)
    at = f" (column {column + 1})" if isinstance(column, int) else ""
    return CallSyntaxError(
        f"In {where}{at}: {_snippet(text, node)} is {kind}, not a literal value. {_HOW}"
    )


def _snippet(text: str, node: ast.AST, limit: int = 60) -> str:
    segment = ast.get_source_segment(text, node) or ast.unparse(node)
    segment = segment.replace(_KW_PLACEHOLDER, "")
    return segment if len(segment) <= limit else segment[: limit - 3] + "..."


def _is_name_chain(node: ast.expr) -> bool:
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name)


# -- JSON form -----------------------------------------------------------------------------------


def _parse_json_form(text: str) -> ParsedCall:
    data = _load_json(text, "the JSON call")
    if not isinstance(data, dict):
        raise CallSyntaxError("The JSON call must be an object.")
    unknown = sorted(set(data) - {"name", *_JSON_ARGUMENT_KEYS})
    if unknown:
        raise CallSyntaxError(
            f"Unknown key(s) {', '.join(map(repr, unknown))} in the JSON call; use only "
            '{"name": "...", "arguments": {...}}.'
        )
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise CallSyntaxError(
            'The JSON call needs a "name" with the function name as a string: '
            '{"name": "get_weather", "arguments": {"city": "Paris"}}.'
        )
    present = [key for key in _JSON_ARGUMENT_KEYS if key in data]
    if len(present) > 1:
        raise CallSyntaxError('Give the arguments once, under "arguments" only.')
    arguments: Any = data[present[0]] if present else {}
    if isinstance(arguments, str):
        arguments = _load_json(arguments, 'the "arguments" string') if arguments.strip() else {}
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict) or not all(isinstance(k, str) for k in arguments):
        raise CallSyntaxError(
            '"arguments" must be an object mapping argument names to values, such as '
            '{"city": "Paris"}.'
        )
    return ParsedCall(name=name.strip(), arguments=arguments, positional=())


def _load_json(text: str, what: str) -> Any:
    """Decode ``text`` (JSON, or a dict in Python syntax); ``what`` names it in messages."""
    text = text.strip()
    try:
        value, end = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError as exc:
        fallback = _python_dict(text)
        if fallback is not None:
            return fallback
        raise CallSyntaxError(
            f"Could not parse {what} at line {exc.lineno}, column {exc.colno}: {exc.msg}. "
            'Write {"name": "get_weather", "arguments": {"city": "Paris"}} or get_weather(...).'
        ) from None
    except RecursionError:
        raise CallSyntaxError(f"{what.capitalize()} is nested too deeply.") from None
    if text[end:].strip():
        raise CallSyntaxError(
            f"Unexpected text after {what}: {text[end:].strip()[:40]!r}. "
            "Put each call in its own [CALL] ... [END] block."
        )
    return value


def _python_dict(text: str) -> dict[str, Any] | None:
    """A dict written in Python syntax (single quotes, True, trailing commas), or None."""
    module = _try_parse(text)
    if not isinstance(module, ast.Module) or len(module.body) != 1:
        return None
    (statement,) = module.body
    if not isinstance(statement, ast.Expr) or not isinstance(statement.value, ast.Dict):
        return None
    value = _literal(statement.value, text, "the call")
    return value if isinstance(value, dict) else None


# -- formatting and helpers ----------------------------------------------------------------------


def _unwrap(body: str) -> str:
    """Strip whitespace and a Markdown code fence or backticks around the body."""
    text = body.strip()
    fenced = _FENCE.match(text)
    if fenced:
        return fenced.group(1).strip()
    if len(text) >= 2 and text[0] == text[-1] == "`":
        return text.strip("`").strip()
    return text


def _is_dotted_name(name: str) -> bool:
    return all(_is_identifier(part) for part in name.split("."))


def _is_identifier(name: str) -> bool:
    """An identifier that Python reads back unchanged (it NFKC-normalizes identifiers)."""
    return name.isidentifier() and unicodedata.normalize("NFKC", name) == name


def _format_value(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} cannot be written as a literal")
        return repr(value)
    if isinstance(value, str):
        return _format_str(value)
    if isinstance(value, Mapping):
        items = (f"{_format_key(k)}: {_format_value(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return "[" + ", ".join(_format_value(item) for item in value) + "]"
    raise TypeError(f"cannot write a {type(value).__name__} as a literal argument")


def _format_key(key: Any) -> str:
    if key is None or isinstance(key, str | int | float):
        return _format_value(key)
    raise TypeError(f"cannot write a {type(key).__name__} as a dict key")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _format_str(text: str) -> str:
    """A double-quoted Python string literal that keeps printable non-ASCII text readable."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        else:
            code = ord(char)
            out.append(
                f"\\x{code:02x}"
                if code < 0x100
                else f"\\u{code:04x}"
                if code < 0x10000
                else f"\\U{code:08x}"
            )
    return '"' + "".join(out) + '"'
