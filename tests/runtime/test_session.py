"""The session loop in each mode, with ScriptedModel and real asyncio tools."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from counterpoint.core.events import (
    CallFinished,
    CallStarted,
    Done,
    Event,
    InterruptInjected,
    TrapEvent,
)
from counterpoint.runtime.backends.base import Message
from counterpoint.runtime.session import Limits, RunResult, Session
from counterpoint.testing.scripted import ScriptedModel
from counterpoint.tools.tool import tool
from counterpoint.tools.toolset import Toolset


@tool
async def slow(x: int) -> dict[str, int]:
    """A slow tool.

    Args:
        x: a number.
    """
    await asyncio.sleep(0.15)
    return {"slow": x}


@tool
async def fast(x: int) -> dict[str, int]:
    """A fast tool.

    Args:
        x: a number.
    """
    await asyncio.sleep(0.01)
    return {"fast": x}


@tool
def boom(x: int) -> int:
    """Always fails.

    Args:
        x: a number.
    """
    raise ValueError(f"no luck with {x}")


TOOLS = Toolset([slow, fast, boom])
MSGS = [Message(role="user", content="go")]
TWO_CALLS = [
    "[CALL] c1 [HEAD] slow(x=1) [END]\n[CALL] c2 [HEAD] fast(x=2) [END]\n[TRAP][END]",
    "Both done.",
]


async def _run(
    model: ScriptedModel, mode: str = "async", **kw: Any
) -> tuple[RunResult, list[Event]]:
    events: list[Event] = []
    session = Session(model, TOOLS, mode=mode, emit=events.append, **kw)  # type: ignore[arg-type]
    result = await session.run(MSGS)
    return result, events


def _of(events: list[Event], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


async def test_async_dispatches_at_once_and_injects_in_completion_order() -> None:
    model = ScriptedModel(TWO_CALLS, token_time_s=0.002)
    result, events = await _run(model, "async")
    assert result.status == "ok"
    assert result.text == "Both done."
    started = {e.call_id: e.t for e in _of(events, CallStarted)}
    finished = {e.call_id: e.t for e in _of(events, CallFinished)}
    # c2 was dispatched before c1 finished: the model did not wait
    assert started["c2"] < finished["c1"]
    # the fast call's result reached the model first
    injected = [i for e in _of(events, InterruptInjected) for i in e.call_ids]
    assert injected == ["c2", "c1"]
    assert [r.call.id for r in result.calls] == ["c2", "c1"]
    assert all(r.ok for r in result.calls)
    assert '[INTR] c1 [HEAD] {"slow": 1} [END]' in "".join(model.extensions)
    assert result.usage.calls == 2 and result.usage.interrupts == 2
    done = _of(events, Done)
    assert len(done) == 1 and done[0].status == "ok"


async def test_sync_runs_one_call_at_a_time() -> None:
    model = ScriptedModel(TWO_CALLS, token_time_s=0.002)
    result, events = await _run(model, "sync")
    started = {e.call_id: e.t for e in _of(events, CallStarted)}
    finished = {e.call_id: e.t for e in _of(events, CallFinished)}
    assert started["c2"] >= finished["c1"]
    assert [r.call.id for r in result.calls] == ["c1", "c2"]
    assert result.text == "Both done."


async def test_parallel_runs_the_turns_calls_together_at_its_end() -> None:
    model = ScriptedModel(TWO_CALLS, token_time_s=0.002)
    result, events = await _run(model, "parallel")
    started = {e.call_id: e.t for e in _of(events, CallStarted)}
    finished = {e.call_id: e.t for e in _of(events, CallFinished)}
    assert started["c2"] < finished["c1"]  # together
    traps = [e for e in _of(events, TrapEvent) if e.phase == "enter"]
    assert traps and traps[0].reason in {"trap", "turn_end"}
    # every result injected at once
    interrupts = _of(events, InterruptInjected)
    assert len(interrupts) == 1 and sorted(interrupts[0].call_ids) == ["c1", "c2"]
    assert result.text == "Both done."


async def test_async_is_faster_than_parallel_faster_than_sync() -> None:
    script = [
        "[CALL] a [HEAD] slow(x=1) [END] some words while it runs "
        "[CALL] b [HEAD] slow(x=2) [END] more words while they run [TRAP][END]",
        "Done.",
    ]
    walls = {}
    for mode in ("sync", "parallel", "async"):
        result, _ = await _run(ScriptedModel(script, token_time_s=0.01), mode)
        walls[mode] = result.wall_s
    assert walls["async"] < walls["parallel"] < walls["sync"]


async def test_interrupt_waits_for_the_end_of_a_call_block() -> None:
    long_args = ", ".join(f"k{i}={i}" for i in range(30))
    script = f"[CALL] c1 [HEAD] fast(x=1) [END] [CALL] c2 [HEAD] fast(x=2, {long_args}) [END] tail"
    model = ScriptedModel(script, token_time_s=0.003)
    result, _ = await _run(model, "async")
    transcript = result.transcript
    start = transcript.index("[CALL] c2")
    end = transcript.index("[END]", start)
    assert "[INTR]" not in transcript[start:end]  # nothing injected inside the block
    assert transcript.index("[INTR] c1") > end


async def test_errors_become_interrupts_and_the_session_goes_on() -> None:
    script = [
        "[CALL] e1 [HEAD] nope(x=1) [END]\n"
        '[CALL] e2 [HEAD] fast(x="not a number") [END]\n'
        "[CALL] e3 [HEAD] boom(x=3) [END]\n"
        "[CALL] e4 [HEAD] fast(x=os.system('ls')) [END]\n"
        "[TRAP][END]",
        "Recovered.",
    ]
    model = ScriptedModel(script)
    result, _ = await _run(model, "async")
    assert result.status == "ok" and result.text == "Recovered."
    injected = "".join(model.extensions)
    for cid in ("e1", "e2", "e3", "e4"):
        assert f"[INTR] {cid} [HEAD]" in injected
    assert "fast" in injected  # the unknown tool's error names what exists
    assert "ValueError: no luck with 3" in injected
    assert "Traceback" not in injected


async def test_model_writing_intr_is_a_protocol_error() -> None:
    model = ScriptedModel(["[INTR] c9 [HEAD] 42 [END] ok", "after"])
    result, _ = await _run(model, "async")
    assert result.status == "ok"
    assert "[INTR]" in "".join(model.extensions)  # an error interrupt came back


async def test_end_of_stream_with_pending_calls_waits_by_default() -> None:
    model = ScriptedModel(["[CALL] c1 [HEAD] slow(x=1) [END]", "Got it."])
    result, events = await _run(model, "async")
    assert result.text == "Got it."
    assert any(e.reason == "eos" for e in _of(events, TrapEvent))


async def test_end_of_stream_with_pending_calls_can_cancel() -> None:
    model = ScriptedModel(["[CALL] c1 [HEAD] slow(x=1) [END]", "never"])
    result, events = await _run(model, "async", pending_policy="cancel")
    assert "never" not in result.text
    assert not _of(events, InterruptInjected)
    await asyncio.sleep(0)
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_cancelling_a_run_cancels_its_calls() -> None:
    model = ScriptedModel(["[CALL] c1 [HEAD] slow(x=1) [END] [CALL] c2 [HEAD] slow(x=2) [END]"])
    events: list[Event] = []
    session = Session(model, TOOLS, mode="async", emit=events.append)
    task = asyncio.create_task(session.run(MSGS))
    while not _of(events, CallStarted):
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
    assert _of(events, Done)[-1].status == "cancelled"


async def test_call_limit_and_token_limit() -> None:
    script = " ".join(f"[CALL] c{i} [HEAD] fast(x={i}) [END]" for i in range(4)) + " end"
    model = ScriptedModel(script)
    result, _ = await _run(model, "async", limits=Limits(max_calls=2))
    assert result.usage.calls == 2
    assert "call limit" in "".join(model.extensions)
    long = ScriptedModel(" ".join(["word"] * 50))
    result, _ = await _run(long, "async", limits=Limits(max_tokens=10))
    assert result.status == "limit" and result.usage.output_tokens == 10


@pytest.mark.parametrize("mode", ["sync", "parallel", "async"])
async def test_a_call_repeated_past_the_bound_is_not_run_again(mode: str) -> None:
    """A loop of the same call: the first two copies run, the third comes back as an error
    naming the first, and the model is told; other calls still run."""
    calls = ["fast(x=1)", "fast(x=1)", "fast(x=1)", "fast(x=2)"]
    blocks = "".join(f"[CALL] c{i} [HEAD] {body} [END]\n" for i, body in enumerate(calls, 1))
    model = ScriptedModel([blocks + "[TRAP][END]", "Done."])
    result, events = await _run(model, mode)
    assert [e.call_id for e in _of(events, CallStarted)] == ["c1", "c2", "c4"]
    refused = next(e for e in _of(events, CallFinished) if e.call_id == "c3")
    assert not refused.ok and "first as c1" in (refused.error or "")
    assert "first as c1" in "".join(model.extensions)  # the model is told
    assert result.text.endswith("Done.")


async def test_identical_calls_are_unbounded_when_asked() -> None:
    script = " ".join(f"[CALL] c{i} [HEAD] fast(x=1) [END]" for i in range(1, 5)) + " end"
    result, events = await _run(
        ScriptedModel(script), "async", limits=Limits(max_identical_calls=None)
    )
    assert len(_of(events, CallStarted)) == 4 and all(r.ok for r in result.calls)


async def test_no_tools_plain_generation() -> None:
    result, _ = await _run(ScriptedModel("Just an answer."), "async")
    assert result.text == "Just an answer." and result.calls == []
    assert result.first_token_t is not None and result.latency_s >= 0


async def test_session_concurrency_limit_queues_calls() -> None:
    script = [" ".join(f"[CALL] c{i} [HEAD] slow(x={i}) [END]" for i in range(3)), "ok"]
    result, events = await _run(ScriptedModel(script), "async", limits=Limits(max_concurrency=1))
    finished = sorted(e.t for e in _of(events, CallFinished))
    assert len(finished) == 3 and all(r.ok for r in result.calls)
    # one at a time: each call ends at least one tool latency after the previous one
    assert finished[1] - finished[0] >= 0.1 and finished[2] - finished[1] >= 0.1


async def test_tool_without_timeout_gets_the_sessions() -> None:
    script = ["[CALL] c1 [HEAD] slow(x=1) [END]", "after"]
    model = ScriptedModel(script)
    result, _ = await _run(model, "async", limits=Limits(call_timeout_s=0.02))
    assert result.text == "after"
    assert result.calls[0].ok is False and "timed out" in (result.calls[0].error or "")
