"""Toolset: grouping tools by unique name, describing them for a prompt."""

from __future__ import annotations

import pytest

from counterpoint.tools.tool import Tool, ToolDefinitionError, tool
from counterpoint.tools.toolset import Toolset


@tool(estimated_latency=0.3)
async def get_weather(city: str, unit: str = "c") -> str:
    """Current weather in a city.

    Args:
        city: The city.
        unit: The unit.
    """
    return city


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


SEARCH = Tool.from_schema(
    {
        "name": "web.search",
        "description": "Search the web.",
        "parameters": {"type": "dict", "properties": {"q": {"type": "string"}}, "required": ["q"]},
    },
    estimated_latency_s=2.5,
)


def test_build_from_tools_functions_and_iterables() -> None:
    tools = Toolset(get_weather, add, [SEARCH])
    assert tools.names == ("get_weather", "add", "web.search")
    assert len(tools) == 3
    assert [t.name for t in tools] == list(tools.names)
    wrapped = tools.get("add")
    assert isinstance(wrapped, Tool) and wrapped.name == "add"  # the function was wrapped
    assert tools.get("nope") is None
    assert "web.search" in tools and SEARCH in tools and "nope" not in tools
    assert Toolset(tools).names == tools.names  # a toolset inside a toolset


def test_add_returns_the_tool_and_rejects_duplicates() -> None:
    tools = Toolset()
    added = tools.add(add)
    assert isinstance(added, Tool) and added.name == "add"
    with pytest.raises(ToolDefinitionError, match="duplicate tool name 'add'"):
        tools.add(add)
    with pytest.raises(ToolDefinitionError, match="duplicate tool name 'get_weather'"):
        Toolset(get_weather, get_weather)
    tools.add(tool(name="add2")(add))
    assert tools.names == ("add", "add2")


def test_rejects_things_that_are_not_tools() -> None:
    with pytest.raises(ToolDefinitionError, match=r"Tool\.from_schema"):
        Toolset({"name": "f"})  # type: ignore[dict-item]
    with pytest.raises(ToolDefinitionError, match="cannot use str"):
        Toolset("get_weather")  # type: ignore[arg-type]
    with pytest.raises(ToolDefinitionError, match="cannot use int"):
        Toolset([1])  # type: ignore[list-item]


def test_describe_lists_signatures_with_latency() -> None:
    assert Toolset(get_weather, add, SEARCH).describe().splitlines() == [
        'get_weather(city: str, unit: str = "c") - Current weather in a city. (takes ~300 ms)',
        "add(a: int, b: int) - Add two numbers.",
        "web.search(q: str) - Search the web. (takes ~2.5 s)",
    ]
    assert Toolset().describe() == ""


def test_openai_schemas() -> None:
    schemas = Toolset(add, SEARCH).openai_schemas()
    assert [s["function"]["name"] for s in schemas] == ["add", "web.search"]
    assert all(s["type"] == "function" for s in schemas)
