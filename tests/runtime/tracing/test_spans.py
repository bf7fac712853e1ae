"""Every event kind becomes the right run row and span."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from counterpoint.core.events import (
    CallFinished,
    CallStarted,
    Done,
    Event,
    RunStarted,
    TokenEvent,
    TrapEvent,
    Usage,
)
from counterpoint.runtime.tracing import (
    RunStatus,
    SpanKind,
    SpanRecord,
    SpanStatus,
    SQLiteTracer,
    TraceStore,
    query,
)
from counterpoint.runtime.tracing._derive import MAX_TEXT

from ._events import WALL, ToolCall, run_events


@pytest.fixture
def tracer() -> Iterator[SQLiteTracer]:
    with SQLiteTracer(":memory:", linger_s=0) as t:
        yield t


def _record(tracer: SQLiteTracer, events: list[Event]) -> list[SpanRecord]:
    for e in events:
        tracer.emit(e)
    tracer.flush()
    return query.spans_of(tracer.store, events[0].run_id)


def _one(spans: list[SpanRecord], kind: SpanKind) -> SpanRecord:
    found = [s for s in spans if s.kind == kind]
    assert len(found) == 1, [(s.kind, s.name) for s in spans]
    return found[0]


def test_run_row_from_run_started_and_done(tracer: SQLiteTracer) -> None:
    events = run_events("r1", name="weather", model="smol", mode="parallel", parent_run_id="wf1")
    _record(tracer, events)
    run = query.get_run(tracer.store, "r1")
    done = events[-1]
    assert isinstance(done, Done)
    assert (run.name, run.model, run.mode, run.status) == ("weather", "smol", "parallel", "ok")
    assert run.parent_run_id == "wf1"
    assert run.prompt == "prompt of r1" and run.output == "answer of r1"
    assert run.started_at == WALL
    assert run.duration_s == pytest.approx(done.t)
    assert run.ended_at == pytest.approx(WALL + done.t)
    assert run.first_token_s == pytest.approx(0.05)
    assert (run.input_tokens, run.output_tokens, run.calls, run.interrupts) == (50, 20, 1, 1)
    assert run.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert run.attributes["gen_ai.agent.name"] == "weather"
    assert run.attributes["gen_ai.request.model"] == "smol"


def test_a_run_without_done_is_running(tracer: SQLiteTracer) -> None:
    events = run_events("r1")[:-1]
    spans = _record(tracer, events)
    assert query.get_run(tracer.store, "r1").status == RunStatus.RUNNING
    generation = _one(spans, SpanKind.GENERATION)
    assert generation.status == SpanStatus.RUNNING and generation.end_s is None


def test_generation_span_counts_tokens(tracer: SQLiteTracer) -> None:
    spans = _record(tracer, run_events("r1", tokens=37, first_token=0.2))
    gen = _one(spans, SpanKind.GENERATION)
    assert gen.parent_id is None
    assert gen.name == "chat scripted"
    assert gen.start_s == pytest.approx(0.2)
    assert gen.status == SpanStatus.OK
    attrs = gen.attributes
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "scripted"
    assert attrs["gen_ai.usage.output_tokens"] == 37
    assert attrs["gen_ai.usage.input_tokens"] == 50
    assert attrs["counterpoint.token_events"] == 37
    assert gen.start_time == pytest.approx(WALL + 0.2)
    assert gen.end_s is not None and gen.duration_s == pytest.approx(gen.end_s - 0.2)


def test_token_events_are_not_stored_one_per_row(tracer: SQLiteTracer) -> None:
    _record(tracer, run_events("r1", tokens=500, calls=()))
    with tracer.store.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM spans").scalar() == 1


def test_tool_call_span(tracer: SQLiteTracer) -> None:
    calls = (
        ToolCall("c1", "get_weather", 0.1, 0.4),
        ToolCall("c2", "get_time", 0.15, 0.2, ok=False),
    )
    spans = _record(tracer, run_events("r1", calls=calls))
    gen = _one(spans, SpanKind.GENERATION)
    tools = {s.name: s for s in spans if s.kind == SpanKind.TOOL_CALL}
    assert set(tools) == {"get_weather", "get_time"}
    weather, time_ = tools["get_weather"], tools["get_time"]
    assert weather.parent_id == gen.id
    assert (weather.start_s, weather.end_s) == pytest.approx((0.1, 0.4))
    assert weather.duration_s == pytest.approx(0.3)
    assert weather.status == SpanStatus.OK
    a = weather.attributes
    assert a["gen_ai.operation.name"] == "execute_tool"
    assert a["gen_ai.tool.name"] == "get_weather"
    assert a["gen_ai.tool.call.id"] == "c1"
    assert a["gen_ai.tool.call.arguments"] == {"q": "c1"}
    assert a["gen_ai.tool.call.result"] == '{"ok": true}'
    assert a["counterpoint.ok"] is True and a["counterpoint.attempts"] == 1
    assert a["counterpoint.progress.count"] == 1
    assert a["counterpoint.progress.message"] == "half"
    assert time_.status == SpanStatus.ERROR
    assert time_.attributes["counterpoint.error"] == "it broke"
    assert time_.attributes["error.type"] == "tool_error"


def test_interrupt_span_covers_the_prefill(tracer: SQLiteTracer) -> None:
    spans = _record(tracer, run_events("r1", calls=(ToolCall("c7", "f", 0.1, 0.3),)))
    intr = _one(spans, SpanKind.INTERRUPT)
    assert intr.name == "c7"
    assert intr.end_s == pytest.approx(0.31)
    assert intr.start_s == pytest.approx(0.305)
    a = intr.attributes
    assert a["counterpoint.interrupt.call_ids"] == ["c7"]
    assert a["counterpoint.interrupt.tokens"] == 7
    assert a["counterpoint.interrupt.prefill_s"] == pytest.approx(0.005)


def test_trap_span_from_enter_to_exit(tracer: SQLiteTracer) -> None:
    spans = _record(tracer, run_events("r1", trap=(0.25, 0.4)))
    trap = _one(spans, SpanKind.TRAP)
    assert (trap.start_s, trap.end_s, trap.status) == (0.25, 0.4, SpanStatus.OK)
    assert trap.attributes["counterpoint.trap.pending"] == ["c1"]
    assert trap.attributes["counterpoint.trap.reason"] == "trap"


def test_spans_left_open_at_done_are_unfinished(tracer: SQLiteTracer) -> None:
    r = "r1"
    events: list[Event] = [
        RunStarted(run_id=r, t=0, name="a", model="m", mode="async", prompt="p", wall_time=WALL),
        TokenEvent(run_id=r, t=0.1, text="x", token_id=1, index=0),
        CallStarted(run_id=r, t=0.2, call_id="c1", name="slow", arguments={}),
        TrapEvent(run_id=r, t=0.3, phase="enter", pending=["c1"]),
        Done(run_id=r, t=0.5, status="cancelled", text="", usage=Usage(calls=1)),
    ]
    spans = _record(tracer, events)
    call, trap = _one(spans, SpanKind.TOOL_CALL), _one(spans, SpanKind.TRAP)
    assert (call.status, call.end_s) == (SpanStatus.UNFINISHED, 0.5)
    assert (trap.status, trap.end_s) == (SpanStatus.UNFINISHED, 0.5)
    assert query.get_run(tracer.store, r).status == "cancelled"


def test_a_finish_without_start_and_an_exit_without_enter_still_make_spans(
    tracer: SQLiteTracer,
) -> None:
    r = "r1"
    events: list[Event] = [
        RunStarted(run_id=r, t=0, name="a", model="m", mode="sync", prompt="p", wall_time=WALL),
        CallFinished(
            run_id=r,
            t=0.3,
            call_id="c9",
            name="nope",
            ok=False,
            result="unknown tool",
            error="unknown tool",
            started=0.3,
            duration_s=0.0,
        ),
        TrapEvent(run_id=r, t=0.4, phase="exit", pending=[], reason="sync_call"),
        Done(run_id=r, t=0.5, status="ok", text=""),
    ]
    spans = _record(tracer, events)
    call = _one(spans, SpanKind.TOOL_CALL)
    assert (call.name, call.status, call.duration_s) == ("nope", SpanStatus.ERROR, 0.0)
    assert call.parent_id is None  # no generation span: no token was generated
    trap = _one(spans, SpanKind.TRAP)
    assert (trap.name, trap.start_s, trap.end_s) == ("sync_call", 0.4, 0.4)


def test_events_of_an_unknown_run_make_an_implicit_run(tracer: SQLiteTracer) -> None:
    tracer.emit(TokenEvent(run_id="ghost", t=1.0, text="x", token_id=1, index=0))
    tracer.emit(Done(run_id="ghost", t=2.0, status="error", text="", error="boom"))
    tracer.flush()
    run = query.get_run(tracer.store, "ghost")
    assert (run.name, run.status, run.error) == ("(unknown)", "error", "boom")
    assert run.attributes["counterpoint.implicit_run"] is True
    assert _one(query.spans_of(tracer.store, "ghost"), SpanKind.GENERATION).status == "error"


def test_arguments_that_are_not_json_and_long_results_are_kept_safely(
    tracer: SQLiteTracer,
) -> None:
    r = "r1"
    events: list[Event] = [
        RunStarted(run_id=r, t=0, name="a", model="m", mode="async", prompt="p", wall_time=WALL),
        CallStarted(
            run_id=r,
            t=0.1,
            call_id="c1",
            name="f",
            arguments={"s": {3, 1}, "b": b"\x00\xff", "t": (1, 2), "c": 1j},
        ),
        CallFinished(
            run_id=r,
            t=0.2,
            call_id="c1",
            name="f",
            ok=True,
            result="x" * (MAX_TEXT + 500),
            started=0.1,
            duration_s=0.1,
        ),
        Done(run_id=r, t=0.3, status="ok", text=""),
    ]
    call = _one(_record(tracer, events), SpanKind.TOOL_CALL)
    args = call.attributes["gen_ai.tool.call.arguments"]
    assert sorted(args["s"]) == [1, 3] and args["t"] == [1, 2] and args["c"] == "1j"
    assert isinstance(args["b"], str)
    result = call.attributes["gen_ai.tool.call.result"]
    assert result.startswith("x" * MAX_TEXT) and result.endswith(f"[{MAX_TEXT + 500} chars]")


def test_close_marks_open_runs_incomplete() -> None:
    store = TraceStore(":memory:")  # owned here, so it outlives the tracer
    tracer = SQLiteTracer(store=store)
    for e in run_events("r1", trap=(0.1, 0.5))[:-1]:
        tracer.emit(e)
    tracer.close()
    run = query.get_run(store, "r1")
    assert run.status == RunStatus.INCOMPLETE and run.duration_s is not None
    spans = query.spans_of(store, "r1")
    assert all(s.end_s is not None for s in spans)
    assert _one(spans, SpanKind.GENERATION).status == SpanStatus.UNFINISHED
    store.close()


def test_direct_spans_get_wall_times_from_their_run(tracer: SQLiteTracer) -> None:
    _record(tracer, run_events("r1"))
    span_id = tracer.span(
        "r1", SpanKind.KV_REUSE, "question", 0.01, 0.02, attributes={"counterpoint.kv.tokens": 12}
    )
    orphan = tracer.span("elsewhere", SpanKind.WORKFLOW_TASK, "t1", 1.0, None)
    tracer.flush()
    (kv,) = query.spans_of(tracer.store, "r1", kind=SpanKind.KV_REUSE)
    assert kv.id == span_id
    assert kv.start_time == pytest.approx(WALL + 0.01)
    assert kv.attributes == {"counterpoint.kv.tokens": 12}
    (task,) = query.spans_of(tracer.store, "elsewhere")
    assert task.id == orphan
    assert (task.status, task.end_s, task.start_time) == (SpanStatus.RUNNING, None, None)


def test_direct_spans_of_a_run_known_only_from_the_database(tracer: SQLiteTracer) -> None:
    _record(tracer, run_events("old"))
    # a second tracer on the same (shared) store has never seen run "old"
    other = SQLiteTracer(store=tracer.store, linger_s=0)
    other.span("old", SpanKind.EVAL_CASE, "case-1", 0.5, 0.7)
    other.close()
    (case,) = query.spans_of(tracer.store, "old", kind=SpanKind.EVAL_CASE)
    assert case.start_time == pytest.approx(WALL + 0.5)
