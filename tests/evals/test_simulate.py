"""Tests for counterpoint.evals.simulate: BFCL function docs as tools with simulated latency."""

from __future__ import annotations

import json
import time

import pytest

from counterpoint.agents.agent import Agent
from counterpoint.errors import ConfigError
from counterpoint.evals.datasets import DEVELOPMENT_CATEGORIES, BFCLCase, load_category
from counterpoint.evals.simulate import (
    case_toolset,
    simulated_latency,
    simulated_result,
    simulated_tool,
)
from counterpoint.runtime.backends.base import Message
from counterpoint.testing.workloads import function_latency
from counterpoint.tools.tool import ToolArgumentError

DOC = {
    "name": "math.hypot",
    "description": "The Euclidean norm.",
    "parameters": {
        "type": "dict",
        "properties": {
            "x": {"type": "integer", "description": "The x coordinate."},
            "y": {"type": "integer", "description": "The y coordinate."},
            "z": {"type": "float", "description": "Optional z coordinate."},
        },
        "required": ["x", "y"],
    },
}


def test_latency_is_drawn_by_name_in_30_to_500_ms_and_scaled() -> None:
    names = [f"fn_{i}" for i in range(200)]
    latencies = [simulated_latency(n) for n in names]
    assert all(0.030 <= s <= 0.500 for s in latencies)
    assert len(set(latencies)) > 150  # spread over the range, not a constant
    assert simulated_latency("math.hypot") == simulated_latency("math.hypot")
    assert simulated_latency("math.hypot") == function_latency("math.hypot")
    assert simulated_latency("math.hypot", 0.05) == pytest.approx(
        0.05 * simulated_latency("math.hypot")
    )
    assert simulated_latency("math.hypot", 0) == 0
    with pytest.raises(ConfigError, match="latency scale"):
        simulated_latency("math.hypot", -1)


def test_result_is_deterministic_json_keyed_on_name_and_arguments() -> None:
    one = simulated_result("math.hypot", {"x": 4, "y": 5})
    assert one == simulated_result("math.hypot", {"y": 5, "x": 4})  # argument order is irrelevant
    assert one != simulated_result("math.hypot", {"x": 4, "y": 6})
    assert one != simulated_result("math.sqrt", {"x": 4, "y": 5})
    assert one["function"] == "math.hypot" and one["status"] == "ok"
    assert json.loads(json.dumps(one)) == one


async def test_tool_validates_against_the_doc_and_returns_the_simulated_result() -> None:
    tool = simulated_tool(DOC, latency_scale=0.01)
    assert tool.name == "math.hypot"
    assert tool.estimated_latency_s == pytest.approx(simulated_latency("math.hypot", 0.01))
    assert await tool.invoke({"x": 4, "y": 5}) == simulated_result("math.hypot", {"x": 4, "y": 5})
    with pytest.raises(ToolArgumentError, match="x"):
        tool.validate({"x": "four", "y": 5})
    with pytest.raises(ToolArgumentError, match="y"):
        tool.validate({"x": 4})
    assert tool.validate({"x": 4, "y": 5, "z": 1}) == {"x": 4, "y": 5, "z": 1}  # int for float


async def test_tool_takes_longer_for_a_slower_function() -> None:
    names = sorted((f"fn_{i}" for i in range(200)), key=simulated_latency)
    fast, slow = names[0], names[-1]
    assert simulated_latency(slow) > 4 * simulated_latency(fast)
    elapsed = {}
    for name in (fast, slow):
        tool = simulated_tool({**DOC, "name": name}, latency_scale=0.5)
        start = time.perf_counter()
        await tool.invoke({"x": 1, "y": 2})
        elapsed[name] = time.perf_counter() - start
    assert elapsed[slow] > elapsed[fast]


def test_flat_names_replace_dots_but_keep_latency_and_result() -> None:
    tool = simulated_tool(DOC, flat_name=True)
    assert tool.name == "math_hypot"
    assert tool.estimated_latency_s == simulated_latency("math.hypot")


async def test_flat_named_tool_returns_the_result_of_the_dotted_name() -> None:
    tool = simulated_tool(DOC, flat_name=True, latency_scale=0)
    assert await tool.invoke({"x": 1, "y": 2}) == simulated_result("math.hypot", {"x": 1, "y": 2})


def test_every_development_case_gets_a_toolset() -> None:
    for category in DEVELOPMENT_CATEGORIES:
        for case in load_category(category):
            tools = case_toolset(case)
            assert list(tools.names) == [doc["name"] for doc in case.functions], case.id
            assert all(t.estimated_latency_s is not None for t in tools)


def test_flat_names_that_collide_are_a_config_error() -> None:
    other = {**DOC, "name": "math_hypot"}
    case = BFCLCase(
        id="collide_0",
        category="hand",
        question=[[Message(role="user", content="?")]],
        functions=[DOC, other],
        possible_answer=[],
    )
    assert len(case_toolset(case)) == 2
    with pytest.raises(ConfigError, match="math_hypot"):
        case_toolset(case, flat_names=True)


def test_the_system_prompt_shows_the_estimated_latencies() -> None:
    case = load_category("parallel_multiple", limit=1)[0]
    prompt = Agent(tools=case_toolset(case), model="unused", tracer=False).system_prompt()
    for doc in case.functions:
        ms = round(simulated_latency(doc["name"]) * 1000)
        assert f"(takes ~{ms} ms)" in prompt
    assert "slowest first" in prompt
