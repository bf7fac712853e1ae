"""The tracer and the new event kinds: kv_reuse spans, point events, and a never-blocked loop."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Literal

from counterpoint.core.events import (
    BaseEvent,
    CallWritten,
    Done,
    KVReuse,
    ProtocolViolation,
    RunStarted,
    TokenEvent,
    Usage,
    UserMessage,
    parse_event,
    register_event,
)
from counterpoint.runtime.backends.base import Message
from counterpoint.runtime.session import Session
from counterpoint.runtime.tracing import (
    CommitReport,
    RunStatus,
    SpanKind,
    SpanStatus,
    SQLiteTracer,
    TraceStore,
    query,
)
from counterpoint.testing.scripted import ScriptedModel
from counterpoint.tools.tool import tool
from counterpoint.tools.toolset import Toolset

from ._events import WALL


@register_event
class PatchApplied(BaseEvent):
    """An event kind of another package."""

    kind: Literal["test_patch_applied"] = "test_patch_applied"
    path: str
    lines: list[int]
    ok: bool = True


def _run_events(run_id: str) -> list[BaseEvent]:
    return [
        RunStarted(
            run_id=run_id,
            t=0.0,
            name="agent",
            model="scripted",
            mode="async",
            prompt="p",
            wall_time=WALL,
        ),
        KVReuse(
            run_id=run_id,
            t=0.0125,
            policy="prefix",
            mode="reuse",
            prompt_tokens=200,
            reused_tokens=150,
            computed_tokens=50,
            ttft_s=0.0375,
            attributes={"segments": ["system", "question"], "hit_rate": 0.75},
        ),
        TokenEvent(run_id=run_id, t=0.05, text=" a", token_id=1, index=0),
        CallWritten(
            run_id=run_id,
            t=0.1,
            call_id="c1",
            name="get_weather",
            arguments={"city": "Paris", "days": [1, 2]},
            raw='get_weather(city="Paris", days=[1, 2])',
            offset=44,
            token_index=9,
        ),
        ProtocolViolation(
            run_id=run_id, t=0.2, call_id="c2", message="bad call", raw="[CALL] c2 [HEAD] ?? [END]"
        ),
        UserMessage(run_id=run_id, t=0.3, text="also Rome"),
        PatchApplied(run_id=run_id, t=0.4, path="src/x.py", lines=[3, 4, 9]),
        Done(
            run_id=run_id,
            t=0.5,
            status="ok",
            text="done",
            usage=Usage(input_tokens=200, output_tokens=1, calls=1, interrupts=1),
            first_token_t=0.05,
            last_token_t=0.05,
        ),
    ]


def test_new_kinds_become_kv_reuse_and_event_spans(tmp_path: Path) -> None:
    path = tmp_path / "traces.db"
    events = _run_events("r1")
    with SQLiteTracer(path, linger_s=0) as tracer:
        for e in events:
            tracer.emit(e)
        tracer.flush()
        assert tracer.committed == len(events) and tracer.failed == 0
    with TraceStore(path) as store:
        spans = query.spans_of(store, "r1")
        run = query.get_run(store, "r1")
    assert run.status == RunStatus.OK
    gen = [s for s in spans if s.kind == SpanKind.GENERATION]
    assert len(gen) == 1

    kv = [s for s in spans if s.kind == SpanKind.KV_REUSE]
    assert len(kv) == 1
    kv_event = events[1]
    assert isinstance(kv_event, KVReuse)
    assert kv[0].name == "kv_reuse prefix"
    assert kv[0].start_s == kv_event.t
    assert kv[0].end_s == kv_event.t + kv_event.ttft_s
    assert kv[0].status == SpanStatus.OK
    assert kv[0].attributes == {"segments": ["system", "question"], "hit_rate": 0.75}
    assert kv[0].start_time == WALL + kv_event.t

    points = [s for s in spans if s.kind == SpanKind.EVENT]
    expected = [
        e
        for e in events
        if e.kind in {"call_written", "protocol_error", "user_interrupt", "test_patch_applied"}
    ]
    assert [s.name for s in points] == [e.kind for e in expected]
    for span, event in zip(points, expected, strict=True):
        assert span.start_s == span.end_s == event.t
        assert span.duration_s == 0.0
        assert span.status == SpanStatus.OK
        back = parse_event(span.attributes["counterpoint.event"])
        assert type(back) is type(event)
        assert back == event
        # parented under the generation span when there is one
        assert span.parent_id == gen[0].id
    # nothing else became a span
    assert {s.kind for s in spans} == {SpanKind.GENERATION, SpanKind.KV_REUSE, SpanKind.EVENT}


@tool
async def fast(x: int) -> int:
    """Add one.

    Args:
        x: a number.
    """
    return x + 1


async def test_a_session_run_traces_its_new_events(tmp_path: Path) -> None:
    script = [
        "[CALL] c1 [HEAD] fast(x=1) [END] [CALL] c2 [HEAD] fast(x=) [END] [TRAP][END]",
        "Two.",
    ]
    path = tmp_path / "traces.db"
    seen: list[BaseEvent] = []
    with SQLiteTracer(path) as tracer:
        session = Session(ScriptedModel(script), Toolset([fast]), emit=seen.append)
        session.bus.subscribe(tracer)
        session.interrupt("hello")
        result = await session.run([Message(role="user", content="go")])
        await tracer.aflush()
        spans = query.spans_of(tracer.store, result.run_id, kind=SpanKind.EVENT)
    assert result.status == "ok"
    assert session.bus.detached == []
    points = [e for e in seen if e.kind in {"call_written", "protocol_error", "user_interrupt"}]
    assert [e.kind for e in points] == ["user_interrupt", "call_written", "protocol_error"]
    assert [parse_event(s.attributes["counterpoint.event"]) for s in spans] == points


async def test_emit_on_the_event_loop_never_blocks(tmp_path: Path) -> None:
    gate = threading.Event()
    blocked = threading.Event()
    reports: list[CommitReport] = []

    def on_commit(report: CommitReport) -> None:
        reports.append(report)
        if not blocked.is_set():  # hold the writer after its first batch
            blocked.set()
            gate.wait(5.0)  # bounded: a blocking emit would make the test fail, not hang

    tracer = SQLiteTracer(
        tmp_path / "t.db", max_queue=2, max_batch=1, linger_s=0, on_commit=on_commit
    )
    run_id = "loop"
    events: list[BaseEvent] = [
        RunStarted(
            run_id=run_id, t=0.0, name="a", model="m", mode="async", prompt="p", wall_time=WALL
        )
    ]
    events += [
        CallWritten(run_id=run_id, t=0.01 * i, call_id=f"c{i}", name="f", arguments={"i": i})
        for i in range(1, 49)
    ]
    events.append(Done(run_id=run_id, t=1.0, status="ok", text="ok"))
    assert len(events) == 50

    async def produce() -> None:
        tracer.emit(events[0])
        await asyncio.to_thread(blocked.wait, 5.0)  # the writer is now stuck in on_commit
        for e in events[1:]:
            tracer.emit(e)  # on the loop's thread: must not wait for room

    await asyncio.wait_for(produce(), 10)
    assert not gate.is_set()
    assert blocked.is_set()
    # past the bound of 2: 49 queued while the writer was held, so at least 47 overflowed
    assert tracer.overflowed >= 47
    assert tracer.committed == 1
    gate.set()
    await tracer.aflush(timeout=30)
    assert tracer.committed == 50 and tracer.failed == 0
    spans = query.spans_of(tracer.store, run_id, kind=SpanKind.EVENT)
    assert [s.name for s in spans] == ["call_written"] * 48
    assert [s.attributes["counterpoint.event"]["call_id"] for s in spans] == [
        f"c{i}" for i in range(1, 49)
    ]
    assert query.get_run(tracer.store, run_id).status == RunStatus.OK
    assert sum(r.items for r in reports) == 50
    tracer.close()


def test_emit_off_the_loop_still_waits_for_room(tmp_path: Path) -> None:
    gate = threading.Event()
    blocked = threading.Event()

    def on_commit(report: CommitReport) -> None:
        if not blocked.is_set():
            blocked.set()
            gate.wait(5.0)

    tracer = SQLiteTracer(
        tmp_path / "t.db", max_queue=2, max_batch=1, linger_s=0, on_commit=on_commit
    )
    events = [UserMessage(run_id="thr", t=0.01 * i, text=f"m{i}") for i in range(10)]
    tracer.emit(events[0])
    assert blocked.wait(5.0)
    produced = threading.Event()

    def produce() -> None:
        for e in events[1:]:
            tracer.emit(e)
        produced.set()

    thread = threading.Thread(target=produce)
    thread.start()
    # the producer fills the queue (2) and then waits: it never goes past the bound
    writer = tracer._writer
    for _ in range(500):
        if writer._queue._producers_waiting:
            break
        threading.Event().wait(0.01)
    assert writer._queue._producers_waiting == 1
    assert not produced.is_set() and len(writer._queue) == 2
    gate.set()
    thread.join(10)
    assert produced.is_set()
    tracer.flush(timeout=30)
    assert tracer.overflowed == 0 and tracer.committed == 10
    tracer.close()
