"""Deriving run and span rows from events (a state machine per run; no database access).

The background writer feeds every event to :meth:`SpanDeriver.apply`, then :meth:`SpanDeriver.take`
returns the rows that changed since the last call, ready to be upserted in one transaction. Rows are
plain dicts holding every column of their table.

How events become rows:

- ``RunStarted`` inserts the run (status ``running``). An event of a run never started is given an
  implicit run (name ``(unknown)``) rather than dropped.
- ``TokenEvent`` is counted, never stored; the first one opens the run's ``generation`` span.
- ``CallStarted`` opens a ``tool_call`` span (child of the generation span), ``CallProgress`` is
  folded into its attributes, ``CallFinished`` closes it with the executor's own ``started`` and
  ``duration_s``. A ``CallFinished`` without a start makes a complete span on its own.
- ``InterruptInjected`` is a complete ``interrupt`` span ending at the event's ``t`` and lasting the
  prefill (``duration_s``).
- ``TrapEvent`` enter opens a ``trap`` span, exit closes it.
- ``Done`` closes the generation span (first token to done, with token counts), marks spans still
  open ``unfinished``, and fills the run's status and totals from its ``usage``.
"""

from __future__ import annotations

import os
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import to_jsonable_python

from counterpoint.core.events import (
    BaseEvent,
    CallFinished,
    CallProgress,
    CallStarted,
    Done,
    InterruptInjected,
    KVReuse,
    RunStarted,
    TokenEvent,
    TrapEvent,
)
from counterpoint.runtime.tracing.models import RunStatus, SpanKind, SpanStatus

__all__ = [
    "MAX_TEXT",
    "Changes",
    "SpanDeriver",
    "TokenTally",
    "jsonable",
    "new_span_id",
    "run_row",
    "span_row",
]

MAX_TEXT = 4000
"""Longest tool result or interrupt text kept in a span's attributes (characters)."""

_KNOWN_ORIGINS = 4096


_ids = random.Random()
os.register_at_fork(after_in_child=_ids.seed)


def new_span_id() -> str:
    """A 96-bit span id in hex: 40 bits of Unix milliseconds, then 56 random bits.

    Time first, so that new rows land at the end of the primary-key index instead of at random
    places in it (inserts stay fast as the file grows); the random part makes a clash between
    spans of the same millisecond negligible (not for security).
    """
    return f"{time.time_ns() // 1_000_000 & 0xFF_FFFF_FFFF:010x}{_ids.getrandbits(56):014x}"


def jsonable(value: Any) -> Any:
    """``value`` made JSON-serialisable: sets become lists, bytes base64, unknown types a repr."""
    return to_jsonable_python(value, fallback=repr, bytes_mode="base64")


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + f"... [{len(text)} chars]"


def run_row(**values: Any) -> dict[str, Any]:
    """A complete ``runs`` row: ``values`` over the column defaults."""
    row: dict[str, Any] = {
        "id": "",
        "name": "",
        "model": "",
        "mode": "",
        "status": RunStatus.RUNNING.value,
        "prompt": "",
        "output": None,
        "error": None,
        "parent_run_id": None,
        "started_at": 0.0,
        "ended_at": None,
        "duration_s": None,
        "first_token_s": None,
        "input_tokens": 0,
        "output_tokens": 0,
        "calls": 0,
        "interrupts": 0,
        "attributes": {},
    }
    row.update(values)
    return row


def span_row(
    *,
    run_id: str,
    kind: SpanKind,
    name: str,
    start_s: float,
    end_s: float | None = None,
    status: SpanStatus | str = SpanStatus.RUNNING,
    parent_id: str | None = None,
    attributes: dict[str, Any] | None = None,
    span_id: str | None = None,
) -> dict[str, Any]:
    """A complete ``spans`` row; wall-clock times are filled in by :class:`SpanDeriver`."""
    return {
        "id": span_id or new_span_id(),
        "run_id": run_id,
        "parent_id": parent_id,
        "kind": str(kind),
        "name": name,
        "status": str(status),
        "start_s": start_s,
        "end_s": end_s,
        "duration_s": None if end_s is None else max(0.0, end_s - start_s),
        "start_time": None,
        "end_time": None,
        "attributes": attributes or {},
    }


def _end(span: dict[str, Any], end_s: float, status: SpanStatus) -> None:
    span["end_s"] = end_s
    span["duration_s"] = max(0.0, end_s - span["start_s"])
    span["status"] = status.value


@dataclass
class TokenTally:
    """Token events of one run counted by the tracer before they reach the writer."""

    count: int
    last_t: float


@dataclass
class Changes:
    """Rows to upsert, and what they complete (for commit reports)."""

    runs: list[dict[str, Any]]
    spans: list[dict[str, Any]]
    finished_spans: list[str]
    finished_runs: list[str]


@dataclass
class _OpenRun:
    row: dict[str, Any]
    generation: dict[str, Any] | None = None
    tokens: int = 0
    first_token_t: float | None = None
    last_t: float = 0.0
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    progress: dict[str, int] = field(default_factory=dict)
    trap: dict[str, Any] | None = None

    @property
    def origin(self) -> float:
        return float(self.row["started_at"])


class SpanDeriver:
    """Turns events into run and span rows. Not thread-safe: the writer thread owns it.

    ``run_start`` looks up the wall-clock start of a run this deriver has not seen (for spans
    written directly for an older run); it may return None.
    """

    def __init__(self, run_start: Callable[[str], float | None] | None = None) -> None:
        self._runs: dict[str, _OpenRun] = {}
        self._origins: OrderedDict[str, float | None] = OrderedDict()
        self._run_start = run_start
        self._dirty_runs: dict[str, dict[str, Any]] = {}
        self._dirty_spans: dict[str, dict[str, Any]] = {}
        self._finished_spans: list[str] = []
        self._finished_runs: list[str] = []

    # -- output --------------------------------------------------------------------------------

    def take(self) -> Changes:
        """The rows changed since the last call (and forget them)."""
        changes = Changes(
            runs=list(self._dirty_runs.values()),
            spans=list(self._dirty_spans.values()),
            finished_spans=self._finished_spans,
            finished_runs=self._finished_runs,
        )
        self._dirty_runs = {}
        self._dirty_spans = {}
        self._finished_spans = []
        self._finished_runs = []
        return changes

    def _touch_span(self, span: dict[str, Any], origin: float | None) -> None:
        if origin is not None:
            span["start_time"] = origin + span["start_s"]
            span["end_time"] = None if span["end_s"] is None else origin + span["end_s"]
        self._dirty_spans[span["id"]] = span
        if span["end_s"] is not None:
            self._finished_spans.append(span["id"])

    def _touch_run(self, run: _OpenRun) -> None:
        self._dirty_runs[run.row["id"]] = run.row

    # -- direct spans --------------------------------------------------------------------------

    def add_span(self, span: dict[str, Any]) -> None:
        """Record a span written directly (``tracer.span``/``start_span``): open or complete."""
        self._touch_span(span, self._origin_of(span["run_id"]))

    def _origin_of(self, run_id: str) -> float | None:
        run = self._runs.get(run_id)
        if run is not None:
            return run.origin
        if run_id in self._origins:  # known, or known to be unknown
            return self._origins[run_id]
        origin = self._run_start(run_id) if self._run_start is not None else None
        self._remember(run_id, origin)
        return origin

    def _remember(self, run_id: str, origin: float | None) -> None:
        self._origins[run_id] = origin
        self._origins.move_to_end(run_id)
        while len(self._origins) > _KNOWN_ORIGINS:
            self._origins.popitem(last=False)

    # -- events --------------------------------------------------------------------------------

    def apply(self, event: BaseEvent, tally: TokenTally | None = None) -> None:
        """Fold one event into the state and the pending rows.

        ``tally``: with a ``Done``, the run's token events counted upstream (the tracer queues only
        a run's first token event and counts the others).
        """
        if isinstance(event, RunStarted):
            self._start(event)
            return
        run = self._runs.get(event.run_id)
        if run is None:
            run = self._implicit(event)
        if event.t > run.last_t:
            run.last_t = event.t
        if isinstance(event, TokenEvent):
            run.tokens += 1
            if run.generation is None:
                self._open_generation(run, event.t)
        elif isinstance(event, CallStarted):
            self._call_started(run, event)
        elif isinstance(event, CallProgress):
            self._call_progress(run, event)
        elif isinstance(event, CallFinished):
            self._call_finished(run, event)
        elif isinstance(event, InterruptInjected):
            self._interrupt(run, event)
        elif isinstance(event, TrapEvent):
            self._trap(run, event)
        elif isinstance(event, Done):
            if tally is not None:
                run.tokens = max(run.tokens, tally.count)
            self._done(run, event)
        elif isinstance(event, KVReuse):
            self._kv_reuse(run, event)
        else:  # call_written, protocol_error, user_interrupt, and kinds of other packages
            self._point(run, event)
            if event.kind == "task_finished":
                self._workflow_task(run, event)

    def _workflow_task(self, run: _OpenRun, ev: BaseEvent) -> None:
        """A workflow's ``task_finished`` (a registered kind of the agents layer, read by its
        fields): a ``workflow_task`` span from the task's last start to its end."""
        fields = ev.model_dump(mode="json")
        status = str(fields.get("status", ""))
        started = fields.get("started")
        start_s = float(started) if isinstance(started, int | float) else ev.t
        attributes: dict[str, Any] = {
            "counterpoint.task.id": fields.get("task_id"),
            "counterpoint.task.status": status,
            "counterpoint.task.attempts": fields.get("attempts", 0),
        }
        if fields.get("agent_run_id"):
            attributes["counterpoint.task.agent_run_id"] = fields["agent_run_id"]
        if fields.get("error"):
            attributes["counterpoint.error"] = _clip(str(fields["error"]))
        span = span_row(
            run_id=ev.run_id,
            kind=SpanKind.WORKFLOW_TASK,
            name=str(fields.get("task_id", "task")),
            start_s=start_s,
            end_s=ev.t,
            status=SpanStatus.OK if status in ("ok", "cached") else SpanStatus.ERROR,
            attributes=attributes,
        )
        self._touch_span(span, run.origin)

    def _kv_reuse(self, run: _OpenRun, ev: KVReuse) -> None:
        span = span_row(
            run_id=ev.run_id,
            kind=SpanKind.KV_REUSE,
            name=f"kv_reuse {ev.policy}",
            start_s=ev.t,
            end_s=ev.t + ev.ttft_s,
            status=SpanStatus.OK,
            parent_id=self._parent(run),
            attributes=jsonable(ev.attributes),
        )
        self._touch_span(span, run.origin)

    def _point(self, run: _OpenRun, ev: BaseEvent) -> None:
        """An event that is a moment, not an interval: a zero-length ``event`` span holding the
        event's own fields, so a UI can read it back (``parse_event`` on the attributes)."""
        payload = jsonable(ev.model_dump(mode="json"))
        for key, value in payload.items():
            if isinstance(value, str):
                payload[key] = _clip(value)
        span = span_row(
            run_id=ev.run_id,
            kind=SpanKind.EVENT,
            name=ev.kind,
            start_s=ev.t,
            end_s=ev.t,
            status=SpanStatus.OK,
            parent_id=self._parent(run),
            attributes={"counterpoint.event": payload},
        )
        self._touch_span(span, run.origin)

    def _start(self, ev: RunStarted) -> None:
        row = run_row(
            id=ev.run_id,
            name=ev.name,
            model=ev.model,
            mode=ev.mode,
            prompt=ev.prompt,
            parent_run_id=ev.parent_run_id,
            started_at=ev.wall_time,
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": ev.name,
                "gen_ai.request.model": ev.model,
                "counterpoint.mode": ev.mode,
            },
        )
        run = _OpenRun(row=row, last_t=ev.t)
        self._runs[ev.run_id] = run
        self._remember(ev.run_id, ev.wall_time)
        self._touch_run(run)

    def _implicit(self, ev: BaseEvent) -> _OpenRun:
        row = run_row(
            id=ev.run_id,
            name="(unknown)",
            started_at=time.time() - ev.t,
            attributes={"counterpoint.implicit_run": True},
        )
        run = _OpenRun(row=row)
        self._runs[ev.run_id] = run
        self._remember(ev.run_id, run.origin)
        self._touch_run(run)
        return run

    def _open_generation(self, run: _OpenRun, t: float) -> None:
        model = run.row["model"]
        run.first_token_t = t
        run.generation = span_row(
            run_id=run.row["id"],
            kind=SpanKind.GENERATION,
            name=f"chat {model}" if model else "chat",
            start_s=t,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": model,
                "counterpoint.mode": run.row["mode"],
            },
        )
        self._touch_span(run.generation, run.origin)

    def _parent(self, run: _OpenRun) -> str | None:
        return None if run.generation is None else str(run.generation["id"])

    def _call_started(self, run: _OpenRun, ev: CallStarted) -> None:
        span = span_row(
            run_id=ev.run_id,
            kind=SpanKind.TOOL_CALL,
            name=ev.name,
            start_s=ev.t,
            parent_id=self._parent(run),
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": ev.name,
                "gen_ai.tool.call.id": ev.call_id,
                "gen_ai.tool.call.arguments": jsonable(ev.arguments),
            },
        )
        run.calls[ev.call_id] = span
        self._touch_span(span, run.origin)

    def _call_progress(self, run: _OpenRun, ev: CallProgress) -> None:
        span = run.calls.get(ev.call_id)
        if span is None:
            return
        attrs = span["attributes"]
        attrs["counterpoint.progress.count"] = attrs.get("counterpoint.progress.count", 0) + 1
        attrs["counterpoint.progress.message"] = _clip(ev.message)
        if ev.fraction is not None:
            attrs["counterpoint.progress.fraction"] = ev.fraction

    def _call_finished(self, run: _OpenRun, ev: CallFinished) -> None:
        span = run.calls.pop(ev.call_id, None)
        if span is None:
            span = span_row(
                run_id=ev.run_id,
                kind=SpanKind.TOOL_CALL,
                name=ev.name,
                start_s=ev.started,
                parent_id=self._parent(run),
                attributes={
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": ev.name,
                    "gen_ai.tool.call.id": ev.call_id,
                },
            )
        span["start_s"] = ev.started
        attrs = span["attributes"]
        attrs["counterpoint.ok"] = ev.ok
        attrs["counterpoint.attempts"] = ev.attempts
        attrs["gen_ai.tool.call.result"] = _clip(ev.result)
        if ev.error is not None:
            attrs["error.type"] = "tool_error"
            attrs["counterpoint.error"] = _clip(ev.error)
        _end(span, ev.started + ev.duration_s, SpanStatus.OK if ev.ok else SpanStatus.ERROR)
        self._touch_span(span, run.origin)

    def _interrupt(self, run: _OpenRun, ev: InterruptInjected) -> None:
        span = span_row(
            run_id=ev.run_id,
            kind=SpanKind.INTERRUPT,
            name=",".join(ev.call_ids),
            start_s=max(0.0, ev.t - ev.duration_s),
            end_s=ev.t,
            status=SpanStatus.OK,
            parent_id=self._parent(run),
            attributes={
                "counterpoint.interrupt.call_ids": list(ev.call_ids),
                "counterpoint.interrupt.tokens": ev.tokens,
                "counterpoint.interrupt.prefill_s": ev.duration_s,
                "counterpoint.interrupt.text": _clip(ev.text),
            },
        )
        self._touch_span(span, run.origin)

    def _trap(self, run: _OpenRun, ev: TrapEvent) -> None:
        if ev.phase == "enter":
            if run.trap is not None:  # a second enter closes the first
                _end(run.trap, ev.t, SpanStatus.UNFINISHED)
                self._touch_span(run.trap, run.origin)
            run.trap = span_row(
                run_id=ev.run_id,
                kind=SpanKind.TRAP,
                name=ev.reason,
                start_s=ev.t,
                parent_id=self._parent(run),
                attributes={
                    "counterpoint.trap.reason": ev.reason,
                    "counterpoint.trap.pending": list(ev.pending),
                },
            )
            self._touch_span(run.trap, run.origin)
            return
        span = run.trap
        run.trap = None
        if span is None:
            span = span_row(
                run_id=ev.run_id,
                kind=SpanKind.TRAP,
                name=ev.reason,
                start_s=ev.t,
                parent_id=self._parent(run),
                attributes={"counterpoint.trap.reason": ev.reason},
            )
        span["attributes"]["counterpoint.trap.pending_at_exit"] = list(ev.pending)
        _end(span, ev.t, SpanStatus.OK)
        self._touch_span(span, run.origin)

    def _done(self, run: _OpenRun, ev: Done) -> None:
        first = ev.first_token_t if ev.first_token_t is not None else run.first_token_t
        if run.generation is None and first is not None:
            self._open_generation(run, first)
        gen = run.generation
        if gen is not None:
            if ev.first_token_t is not None:
                gen["start_s"] = ev.first_token_t
            gen["attributes"].update(
                {
                    "gen_ai.usage.input_tokens": ev.usage.input_tokens,
                    "gen_ai.usage.output_tokens": ev.usage.output_tokens,
                    "gen_ai.response.finish_reasons": [ev.status],
                    "counterpoint.token_events": run.tokens,
                    "counterpoint.last_token_s": ev.last_token_t,
                }
            )
            _end(gen, ev.t, SpanStatus.ERROR if ev.status == "error" else SpanStatus.OK)
            self._touch_span(gen, run.origin)
        self._close_open(run, ev.t)
        row = run.row
        row.update(
            status=ev.status,
            output=ev.text,
            error=ev.error,
            ended_at=run.origin + ev.t,
            duration_s=ev.t,
            first_token_s=first,
            input_tokens=ev.usage.input_tokens,
            output_tokens=ev.usage.output_tokens,
            calls=ev.usage.calls,
            interrupts=ev.usage.interrupts,
        )
        self._touch_run(run)
        self._finished_runs.append(row["id"])
        del self._runs[row["id"]]

    def _close_open(self, run: _OpenRun, t: float) -> None:
        for span in run.calls.values():
            _end(span, max(t, span["start_s"]), SpanStatus.UNFINISHED)
            self._touch_span(span, run.origin)
        run.calls.clear()
        if run.trap is not None:
            _end(run.trap, max(t, run.trap["start_s"]), SpanStatus.UNFINISHED)
            self._touch_span(run.trap, run.origin)
            run.trap = None

    def close_all(self, tallies: dict[str, TokenTally] | None = None) -> None:
        """End every open run as ``incomplete`` (the tracer is closing before their ``Done``)."""
        for run in list(self._runs.values()):
            tally = (tallies or {}).get(run.row["id"])
            if tally is not None:
                run.tokens = max(run.tokens, tally.count)
                run.last_t = max(run.last_t, tally.last_t)
            t = run.last_t
            if run.generation is not None:
                run.generation["attributes"]["counterpoint.token_events"] = run.tokens
                _end(run.generation, max(t, run.generation["start_s"]), SpanStatus.UNFINISHED)
                self._touch_span(run.generation, run.origin)
            self._close_open(run, t)
            run.row.update(
                status=RunStatus.INCOMPLETE.value,
                ended_at=run.origin + t,
                duration_s=t,
                first_token_s=run.first_token_t,
            )
            self._touch_run(run)
            self._finished_runs.append(run.row["id"])
        self._runs.clear()
