"""Typed runtime events.

Events are the single source of truth for the terminal UI, traces and evals: each is a pydantic
model with a ``kind`` discriminator. ``t`` is seconds since the run started (monotonic clock);
``run_id`` ties an event to its run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

__all__ = [
    "CallFinished",
    "CallProgress",
    "CallStarted",
    "Done",
    "Event",
    "EventSink",
    "InterruptInjected",
    "RunStarted",
    "TokenEvent",
    "TrapEvent",
    "Usage",
    "event_adapter",
]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)

    run_id: str
    t: float = Field(description="Seconds since the run started (monotonic).")


class RunStarted(_Event):
    kind: Literal["run_started"] = "run_started"
    name: str
    model: str
    mode: str
    prompt: str
    parent_run_id: str | None = None
    wall_time: float = Field(description="Unix time at the start of the run.")


class TokenEvent(_Event):
    kind: Literal["token"] = "token"
    text: str
    token_id: int
    index: int


class CallStarted(_Event):
    kind: Literal["call_started"] = "call_started"
    call_id: str
    name: str
    arguments: dict[str, Any]


class CallProgress(_Event):
    kind: Literal["call_progress"] = "call_progress"
    call_id: str
    name: str
    message: str
    fraction: float | None = None


class CallFinished(_Event):
    kind: Literal["call_finished"] = "call_finished"
    call_id: str
    name: str
    ok: bool
    result: str = Field(description="The text injected into the model's context.")
    error: str | None = None
    started: float
    duration_s: float
    attempts: int = 1


class InterruptInjected(_Event):
    kind: Literal["interrupt"] = "interrupt"
    call_ids: list[str]
    text: str
    tokens: int
    duration_s: float = Field(description="Time spent prefilling the interrupt text.")


class TrapEvent(_Event):
    kind: Literal["trap"] = "trap"
    phase: Literal["enter", "exit"]
    pending: list[str]
    reason: Literal["trap", "eos", "turn_end", "sync_call"] = "trap"


class Usage(BaseModel):
    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0
    interrupts: int = 0


class Done(_Event):
    kind: Literal["done"] = "done"
    status: Literal["ok", "error", "cancelled", "limit"]
    text: str
    error: str | None = None
    usage: Usage = Usage()
    first_token_t: float | None = None
    last_token_t: float | None = None


Event = Annotated[
    RunStarted
    | TokenEvent
    | CallStarted
    | CallProgress
    | CallFinished
    | InterruptInjected
    | TrapEvent
    | Done,
    Field(discriminator="kind"),
]

event_adapter: TypeAdapter[Event] = TypeAdapter(Event)


class EventSink(Protocol):
    """Anything that receives events: a tracer, the TUI, a test's list."""

    def emit(self, event: Event) -> None: ...


EventCallback = Callable[[Event], None]
