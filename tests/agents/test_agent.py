"""Agent: system prompt, run, stream and run_sync on ScriptedModel."""

from __future__ import annotations

import asyncio

import pytest

from counterpoint.agents.agent import Agent
from counterpoint.core.events import Event
from counterpoint.testing.scripted import ScriptedModel
from counterpoint.tools.tool import tool


@tool(estimated_latency=0.05)
async def lookup(term: str) -> dict[str, str]:
    """Look a term up.

    Args:
        term: What to look up.
    """
    await asyncio.sleep(0.05)
    return {"term": term, "meaning": term.upper()}


SCRIPT = ['[CALL] c1 [HEAD] lookup(term="kv") [END]', "KV means KV."]


def _agent(mode: str = "async") -> Agent:
    return Agent(
        "tester",
        "You answer questions.",
        tools=[lookup],
        model=ScriptedModel(SCRIPT),
        mode=mode,  # type: ignore[arg-type]
        tracer=False,
    )


def test_system_prompt_teaches_the_protocol_and_lists_tools() -> None:
    prompt = _agent().system_prompt()
    assert prompt.startswith("You answer questions.")
    for needle in (
        "[CALL]",
        "[INTR]",
        "[TRAP][END]",
        "lookup(",
        "What to look up",
        "slowest first",
    ):
        assert needle in prompt
    bare = Agent("plain", "Be brief.", model=ScriptedModel("x"), tracer=False).system_prompt()
    assert bare == "Be brief."


@pytest.mark.parametrize("mode", ["sync", "parallel", "async"])
async def test_run_returns_answer_calls_and_usage(mode: str) -> None:
    result = await _agent(mode).run("What is kv?")
    assert result.status == "ok"
    assert result.text == "KV means KV."
    assert [(r.call.name, r.call.arguments, r.ok) for r in result.calls] == [
        ("lookup", {"term": "kv"}, True)
    ]
    assert result.calls[0].value == {"term": "kv", "meaning": "KV"}
    assert result.usage.calls == 1 and result.usage.output_tokens > 0


async def test_stream_yields_typed_events_in_order() -> None:
    kinds = [e.kind async for e in _agent().stream("What is kv?")]
    assert kinds[0] == "run_started" and kinds[-1] == "done"
    assert kinds.index("call_started") < kinds.index("call_finished") < kinds.index("interrupt")
    assert "token" in kinds


async def test_closing_the_stream_early_cancels_the_run() -> None:
    agent = Agent("t", tools=[lookup], model=ScriptedModel(SCRIPT, token_time_s=0.01), tracer=False)
    seen: list[Event] = []
    stream = agent.stream("q")
    async for event in stream:
        seen.append(event)
        if event.kind == "call_started":
            break
    await stream.aclose()  # type: ignore[attr-defined]
    await asyncio.sleep(0)
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


def test_run_sync() -> None:
    assert _agent().run_sync("What is kv?").text == "KV means KV."


async def test_events_reach_a_custom_sink() -> None:
    class Sink:
        def __init__(self) -> None:
            self.events: list[Event] = []

        def emit(self, event: Event) -> None:
            self.events.append(event)

    sink = Sink()
    agent = Agent("t", tools=[lookup], model=ScriptedModel(SCRIPT), tracer=sink)
    result = await agent.run("q")
    assert {e.run_id for e in sink.events} == {result.run_id}
    assert sink.events[-1].kind == "done"
