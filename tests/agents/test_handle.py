"""Agent.start and its RunHandle: interrupt, iterate, result, cancel, tracer sinks."""

from __future__ import annotations

import asyncio

import pytest

from counterpoint.agents.agent import Agent, RunHandle
from counterpoint.core.calls import CallResult, UserInterrupt
from counterpoint.core.events import (
    BaseEvent,
    CallStarted,
    Done,
    InterruptInjected,
    TrapEvent,
    UserMessage,
)
from counterpoint.errors import CounterpointError
from counterpoint.testing.scripted import ScriptedModel
from counterpoint.tools.tool import tool


@tool
async def lookup(term: str) -> dict[str, str]:
    """Look a term up.

    Args:
        term: What to look up.
    """
    await asyncio.sleep(0.2)
    return {"term": term, "meaning": term.upper()}


@tool
async def forever(term: str) -> str:
    """Never finishes on its own.

    Args:
        term: anything.
    """
    await asyncio.sleep(60)
    return term


SCRIPT = [
    '[CALL] c1 [HEAD] lookup(term="kv") [END]\n[TRAP][END]',
    "Noted. [TRAP][END]",
    "Answer.",
]


class ListSink:
    def __init__(self) -> None:
        self.events: list[BaseEvent] = []

    def emit(self, event: BaseEvent) -> None:
        self.events.append(event)


def _agent(model: ScriptedModel, tracer: ListSink | bool = False) -> Agent:
    return Agent("tester", "Answer.", tools=[lookup, forever], model=model, tracer=tracer)


def _others() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


async def test_start_interrupt_iterate_and_result() -> None:
    model = ScriptedModel(SCRIPT)
    handle = _agent(model).start("What is kv?")
    assert isinstance(handle, RunHandle) and not handle.done
    seen: list[BaseEvent] = []
    async for event in handle:
        seen.append(event)
        first_trap = isinstance(event, TrapEvent) and event.phase == "enter"
        if first_trap and not any(isinstance(e, UserMessage) for e in seen):
            handle.interrupt("also Rome")
    assert seen[0].kind == "run_started" and seen[-1].kind == "done"
    assert sum(isinstance(e, Done) for e in seen) == 1
    result = await handle.result()
    assert handle.done
    assert result.status == "ok" and result.text == "Noted. Answer."
    assert {e.run_id for e in seen} == {handle.run_id} == {result.run_id}
    messages = [e for e in seen if isinstance(e, UserMessage)]
    assert [m.text for m in messages] == ["also Rome"]
    assert [e.call_ids for e in seen if isinstance(e, InterruptInjected)] == [["user"], ["c1"]]
    injected = model.decoders[0].injected
    assert isinstance(injected[0], UserInterrupt) and injected[0].text == "also Rome"
    assert isinstance(injected[1], CallResult) and injected[1].value == {
        "term": "kv",
        "meaning": "KV",
    }
    assert "[INTR] user [HEAD] also Rome [END]" in result.transcript
    # awaiting the handle itself gives the same result
    assert (await handle) is result
    with pytest.raises(CounterpointError, match="run is over"):
        handle.interrupt("too late")


async def test_every_iteration_sees_every_event() -> None:
    sink = ListSink()
    handle = _agent(ScriptedModel(SCRIPT, token_time_s=0.001), tracer=sink).start("q")

    async def collect() -> list[BaseEvent]:
        return [e async for e in handle]

    first = asyncio.create_task(collect())
    while not any(isinstance(e, CallStarted) for e in sink.events):
        await asyncio.sleep(0.005)
    second = asyncio.create_task(collect())  # joins mid-run: gets the past events too
    a, b = await asyncio.wait_for(asyncio.gather(first, second), 10)
    await handle.result()
    c = await collect()  # after the end
    assert a == b == c == sink.events
    assert a[0].kind == "run_started" and isinstance(a[-1], Done) and a[-1].status == "ok"
    assert len(a) > 10
    assert _others() == []


async def test_cancel_mid_run_ends_with_a_cancelled_done() -> None:
    model = ScriptedModel(['[CALL] c1 [HEAD] forever(term="x") [END]\n[TRAP][END]', "never"])
    handle = _agent(model).start("q")
    seen: list[BaseEvent] = []
    async for event in handle:
        seen.append(event)
        if isinstance(event, CallStarted):
            break
    await handle.cancel()
    await handle.cancel()  # idempotent
    assert handle.done
    events = [e async for e in handle]
    assert events[: len(seen)] == seen
    done = events[-1]
    assert isinstance(done, Done) and done.status == "cancelled"
    assert sum(isinstance(e, Done) for e in events) == 1
    assert "never" not in done.text
    with pytest.raises(asyncio.CancelledError):
        await handle.result()
    await asyncio.sleep(0)
    assert _others() == []
    with pytest.raises(CounterpointError):
        handle.interrupt("too late")


async def test_cancel_after_the_end_changes_nothing() -> None:
    handle = _agent(ScriptedModel("Plain.")).start("q")
    result = await handle.result()
    await handle.cancel()
    assert (await handle.result()) is result and result.status == "ok"


async def test_the_agents_tracer_sink_gets_the_events() -> None:
    sink = ListSink()
    handle = _agent(ScriptedModel(SCRIPT), tracer=sink).start("What is kv?")
    result = await handle
    assert result.status == "ok"
    kinds = [e.kind for e in sink.events]
    assert kinds[0] == "run_started" and kinds[-1] == "done"
    for kind in ("call_written", "call_started", "call_finished", "trap", "interrupt", "token"):
        assert kind in kinds
    assert {e.run_id for e in sink.events} == {result.run_id}
    assert [e async for e in handle] == sink.events
    # a second run gets its own events on the same sink
    second = await _agent(ScriptedModel("Plain."), tracer=sink).run("again")
    assert sink.events[-1].kind == "done" and sink.events[-1].run_id == second.run_id


async def test_an_interrupt_sent_right_after_start_comes_after_run_started() -> None:
    model = ScriptedModel("Answer.")
    handle = _agent(model).start("q")
    handle.interrupt("be brief")  # the run's task has not started yet
    events = [e async for e in handle]
    assert model.extensions == ["[INTR] user [HEAD] be brief [END]\n"]
    assert [e.kind for e in events[:2]] == ["run_started", "user_interrupt"]


def test_start_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError):
        _agent(ScriptedModel("x")).start("q")
