"""The system prompt that teaches a model the CML protocol and lists its tools."""

from __future__ import annotations

from counterpoint.tools.toolset import Toolset

__all__ = ["build_system_prompt", "describe_tools"]

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


def build_system_prompt(instructions: str, tools: Toolset) -> str:
    """The system prompt: the agent's instructions, then (with tools) the protocol and the tools."""
    parts = [instructions.strip()] if instructions.strip() else []
    if len(tools):
        lpt = _LPT if any(t.estimated_latency_s is not None for t in tools) else ""
        parts.append(_PROTOCOL.format(lpt=lpt))
        parts.append("Functions:\n" + describe_tools(tools))
        parts.append(_EXAMPLE)
    return "\n\n".join(parts)


def describe_tools(tools: Toolset) -> str:
    """One line per tool (its signature, description and latency), then its parameters' docs."""
    lines = []
    for line, tool in zip(tools.describe().splitlines(), tools, strict=True):
        lines.append(f"- {line}")
        properties = tool.parameters.get("properties", {})
        for pname, prop in properties.items():
            doc = prop.get("description") if isinstance(prop, dict) else None
            if doc:
                lines.append(f"    {pname}: {doc}")
    return "\n".join(lines)
