"""The system prompt that teaches a model the CML protocol and lists its tools.

Backends that speak CML (the local transformers backend, raw completions on an HTTP server, the
scripted and replay models) render it from the agent's instructions and the tools' specs; a
backend with native tool calls sends the tools its own way and the instructions alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from counterpoint.core.calls import ToolSpec

__all__ = ["USER_ID", "build_system_prompt", "describe_tools", "latency_text"]

USER_ID = "user"
"""The id of a user interrupt: ``[INTR] user [HEAD] message [END]``. Never a call id."""

_PROTOCOL = """\
You can call functions. To call one, write a call block:
[CALL] c1 [HEAD] function_name(arg="value", number=3) [END]
Give every call a new short id (c1, c2, c3, ...). Use keyword arguments with literal values.
You do not wait for a result: right after a call block, write the next independent call or keep
writing. Each result arrives later in your text as
[INTR] c1 [HEAD] <result> [END]
If you cannot do anything more until a result arrives, write [TRAP][END].
Never write [INTR] yourself.
Call independent functions first{lpt}.
When you have every result you need, write the final answer in plain text."""

_USER = """\
The user may add to the request while you write: it arrives as
[INTR] user [HEAD] <message> [END]
Take it into account from there on (call more functions if it asks for them)."""

_LPT = ", the slowest first (estimated latencies are listed)"

_EXAMPLE = """\
Example.
User: What is the weather in Paris and in Rome?
Assistant: [CALL] c1 [HEAD] get_weather(city="Paris") [END]
[CALL] c2 [HEAD] get_weather(city="Rome") [END]
[TRAP][END]
[INTR] c1 [HEAD] {"temp_c": 17} [END]
[INTR] c2 [HEAD] {"temp_c": 21} [END]
It is 17 °C in Paris and 21 °C in Rome."""


def build_system_prompt(instructions: str, tools: Sequence[ToolSpec]) -> str:
    """The system prompt: the agent's instructions, then (with tools) the protocol and the tools."""
    parts = [instructions.strip()] if instructions.strip() else []
    if tools:
        lpt = _LPT if any(t.estimated_latency_s is not None for t in tools) else ""
        parts.append(_PROTOCOL.format(lpt=lpt))
        parts.append(_USER)
        parts.append("Functions:\n" + describe_tools(tools))
        parts.append(_EXAMPLE)
    return "\n\n".join(parts)


def latency_text(seconds: float) -> str:
    """``~300 ms`` or ``~1.5 s``."""
    if seconds < 1.0:
        return f"~{seconds * 1000:.0f} ms"
    return f"~{seconds:.1f} s"


def describe_tools(tools: Sequence[ToolSpec]) -> str:
    """One line per tool (its signature, description and latency), then its parameters' docs."""
    lines = []
    for tool in tools:
        line = tool.signature or tool.name
        if tool.estimated_latency_s is not None:
            line += f" (takes {latency_text(tool.estimated_latency_s)})"
        lines.append(f"- {line}")
        properties = tool.parameters.get("properties", {})
        if isinstance(properties, dict):
            for pname, prop in properties.items():
                doc = prop.get("description") if isinstance(prop, dict) else None
                if doc:
                    lines.append(f"    {pname}: {doc}")
    return "\n".join(lines)
