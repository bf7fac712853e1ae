"""End to end on the real embedded model: a session with tools, and policy-driven replay."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from counterpoint.agents.agent import Agent
from counterpoint.core.events import Event, InterruptInjected
from counterpoint.runtime.backends.base import Message, SamplingParams
from counterpoint.runtime.backends.transformers import TransformersModel
from counterpoint.runtime.session import Limits, Session
from counterpoint.testing.replay import ReplayModel
from counterpoint.testing.workloads import IdealPolicy, Task, task_toolset
from counterpoint.tools.tool import tool

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def model() -> Iterator[TransformersModel]:
    m = TransformersModel.load()
    yield m
    m.close()


@tool(estimated_latency=0.3)
async def get_weather(city: str) -> dict[str, object]:
    """Current weather in a city.

    Args:
        city: The city's name.
    """
    await asyncio.sleep(0.3)
    return {"city": city, "temp_c": 17}


async def test_agent_on_the_embedded_model_never_writes_intr(model: TransformersModel) -> None:
    events: list[Event] = []
    agent = Agent(
        "e2e",
        "You are a travel assistant.",
        tools=[get_weather],
        model=model,
        params=SamplingParams(max_tokens=60),
        limits=Limits(max_tokens=60),
        tracer=False,
    )
    result = await agent.session(emit=events.append).run(
        agent.messages("What is the weather in Paris and in Tokyo?")
    )
    assert result.status in {"ok", "limit"}
    assert result.usage.output_tokens > 0 and events[-1].kind == "done"
    assert "[INTR]" not in result.generated  # the logits processor forbids it
    # whatever the small model chose to call went through the executor and came back
    for r in result.calls:
        assert f"[INTR] {r.call.id} [HEAD]" in result.transcript


@pytest.mark.parametrize("stateless", [False, True])
async def test_policy_replay_drives_real_forward_passes(
    model: TransformersModel, stateless: bool
) -> None:
    task = Task("t0", (("fn_01",), ("fn_02", "fn_03")))
    replay = ReplayModel(model, policy_factory=lambda: IdealPolicy(task), stateless=stateless)
    tools = task_toolset(task)
    session = Session(replay, tools, mode="async")
    result = await session.run([Message(role="user", content="Run the task.")])
    assert result.status == "ok"
    assert sorted(r.call.id for r in result.calls) == ["c0_0", "c1_0", "c1_1"]
    assert all(r.ok for r in result.calls)
    # the chain's second call was written only after its first result arrived
    assert result.transcript.index("[INTR] c1_0") < result.transcript.index("[CALL] c1_1")
    assert result.text.endswith("here is the answer.")


async def test_a_user_interrupt_reaches_the_embedded_model(model: TransformersModel) -> None:
    agent = Agent(
        "e2e-interrupt",
        "You are a travel assistant.",
        tools=[get_weather],
        model=model,
        params=SamplingParams(max_tokens=40),
        limits=Limits(max_tokens=40),
        tracer=False,
    )
    handle = agent.start("Tell me about Paris in three sentences.")
    seen: list[Event] = []
    async for event in handle:
        seen.append(event)
        if event.kind == "token" and len([e for e in seen if e.kind == "token"]) == 3:
            handle.interrupt("Also mention Rome.")
    result = await handle.result()
    assert result.status in {"ok", "limit"}
    kinds = [e.kind for e in seen]
    assert "user_interrupt" in kinds
    injected = [e for e in seen if isinstance(e, InterruptInjected)]
    assert injected and injected[0].call_ids == ["user"] and injected[0].tokens > 0
    assert "[INTR] user [HEAD] Also mention Rome. [END]" in result.transcript
    # generation went on after the interrupt: some tokens come after it
    assert kinds.index("interrupt") < len(kinds) - 2 and kinds[-1] == "done"
