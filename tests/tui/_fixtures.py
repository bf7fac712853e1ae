"""Shared pieces of the TUI tests: tools, scripts, agents and a fixed event sequence."""

from __future__ import annotations

import asyncio

from counterpoint.agents.agent import Agent
from counterpoint.core.events import (
    BaseEvent,
    CallFinished,
    CallStarted,
    CallWritten,
    Done,
    EventSink,
    InterruptInjected,
    RunStarted,
    TokenEvent,
    TrapEvent,
    Usage,
    UserMessage,
)
from counterpoint.testing.scripted import ScriptedModel, scripted_tokens
from counterpoint.tools.tool import tool


@tool
async def get_weather(city: str) -> dict[str, str]:
    """Current weather in a city.

    Args:
        city: The city.
    """
    await asyncio.sleep(0.05)
    return {"city": city, "sky": "clear"}


@tool
async def get_time(city: str) -> dict[str, str]:
    """Local time in a city.

    Args:
        city: The city.
    """
    await asyncio.sleep(0.08)
    return {"city": city, "time": "21:05"}


@tool
async def slow(term: str) -> str:
    """Takes a minute.

    Args:
        term: anything.
    """
    await asyncio.sleep(60)
    return term


TWO_CALLS = [
    '[CALL] c1 [HEAD] get_weather(city="Paris") [END] [CALL] c2 [HEAD] get_time(city="Tokyo") '
    "[END] Looking both up.\n[TRAP][END]",
    "Paris is **clear** and it is 21:05 in Tokyo.",
]


def agent(
    script: list[str], *, token_time_s: float = 0.0, tracer: EventSink | bool = False
) -> Agent:
    return Agent(
        "tui-test",
        "Answer.",
        tools=[get_weather, get_time, slow],
        model=ScriptedModel(script, token_time_s=token_time_s),
        tracer=tracer,
    )


def fixed_events() -> list[BaseEvent]:
    """A run with two parallel calls, an interrupt, a trap and a user message, at fixed times."""
    rid = "run-fixed"
    out: list[BaseEvent] = [
        RunStarted(
            run_id=rid,
            t=0.0,
            name="demo",
            model="scripted",
            mode="async",
            prompt="Weather in Paris and time in Tokyo?",
            wall_time=1_700_000_000.0,
        )
    ]
    t = 0.1
    text = ""

    def say(chunk: str) -> None:
        nonlocal t, text
        for i, piece in enumerate(scripted_tokens(chunk)):
            out.append(TokenEvent(run_id=rid, t=round(t, 3), text=piece, token_id=i, index=i))
            text += piece
            t += 0.02

    call1 = '[CALL] c1 [HEAD] get_weather(city="Paris") [END]'
    say(call1)
    out.append(
        CallWritten(
            run_id=rid,
            t=round(t, 3),
            call_id="c1",
            name="get_weather",
            arguments={"city": "Paris"},
            raw=call1,
            offset=len(text),
        )
    )
    out.append(
        CallStarted(
            run_id=rid, t=round(t, 3), call_id="c1", name="get_weather", arguments={"city": "Paris"}
        )
    )
    c1_start = round(t, 3)
    call2 = ' [CALL] c2 [HEAD] get_time(city="Tokyo") [END]'
    say(call2)
    out.append(
        CallWritten(
            run_id=rid,
            t=round(t, 3),
            call_id="c2",
            name="get_time",
            arguments={"city": "Tokyo"},
            raw=call2.strip(),
            offset=len(text),
        )
    )
    out.append(
        CallStarted(
            run_id=rid, t=round(t, 3), call_id="c2", name="get_time", arguments={"city": "Tokyo"}
        )
    )
    c2_start = round(t, 3)
    say(" Looking both up while they run.")
    out.append(UserMessage(run_id=rid, t=round(t, 3), text="also say hello"))
    out.append(TrapEvent(run_id=rid, t=round(t, 3), phase="enter", pending=["c1", "c2"]))
    t = 1.6
    out.append(
        CallFinished(
            run_id=rid,
            t=t,
            call_id="c1",
            name="get_weather",
            ok=True,
            result='{"city": "Paris", "sky": "clear"}',
            started=c1_start,
            duration_s=round(t - c1_start, 3),
        )
    )
    out.append(
        InterruptInjected(
            run_id=rid, t=1.65, call_ids=["c1"], text="...", tokens=12, duration_s=0.05
        )
    )
    t = 2.2
    out.append(
        CallFinished(
            run_id=rid,
            t=t,
            call_id="c2",
            name="get_time",
            ok=False,
            result="error: the clock is broken",
            error="the clock is broken",
            started=c2_start,
            duration_s=round(t - c2_start, 3),
        )
    )
    out.append(
        InterruptInjected(
            run_id=rid, t=2.25, call_ids=["c2"], text="...", tokens=9, duration_s=0.05
        )
    )
    out.append(TrapEvent(run_id=rid, t=2.25, phase="exit", pending=[]))
    t = 2.3
    say(" Hello! Paris is **clear**; the Tokyo clock failed.")
    out.append(
        Done(
            run_id=rid,
            t=round(t, 3),
            status="ok",
            text=text,
            usage=Usage(input_tokens=120, output_tokens=40, calls=2, interrupts=2),
            first_token_t=0.1,
            last_token_t=round(t - 0.02, 3),
        )
    )
    return out
