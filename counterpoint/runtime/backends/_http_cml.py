"""Translating between OpenAI chat conventions and CML text.

The session speaks CML (DESIGN.md, "The protocol"); an OpenAI-compatible server speaks messages,
``tool_calls`` and ``role: "tool"`` results. These pure functions convert one into the other:

* :func:`call_to_cml` renders a native tool call as ``[CALL] id [HEAD] name(arg=...) [END]``;
* :func:`split_interrupts` finds the ``[INTR] id [HEAD] value [END]`` blocks in extended text;
* :func:`render_chatml` renders messages as a ChatML prompt for raw completions;
* :func:`normalize_tools` accepts OpenAI tool entries or bare function schemas.
"""

from __future__ import annotations

import json
import keyword
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from counterpoint.errors import ConfigError
from counterpoint.runtime.backends.base import Message, Prompt, Segment
from counterpoint.runtime.callsyntax import format_call_body

__all__ = [
    "Interrupt",
    "call_to_cml",
    "cml_id",
    "normalize_tools",
    "render_chatml",
    "split_interrupts",
]

_INTR_RE = re.compile(r"\[INTR\]\s*([^\s\[\]]+)\s*\[HEAD\]\s?(.*?)\s*\[END\]", re.DOTALL)
_SAFE_ID_RE = re.compile(r"[^A-Za-z0-9_]")


@dataclass(frozen=True)
class Interrupt:
    """One ``[INTR] call_id [HEAD] value [END]`` block and where it sits in the extended text."""

    call_id: str
    value: str
    block: str


def cml_id(server_id: str | None, ordinal: int) -> str:
    """A CML call id (a Python identifier) for a native tool call id such as ``call_Ab-3``."""
    if server_id:
        candidate = _SAFE_ID_RE.sub("_", server_id)
        if candidate.isidentifier() and not keyword.iskeyword(candidate) and len(candidate) <= 64:
            return candidate
    return f"call_{ordinal}"


def call_to_cml(call_id: str, name: str, arguments: str) -> str:
    """Render a native tool call (``arguments`` is its JSON text) as one CML call block.

    The body is Python call syntax (``get_weather(city='Paris')``) when the name is an
    identifier and the arguments are a JSON object with identifier keys; otherwise the JSON body
    ``{"name": ..., "arguments": ...}`` that the runtime's parser also accepts (malformed arguments
    are passed on as a string, so the parser reports them to the model as an error).
    """
    try:
        args: Any = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        args = arguments
    body: str | None = None
    if isinstance(args, dict):
        try:
            body = format_call_body(name, args)
        except (TypeError, ValueError):
            body = None  # not expressible as a Python call: use the JSON form
    if body is None:
        body = json.dumps({"name": name, "arguments": args}, ensure_ascii=False)
    return f"[CALL] {call_id} [HEAD] {body} [END]\n"


def split_interrupts(text: str) -> tuple[list[Interrupt], str]:
    """The interrupt blocks in ``text`` and the text around them (stripped, blocks removed)."""
    interrupts = [Interrupt(m.group(1), m.group(2), m.group(0)) for m in _INTR_RE.finditer(text)]
    rest = _INTR_RE.sub("", text).strip()
    return interrupts, rest


def render_chatml(messages: Iterable[Message]) -> Prompt:
    """Render messages as ChatML (``<|im_start|>role\\n...<|im_end|>``), open for the assistant.

    SmolLM2, Qwen and most llama.cpp chat models use this format; a server's own chat template is
    applied only on ``/v1/chat/completions``.
    """
    segments: list[Segment] = []
    for message in messages:
        segments.append(Segment(f"<|im_start|>{message.role}\n"))
        segments.append(Segment(message.content, kind="content"))
        segments.append(Segment("<|im_end|>\n"))
    segments.append(Segment("<|im_start|>assistant\n"))
    return Prompt(tuple(segments))


def normalize_tools(tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI ``tools`` entries from entries or bare function schemas (``name``/``parameters``)."""
    normalized: list[dict[str, Any]] = []
    for tool in tools:
        function: dict[str, Any]
        if tool.get("type") == "function" and isinstance(tool.get("function"), Mapping):
            function = dict(tool["function"])
        elif isinstance(tool.get("name"), str):
            function = dict(tool)
        else:
            raise ConfigError(
                "each tool must be an OpenAI tool entry {'type': 'function', 'function': {...}} "
                f"or a function schema with a 'name'; got {json.dumps(tool, default=str)[:200]}"
            )
        function.setdefault("parameters", {"type": "object", "properties": {}})
        normalized.append({"type": "function", "function": function})
    return normalized
