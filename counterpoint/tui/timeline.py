"""The timeline: lanes of intervals and markers against a time axis, live or from stored traces.

Three parts, the first two free of Textual:

- :class:`TimelineModel`, fed events (:meth:`TimelineModel.apply`) or stored spans
  (:meth:`TimelineModel.from_spans`): one ``decode`` lane (token activity, with interrupt, trap and
  user-interrupt markers), one lane per tool call (``call_started`` to ``call_finished``), one lane
  per workflow task (``task_started`` to ``task_finished``). Lanes are generic: an id, a label,
  intervals and markers.
- :func:`render_timeline`: the model drawn as rich ``Text`` lines for a given width (a label column,
  the lanes, a time axis), scaled to fit; only the 16 ANSI colours are used.
- :class:`Timeline`, the Textual widget: it holds a model and redraws it at its current width;
  it updates itself only when the drawing changed, and asks for a relayout only when its number
  of lines or its width did (a relayout of the screen is what costs; drawing again is cheap).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text
from textual.widgets import Static

from counterpoint.core.events import (
    BaseEvent,
    CallFinished,
    CallStarted,
    Done,
    InterruptInjected,
    RunStarted,
    TokenEvent,
    TrapEvent,
    UserMessage,
)

__all__ = [
    "DECODE_LANE",
    "Interval",
    "Lane",
    "Marker",
    "Timeline",
    "TimelineModel",
    "render_timeline",
]

DECODE_LANE = "decode"

STATUS_STYLES: dict[str, str] = {
    "active": "blue",
    "running": "yellow",
    "ok": "green",
    "cached": "green",
    "failed": "red",
    "error": "red",
    "cancelled": "bright_black",
    "unfinished": "bright_black",
    "skipped": "bright_black",
}
MARKER_GLYPHS: dict[str, tuple[str, str]] = {
    "interrupt": ("▼", "magenta"),
    "trap": ("‖", "yellow"),
    "user": ("●", "cyan"),
    "retry": ("↻", "yellow"),
    "error": ("!", "red"),
}


@dataclass
class Interval:
    """A stretch of time on a lane; ``end`` is None while it is still open."""

    start: float
    end: float | None = None
    status: str = "running"


@dataclass
class Marker:
    """A moment on a lane: ``kind`` is one of :data:`MARKER_GLYPHS`' keys."""

    t: float
    kind: str
    label: str = ""


@dataclass
class Lane:
    id: str
    label: str
    kind: str = "call"
    intervals: list[Interval] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)

    def open_interval(self) -> Interval | None:
        return self.intervals[-1] if self.intervals and self.intervals[-1].end is None else None


class TimelineModel:
    """Lanes built from events (a run's, a workflow's) or from stored spans.

    ``token_gap_s``: two tokens further apart than this split the decode lane's activity.
    """

    def __init__(self, *, token_gap_s: float = 0.25) -> None:
        self.token_gap_s = token_gap_s
        self.lanes: dict[str, Lane] = {}
        self.start_t = 0.0
        self.last_t = 0.0
        self.end_t: float | None = None

    def lane(self, lane_id: str, label: str, kind: str = "call") -> Lane:
        lane = self.lanes.get(lane_id)
        if lane is None:
            lane = self.lanes[lane_id] = Lane(lane_id, label, kind)
        return lane

    @property
    def decode(self) -> Lane:
        return self.lane(DECODE_LANE, "decode", "decode")

    def reset(self) -> None:
        self.lanes.clear()
        self.last_t = 0.0
        self.end_t = None

    def apply(self, event: BaseEvent) -> bool:
        """Fold one event in; whether it changed the timeline."""
        t = event.t
        self.last_t = max(self.last_t, t)
        if isinstance(event, RunStarted):
            _ = self.decode
            return True
        if isinstance(event, TokenEvent):
            lane = self.decode
            if lane.intervals and (
                lane.intervals[-1].end is not None
                and t - lane.intervals[-1].end <= self.token_gap_s
            ):
                lane.intervals[-1].end = t
                return True
            lane.intervals.append(Interval(t, t, "active"))
            return True
        if isinstance(event, CallStarted):
            lane = self.lane(f"call:{event.call_id}", f"{event.call_id} {event.name}")
            lane.intervals.append(Interval(t, None, "running"))
            return True
        if isinstance(event, CallFinished):
            lane = self.lane(f"call:{event.call_id}", f"{event.call_id} {event.name}")
            status = "ok" if event.ok else ("cancelled" if event.error == "cancelled" else "failed")
            interval = lane.open_interval()
            if interval is None:
                lane.intervals.append(Interval(event.started, None, status))
                interval = lane.intervals[-1]
            interval.start = event.started
            interval.end = event.started + event.duration_s
            interval.status = status
            return True
        if isinstance(event, InterruptInjected):
            self.decode.markers.append(Marker(t, "interrupt", ",".join(event.call_ids)))
            return True
        if isinstance(event, TrapEvent):
            if event.phase == "enter":
                self.decode.markers.append(Marker(t, "trap", event.reason))
                return True
            return False
        if isinstance(event, UserMessage):
            self.decode.markers.append(Marker(t, "user", event.text))
            return True
        if isinstance(event, Done):
            self.end_t = t
            for lane in self.lanes.values():
                interval = lane.open_interval()
                if interval is not None:
                    interval.end = t
                    interval.status = "unfinished"
            return True
        return self._workflow(event)

    def _workflow(self, event: BaseEvent) -> bool:
        fields: dict[str, Any] = event.model_dump()
        task = fields.get("task_id")
        if not isinstance(task, str) or not task:
            if event.kind == "workflow_done":
                self.end_t = event.t
                return True
            return False
        lane = self.lane(f"task:{task}", task, "task")
        if event.kind == "task_started":
            lane.intervals.append(Interval(event.t, None, "running"))
        elif event.kind == "task_finished":
            interval = lane.open_interval()
            started = fields.get("started")
            if interval is None:
                start = float(started) if isinstance(started, int | float) else event.t
                interval = Interval(start, None)
                lane.intervals.append(interval)
            interval.end = event.t
            interval.status = str(fields.get("status", "ok"))
        elif event.kind == "task_retry":
            lane.markers.append(Marker(event.t, "retry", str(fields.get("error", ""))))
        else:
            return False
        return True

    def extend(self, events: Iterable[BaseEvent]) -> TimelineModel:
        for event in events:
            self.apply(event)
        return self

    @classmethod
    def from_events(cls, events: Iterable[BaseEvent]) -> TimelineModel:
        return cls().extend(events)

    @classmethod
    def from_spans(cls, spans: Iterable[Any], *, end_t: float | None = None) -> TimelineModel:
        """A timeline from a stored run's spans (:class:`SpanRecord`-like: ``kind``, ``name``,
        ``status``, ``start_s``, ``end_s``, ``attributes``). Token events are not stored, so the
        decode lane is the generation span as one stretch."""
        model = cls()
        _ = model.decode
        for span in spans:
            kind, attrs = str(span.kind), dict(span.attributes or {})
            start, end = float(span.start_s), span.end_s
            model.last_t = max(model.last_t, float(end if end is not None else start))
            if kind == "generation":
                model.decode.intervals.append(Interval(start, end, "active"))
            elif kind == "tool_call":
                call_id = str(attrs.get("gen_ai.tool.call.id", span.name))
                status = {"ok": "ok", "error": "failed"}.get(str(span.status), str(span.status))
                if attrs.get("counterpoint.error") == "cancelled":
                    status = "cancelled"
                lane = model.lane(f"call:{call_id}", f"{call_id} {span.name}")
                lane.intervals.append(Interval(start, end, status))
            elif kind == "workflow_task":
                lane = model.lane(f"task:{span.name}", str(span.name), "task")
                status = str(attrs.get("counterpoint.task.status", span.status))
                lane.intervals.append(Interval(start, end, status))
            elif kind == "interrupt":
                model.decode.markers.append(Marker(float(end or start), "interrupt", span.name))
            elif kind == "trap":
                model.decode.markers.append(Marker(start, "trap", str(span.name)))
            elif kind == "event" and span.name == "user_interrupt":
                payload = attrs.get("counterpoint.event", {})
                text = str(payload.get("text", "")) if isinstance(payload, dict) else ""
                model.decode.markers.append(Marker(start, "user", text))
        model.end_t = end_t if end_t is not None else model.last_t
        return model


def _ticks(span: float, columns: int) -> float:
    """A round tick step so that labels sit about 12 columns apart."""
    target = span * 12 / max(columns, 1)
    for step in (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600):
        if step >= target:
            return step
    return 1200.0


def _fmt_t(t: float, step: float) -> str:
    if step >= 1:
        return f"{t:.0f}s"
    if step >= 0.1:
        return f"{t:.1f}s"
    return f"{t:.2f}s"


def _append_runs(line: Text, cells: Sequence[tuple[str, str]]) -> None:
    """Append the cells, one span per run of one style (a span per cell costs Textual dearly)."""
    run: list[str] = []
    run_style = ""
    for char, style in cells:
        if style != run_style and run:
            line.append("".join(run), run_style)
            run = []
        run_style = style
        run.append(char)
    if run:
        line.append("".join(run), run_style)


def render_timeline(
    model: TimelineModel,
    width: int,
    *,
    now: float | None = None,
    max_lanes: int | None = None,
) -> list[Text]:
    """The timeline as lines of ``width`` cells: one per lane, then the time axis.

    ``now``: the right edge while the run goes on (open intervals reach it); default the end of
    the run or the last event. ``max_lanes``: keep the decode lane and the most recent others.
    """
    width = max(width, 12)
    right = now if now is not None else (model.end_t if model.end_t is not None else model.last_t)
    right = max(right, model.last_t, 1e-6)
    label_w = max(6, min(18, width // 4))
    cols = max(width - label_w - 1, 4)
    scale = right / cols

    def col(t: float) -> int:
        return min(cols - 1, max(0, int(t / scale)))

    lanes: Sequence[Lane] = list(model.lanes.values())
    if max_lanes is not None and len(lanes) > max_lanes:
        head = [lane for lane in lanes if lane.kind == "decode"]
        rest = [lane for lane in lanes if lane.kind != "decode"]
        keep = max(max_lanes - len(head), 0)
        lanes = head + (rest[-keep:] if keep else [])
    lines: list[Text] = []
    for lane in lanes:
        cells: list[tuple[str, str]] = [("·", "bright_black")] * cols
        glyph = "▆" if lane.kind == "decode" else "█"
        for interval in lane.intervals:
            end = interval.end if interval.end is not None else right
            style = STATUS_STYLES.get(interval.status, "white")
            for c in range(col(interval.start), col(end) + 1):
                cells[c] = (glyph, style)
        taken: set[int] = set()
        for marker in lane.markers:
            c = col(marker.t)
            while c in taken and c + 1 < cols:  # markers at the same moment sit side by side
                c += 1
            taken.add(c)
            cells[c] = MARKER_GLYPHS.get(marker.kind, ("?", "white"))
        label = lane.label if len(lane.label) <= label_w else lane.label[: label_w - 1] + "…"
        line = Text(label.ljust(label_w) + " ", style="bold" if lane.kind == "decode" else "")
        _append_runs(line, cells)
        lines.append(line)
    step = _ticks(right, cols)
    axis = [" "] * cols
    labels = [" "] * cols
    tick = 0.0
    while tick <= right + 1e-9:
        c = col(tick)
        axis[c] = "┬" if c else "├"
        text = _fmt_t(tick, step)
        if c + len(text) <= cols and all(ch == " " for ch in labels[c : c + len(text) + 1]):
            labels[c : c + len(text)] = list(text)
        tick += step
    axis_line = Text(" " * (label_w + 1) + "".join(ch if ch != " " else "─" for ch in axis))
    axis_line.stylize("bright_black")
    lines.append(axis_line)
    lines.append(Text(" " * (label_w + 1) + "".join(labels), style="bright_black"))
    return lines


class Timeline(Static):
    """The timeline widget: call :meth:`refresh_model` after feeding :attr:`model`."""

    DEFAULT_CSS = """
    Timeline {
        height: auto;
        max-height: 14;
        padding: 0 1;
        border-top: solid $primary;
    }
    """

    def __init__(
        self, model: TimelineModel | None = None, *, max_lanes: int = 10, **kwargs: Any
    ) -> None:
        super().__init__("", **kwargs)
        self.model = model if model is not None else TimelineModel()
        self.max_lanes = max_lanes
        self.now: float | None = None
        self._lines: list[Text] = []
        self._width = 0

    def refresh_model(self, now: float | None = None) -> bool:
        """Redraw the model (open intervals reach ``now``); whether the widget was updated."""
        self.now = now
        return self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> bool:
        width = self.content_size.width or (self.app.size.width - 4 if self.is_attached else 80)
        lines = render_timeline(self.model, width, now=self.now, max_lanes=self.max_lanes)
        if lines == self._lines and width == self._width:
            return False
        # the same number of lines at the same width: the same size, no relayout
        layout = len(lines) != len(self._lines) or width != self._width
        self._lines, self._width = lines, width
        self.update(Text("\n").join(lines), layout=layout)
        return True
