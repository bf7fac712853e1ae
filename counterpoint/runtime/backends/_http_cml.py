"""Helpers for OpenAI chat conventions.

Data crosses the seam as data: native tool calls leave the chat decoder as structured calls and
results go back as ``role: "tool"`` messages, with no text round trip. These pure functions:

* :func:`cml_id` gives a native tool call id the form of a CML call id (a Python identifier);
* :func:`render_chatml` renders messages as a ChatML prompt for raw completions, with control
  tokens in their contents neutralised;
* :func:`normalize_tools` accepts OpenAI tool entries or bare function schemas.
"""

from __future__ import annotations

import json
import keyword
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from counterpoint.errors import ConfigError
from counterpoint.protocol.escape import neutralise_control
from counterpoint.runtime.backends.base import Message, Prompt, Segment

__all__ = ["cml_id", "normalize_tools", "render_chatml"]

_SAFE_ID_RE = re.compile(r"[^A-Za-z0-9_]")


def cml_id(server_id: str | None, ordinal: int) -> str:
    """A CML call id (a Python identifier) for a native tool call id such as ``call_Ab-3``."""
    if server_id:
        candidate = _SAFE_ID_RE.sub("_", server_id)
        if candidate.isidentifier() and not keyword.iskeyword(candidate) and len(candidate) <= 64:
            return candidate
    return f"call_{ordinal}"


def render_chatml(messages: Iterable[Message]) -> Prompt:
    """Render messages as ChatML (``<|im_start|>role\\n...<|im_end|>``), open for the assistant.

    SmolLM2, Qwen and most llama.cpp chat models use this format; a server's own chat template is
    applied only on ``/v1/chat/completions``.
    """
    segments: list[Segment] = []
    for message in messages:
        segments.append(Segment(f"<|im_start|>{message.role}\n"))
        segments.append(Segment(neutralise_control(message.content), kind="content"))
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
