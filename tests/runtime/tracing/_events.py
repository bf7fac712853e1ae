"""Event streams of agent runs, built directly (as the session would emit them) for tracer tests."""

from __future__ import annotations

from dataclasses import dataclass

from counterpoint.core.events import (
    CallFinished,
    CallProgress,
    CallStarted,
    Done,
    Event,
    InterruptInjected,
    RunStarted,
    TokenEvent,
    TrapEvent,
    Usage,
)

WALL = 1_750_000_000.0


@dataclass(frozen=True)
class ToolCall:
    """A call dispatched at ``start`` that finishes at ``end`` (seconds since the run started)."""

    call_id: str
    name: str
    start: float
    end: float
    ok: bool = True


def run_events(
    run_id: str,
    *,
    name: str = "agent",
    model: str = "scripted",
    mode: str = "async",
    wall_time: float = WALL,
    tokens: int = 20,
    token_dt: float = 0.01,
    first_token: float = 0.05,
    calls: tuple[ToolCall, ...] = (ToolCall("c1", "get_weather", 0.08, 0.20),),
    trap: tuple[float, float] | None = None,
    status: str = "ok",
    parent_run_id: str | None = None,
) -> list[Event]:
    """A run's events in time order: tokens, calls, one interrupt per finished call, done."""
    events: list[Event] = []
    for i in range(tokens):
        t = first_token + i * token_dt
        events.append(TokenEvent(run_id=run_id, t=t, text=f" w{i}", token_id=100 + i, index=i))
    for c in calls:
        events.append(
            CallStarted(
                run_id=run_id, t=c.start, call_id=c.call_id, name=c.name, arguments={"q": c.call_id}
            )
        )
        events.append(
            CallProgress(
                run_id=run_id,
                t=(c.start + c.end) / 2,
                call_id=c.call_id,
                name=c.name,
                message="half",
                fraction=0.5,
            )
        )
        events.append(
            CallFinished(
                run_id=run_id,
                t=c.end,
                call_id=c.call_id,
                name=c.name,
                ok=c.ok,
                result='{"ok": true}' if c.ok else "error: it broke",
                error=None if c.ok else "it broke",
                started=c.start,
                duration_s=c.end - c.start,
            )
        )
        events.append(
            InterruptInjected(
                run_id=run_id,
                t=c.end + 0.01,
                call_ids=[c.call_id],
                text="[INTR]",
                tokens=7,
                duration_s=0.005,
            )
        )
    if trap is not None:
        events.append(TrapEvent(run_id=run_id, t=trap[0], phase="enter", pending=["c1"]))
        events.append(TrapEvent(run_id=run_id, t=trap[1], phase="exit", pending=[]))
    events.sort(key=lambda e: e.t)
    end = max([first_token + tokens * token_dt, *(c.end + 0.02 for c in calls), 0.0]) + 0.01
    start = RunStarted(
        run_id=run_id,
        t=0.0,
        name=name,
        model=model,
        mode=mode,
        prompt=f"prompt of {run_id}",
        parent_run_id=parent_run_id,
        wall_time=wall_time,
    )
    done = Done(
        run_id=run_id,
        t=end,
        status=status,  # type: ignore[arg-type]
        text=f"answer of {run_id}",
        usage=Usage(input_tokens=50, output_tokens=tokens, calls=len(calls), interrupts=len(calls)),
        first_token_t=first_token if tokens else None,
        last_token_t=first_token + (tokens - 1) * token_dt if tokens else None,
    )
    return [start, *events, done]
