"""Events: every core kind round-trips through JSON; other packages register kinds of their own."""

from __future__ import annotations

import json
from typing import Literal, get_args

import pytest
from pydantic import Field, ValidationError

from counterpoint.core.events import (
    BaseEvent,
    CallFinished,
    CallProgress,
    CallStarted,
    CallWritten,
    Done,
    Event,
    InterruptInjected,
    KVReuse,
    ProtocolViolation,
    RunStarted,
    TokenEvent,
    TrapEvent,
    Usage,
    UserMessage,
    event_adapter,
    event_kinds,
    parse_event,
    register_event,
)


@register_event
class WorkflowTaskStarted(BaseEvent):
    """An event kind of "another package"."""

    kind: Literal["test_task_started"] = "test_task_started"
    task_id: str
    depends_on: list[str] = Field(default_factory=list)
    attempt: int = 1


R = "run-1"

SAMPLES: list[BaseEvent] = [
    RunStarted(
        run_id=R,
        t=0.0,
        name="agent",
        model="scripted",
        mode="async",
        prompt="Weather in Paris?",
        parent_run_id="wf-1",
        wall_time=1_750_000_000.25,
    ),
    TokenEvent(run_id=R, t=0.011, text=" Paris", token_id=42, index=3),
    CallWritten(
        run_id=R,
        t=0.2,
        call_id="c1",
        name="get_weather",
        arguments={"city": "Paris", "days": [1, 2], "opts": {"unit": "c"}},
        positional=["x", 2.5, None],
        raw='get_weather("x", 2.5, None, city="Paris")',
        offset=57,
        token_index=12,
        native=True,
    ),
    ProtocolViolation(
        run_id=R, t=0.3, call_id="c2", message="bad call: éè [END]", raw="[CALL] c2 [HEAD] ?? [END]"
    ),
    ProtocolViolation(run_id=R, t=0.31, message="only the runtime writes [INTR]"),
    UserMessage(run_id=R, t=0.4, text="also check Rome ✓"),
    CallStarted(run_id=R, t=0.21, call_id="c1", name="get_weather", arguments={"city": "Paris"}),
    CallProgress(run_id=R, t=0.25, call_id="c1", name="get_weather", message="half", fraction=0.5),
    CallFinished(
        run_id=R,
        t=0.5,
        call_id="c1",
        name="get_weather",
        ok=False,
        result='{"error": "nope"}',
        error="nope",
        started=0.21,
        duration_s=0.29,
        attempts=0,
    ),
    InterruptInjected(
        run_id=R, t=0.55, call_ids=["c1", "user"], text="[INTR] ...", tokens=17, duration_s=0.01
    ),
    TrapEvent(run_id=R, t=0.6, phase="exit", pending=["c3"], reason="sync_call"),
    KVReuse(
        run_id=R,
        t=0.05,
        policy="prefix",
        mode="reuse",
        prompt_tokens=120,
        reused_tokens=100,
        computed_tokens=20,
        ttft_s=0.015,
        attributes={"segments": ["system", "q"], "hit": True},
    ),
    Done(
        run_id=R,
        t=1.0,
        status="limit",
        text="Sunny.",
        error=None,
        usage=Usage(input_tokens=10, output_tokens=20, calls=2, interrupts=3),
        first_token_t=0.011,
        last_token_t=0.99,
    ),
]


def _core_classes() -> set[type[BaseEvent]]:
    return set(get_args(get_args(Event)[0]))


def test_the_samples_cover_every_core_kind() -> None:
    assert {type(e) for e in SAMPLES} == _core_classes()
    kinds = {e.kind for e in SAMPLES}
    assert {"call_written", "protocol_error", "user_interrupt", "kv_reuse"} <= kinds


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: f"{e.kind}")
def test_every_core_kind_round_trips_through_json(event: BaseEvent) -> None:
    text = event.model_dump_json()
    back = parse_event(text)
    assert type(back) is type(event)
    assert back == event
    assert parse_event(text.encode()) == event
    assert parse_event(json.loads(text)) == event
    # the discriminated union reads it back the same way
    assert event_adapter.validate_json(text) == event


def test_new_kinds_have_the_documented_names() -> None:
    kinds = event_kinds()
    assert kinds["call_written"] is CallWritten
    assert kinds["protocol_error"] is ProtocolViolation
    assert kinds["user_interrupt"] is UserMessage
    assert kinds["kv_reuse"] is KVReuse
    for cls in _core_classes():
        assert kinds[cls.model_fields["kind"].default] is cls


def test_events_are_frozen() -> None:
    event = UserMessage(run_id=R, t=0.1, text="x")
    with pytest.raises(ValidationError):
        event.text = "y"


def test_a_registered_kind_parses_back_to_its_class() -> None:
    event = WorkflowTaskStarted(run_id=R, t=2.5, task_id="t7", depends_on=["t1", "t2"])
    assert event.kind == "test_task_started"
    back = parse_event(event.model_dump_json())
    assert isinstance(back, WorkflowTaskStarted)
    assert back == event and back.depends_on == ["t1", "t2"] and back.attempt == 1
    assert event_kinds()["test_task_started"] is WorkflowTaskStarted


def test_registering_the_same_class_again_is_harmless() -> None:
    assert register_event(WorkflowTaskStarted) is WorkflowTaskStarted
    assert register_event(CallWritten) is CallWritten
    assert event_kinds()["test_task_started"] is WorkflowTaskStarted


def test_a_kind_registered_by_another_class_is_a_type_error() -> None:
    class Impostor(BaseEvent):
        kind: Literal["test_task_started"] = "test_task_started"
        other: int = 0

    with pytest.raises(TypeError, match="already registered by WorkflowTaskStarted"):
        register_event(Impostor)

    class CoreImpostor(BaseEvent):
        kind: Literal["token"] = "token"

    with pytest.raises(TypeError, match="TokenEvent"):
        register_event(CoreImpostor)
    # the registry is unchanged
    assert event_kinds()["test_task_started"] is WorkflowTaskStarted
    assert event_kinds()["token"] is TokenEvent


def test_a_class_without_a_literal_kind_is_a_type_error() -> None:
    class NoKind(BaseEvent):
        payload: str = ""

    with pytest.raises(TypeError, match="must declare kind"):
        register_event(NoKind)

    class TwoKinds(BaseEvent):
        kind: Literal["test_a", "test_b"] = "test_a"

    with pytest.raises(TypeError, match="must declare kind"):
        register_event(TwoKinds)
    assert "test_a" not in event_kinds() and "test_b" not in event_kinds()


def test_event_kinds_is_a_copy() -> None:
    kinds = event_kinds()
    kinds.pop("token")
    assert "token" in event_kinds()


def test_unknown_or_malformed_events_are_value_errors() -> None:
    with pytest.raises(ValueError, match="unknown event kind 'nope'"):
        parse_event({"kind": "nope", "run_id": R, "t": 0.0})
    with pytest.raises(ValueError, match="unknown event kind None"):
        parse_event({"run_id": R, "t": 0.0})
    with pytest.raises(ValueError, match="JSON object"):
        parse_event("[1, 2]")
    # a known kind with a missing field fails validation (a ValueError too)
    with pytest.raises(ValidationError):
        parse_event({"kind": "user_interrupt", "run_id": R, "t": 0.0})
