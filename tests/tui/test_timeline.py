"""The timeline model and its rendering (without Textual), and what the widget redraws."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

from counterpoint.core.events import BaseEvent, CallFinished, CallStarted, TokenEvent
from counterpoint.tui.timeline import DECODE_LANE, Timeline, TimelineModel, render_timeline
from tests.tui._fixtures import fixed_events


def test_lanes_from_events() -> None:
    events = fixed_events()
    model = TimelineModel.from_events(events)
    assert list(model.lanes) == [DECODE_LANE, "call:c1", "call:c2"]
    c1, c2 = model.lanes["call:c1"], model.lanes["call:c2"]
    assert [i.status for i in c1.intervals] == ["ok"]
    assert [i.status for i in c2.intervals] == ["failed"]
    assert c1.intervals[0].end == 1.6
    kinds = [m.kind for m in model.lanes[DECODE_LANE].markers]
    assert kinds == ["user", "trap", "interrupt", "interrupt"]
    assert model.end_t == events[-1].t
    # the decode lane splits where tokens stop (the trap) and resumes after
    decode = model.lanes[DECODE_LANE].intervals
    assert len(decode) == 2 and decode[1].start >= 2.3


def test_open_call_runs_to_now_and_cancelled() -> None:
    model = TimelineModel()
    model.apply(CallStarted(run_id="r", t=0.5, call_id="a", name="x", arguments={}))
    lane = model.lanes["call:a"]
    assert lane.open_interval() is not None
    line = render_timeline(model, 40, now=1.0)[0]
    assert "█" in line.plain
    model.apply(
        CallFinished(
            run_id="r",
            t=0.9,
            call_id="a",
            name="x",
            ok=False,
            result="",
            error="cancelled",
            started=0.5,
            duration_s=0.4,
        )
    )
    assert lane.intervals[0].status == "cancelled"


def test_token_gaps_split_activity() -> None:
    events: list[BaseEvent] = [
        TokenEvent(run_id="r", t=t, text="a", token_id=0, index=i)
        for i, t in enumerate([0.0, 0.1, 0.2, 1.0, 1.1])
    ]
    model = TimelineModel(token_gap_s=0.25).extend(events)
    assert [(i.start, i.end) for i in model.decode.intervals] == [(0.0, 0.2), (1.0, 1.1)]


def test_render_fits_every_width() -> None:
    model = TimelineModel.from_events(fixed_events())
    for width in (12, 20, 40, 80, 200):
        lines = render_timeline(model, width)
        assert len(lines) == len(model.lanes) + 2
        assert all(line.cell_len <= max(width, 12) for line in lines)
    wide = render_timeline(model, 80)
    assert "0s" in wide[-1].plain or "0.0s" in wide[-1].plain
    assert "▼" in wide[0].plain and "●" in wide[0].plain


def test_max_lanes_keeps_decode_and_latest() -> None:
    model = TimelineModel()
    for i in range(8):
        model.apply(CallStarted(run_id="r", t=i * 0.1, call_id=f"c{i}", name="x", arguments={}))
    model.apply(TokenEvent(run_id="r", t=0.0, text="a", token_id=0, index=0))
    lines = render_timeline(model, 60, max_lanes=3)
    labels = [line.plain.split()[0] for line in lines[:-2]]
    assert labels == ["c0", "c6", "c7"] or labels[0] == "decode"


def test_workflow_tasks_are_lanes() -> None:
    class Ev(BaseEvent):
        task_id: str = ""
        status: str = "ok"

    model = TimelineModel().extend(
        [
            Ev(kind="task_started", run_id="w", t=0.0, task_id="plan"),
            Ev(kind="task_retry", run_id="w", t=0.5, task_id="plan"),
            Ev(kind="task_finished", run_id="w", t=1.0, task_id="plan", status="failed"),
            Ev(kind="workflow_done", run_id="w", t=1.2),
        ]
    )
    lane = model.lanes["task:plan"]
    assert lane.kind == "task" and lane.intervals[0].status == "failed"
    assert [m.kind for m in lane.markers] == ["retry"] and model.end_t == 1.2


def test_from_spans() -> None:
    def span(
        kind: str,
        name: str,
        start: float,
        end: float,
        status: str = "ok",
        attrs: dict[str, Any] | None = None,
    ) -> SimpleNamespace:
        return SimpleNamespace(
            kind=kind, name=name, start_s=start, end_s=end, status=status, attributes=attrs or {}
        )

    model = TimelineModel.from_spans(
        [
            span("generation", "chat", 0.1, 2.0),
            span("tool_call", "get_weather", 0.3, 1.0, attrs={"gen_ai.tool.call.id": "c1"}),
            span("tool_call", "get_time", 0.4, 1.5, "error", {"gen_ai.tool.call.id": "c2"}),
            span("interrupt", "c1", 0.95, 1.0),
            span("trap", "trap", 0.6, 1.5),
            span("event", "user_interrupt", 0.7, 0.7, attrs={"counterpoint.event": {"text": "hi"}}),
        ],
        end_t=2.0,
    )
    assert [i.status for i in model.lanes["call:c2"].intervals] == ["failed"]
    assert sorted(m.kind for m in model.decode.markers) == ["interrupt", "trap", "user"]
    assert model.end_t == 2.0


def test_one_span_per_run_of_a_style() -> None:
    model = TimelineModel.from_events(fixed_events())
    lines = render_timeline(model, 100)
    for line in lines[:-2]:
        styles = [str(span.style) for span in line.spans]
        assert all(a != b for a, b in itertools.pairwise(styles)), styles
        assert len(line.spans) <= 16  # a few runs, not a span per cell
    assert lines[0].plain == render_timeline(model, 100)[0].plain


async def test_the_widget_updates_only_when_the_drawing_changes() -> None:
    from textual.app import App, ComposeResult

    model = TimelineModel()
    timeline = Timeline(model, id="timeline")

    class One(App[None]):
        def compose(self) -> ComposeResult:
            yield timeline

    async with One().run_test(size=(80, 20)) as pilot:
        model.apply(CallStarted(run_id="r", t=0.5, call_id="a", name="x", arguments={}))
        assert timeline.refresh_model(1.0)
        await pilot.pause()
        assert not timeline.refresh_model(1.0)  # the same drawing: no update, no relayout
        assert timeline.refresh_model(2.0)  # the open call reaches the new "now"
        model.apply(TokenEvent(run_id="r", t=0.1, text="a", token_id=0, index=0))
        assert timeline.refresh_model(2.0)
