"""A :class:`Toolset` groups the tools an agent may call, by unique name."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from counterpoint.core.calls import ToolSpec
from counterpoint.protocol.prompt import latency_text
from counterpoint.tools._errors import ToolDefinitionError
from counterpoint.tools.tool import Tool, tool

__all__ = ["ToolLike", "Toolset"]

ToolLike = Tool | Callable[..., Any]
"""A :class:`Tool`, or a plain typed function (wrapped with ``@tool``)."""


class Toolset:
    """Tools by unique name, in the order they were added.

    Build it from tools, plain functions (wrapped with ``@tool``), other toolsets or iterables of
    those: ``Toolset(get_weather, search, [a, b])``. A name used twice raises
    :class:`ToolDefinitionError`.
    """

    def __init__(self, *tools: ToolLike | Iterable[ToolLike]) -> None:
        self._tools: dict[str, Tool] = {}
        for item in tools:
            self._add_any(item)

    def _add_any(self, item: Any) -> None:
        if isinstance(item, Tool) or callable(item):
            self.add(item)
        elif isinstance(item, Iterable) and not isinstance(item, str | bytes | Mapping):
            for inner in item:
                self.add(inner)
        else:
            hint = " (build it with Tool.from_schema)" if isinstance(item, Mapping) else ""
            raise ToolDefinitionError(
                f"cannot use {type(item).__name__} as a tool{hint}: pass a Tool, a function, "
                "a Toolset or an iterable of them"
            )

    def add(self, item: ToolLike) -> Tool:
        """Add a tool (a plain function is wrapped with ``@tool``) and return it."""
        if not isinstance(item, Tool):
            if not callable(item):
                raise ToolDefinitionError(
                    f"cannot use {type(item).__name__} as a tool: pass a Tool or a function"
                )
            item = tool(item)
        if item.name in self._tools:
            raise ToolDefinitionError(
                f"duplicate tool name {item.name!r}: tool names in a Toolset must be unique; "
                "rename one with @tool(name=...)"
            )
        self._tools[item.name] = item
        return item

    def get(self, name: str) -> Tool | None:
        """The tool called ``name``, or ``None``."""
        return self._tools.get(name)

    @property
    def names(self) -> tuple[str, ...]:
        """Tool names, in the order the tools were added."""
        return tuple(self._tools)

    def __iter__(self) -> Iterator[Tool]:
        return iter(list(self._tools.values()))

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, Tool):
            return self._tools.get(item.name) is item
        return isinstance(item, str) and item in self._tools

    def describe(self) -> str:
        """The listing for a system prompt: one signature per line, with the estimated latency
        when it is known (``get_weather(city: str) - Current weather. (takes ~300 ms)``)."""
        lines = []
        for t in self._tools.values():
            line = t.signature()
            if t.estimated_latency_s is not None:
                line += f" (takes {latency_text(t.estimated_latency_s)})"
            lines.append(line)
        return "\n".join(lines)

    def specs(self) -> tuple[ToolSpec, ...]:
        """Every tool as a :class:`~counterpoint.core.calls.ToolSpec`, in order."""
        return tuple(t.spec() for t in self._tools.values())

    def openai_schemas(self) -> list[dict[str, Any]]:
        """Every tool in OpenAI's ``tools=[...]`` format."""
        return [t.openai_schema() for t in self._tools.values()]

    def __repr__(self) -> str:
        return f"Toolset({', '.join(self._tools)})"
