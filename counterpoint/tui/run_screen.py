"""The run screen: a prompt, the answer streaming, call blocks, the timeline and a status bar.

Every widget is fed by :meth:`RunView.feed` with the run's events and nothing else; the screen
starts runs and forwards what the user types while the model writes as user interrupts.

Repaints are coalesced and redraw only what changed: :meth:`RunView.feed` folds an event into the
state and marks what it touched (the open answer segment, a call block, the timeline, widgets to
mount), in O(1) and without drawing; a timer repaints the marked things, at most ``REPAINT_HZ``
times a second and less often when repaints are dear (``UI_LOOP_SHARE``: a long transcript, a
loaded machine), because every widget update costs Textual a relayout and render of the screen,
and the runtime shares the event loop. What moves with time alone (running calls' elapsed times,
the timeline's "now" edge) ticks at ``TICK_HZ`` / ``TIMELINE_HZ``. A widget whose text did not
change is not updated; one whose size cannot change is updated without a relayout (the status
bar, a timeline with as many lines); the answer streams into its Markdown with ``append`` (only
its last block is parsed again); new widgets are mounted in one batch per repaint, never one by
one in ``feed``; the transcript is anchored to its end (it follows in the relayout itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from markdown_it import MarkdownIt
from rich.text import Text
from textual.app import ComposeResult
from textual.await_complete import AwaitComplete
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widget import AwaitMount, Widget
from textual.widgets import Collapsible, Footer, Input, Markdown, Static

from counterpoint.core.events import (
    BaseEvent,
    CallFinished,
    CallProgress,
    CallStarted,
    CallWritten,
    Done,
    InterruptInjected,
    ProtocolViolation,
    RunStarted,
    TokenEvent,
    UserMessage,
)
from counterpoint.tui.timeline import Timeline

if TYPE_CHECKING:
    from counterpoint.agents.agent import Agent, RunHandle

__all__ = ["CallBlock", "RunScreen", "RunView", "StatusBar"]

REPAINT_HZ = 20
"""The most repaints a second (events in between are coalesced)."""
TICK_HZ = 5
"""How often what moves with time alone is redrawn while a run goes on (elapsed times)."""
TIMELINE_HZ = 5
"""How often the timeline is redrawn while a run goes on (always at the end, and on flush())."""
UI_LOOP_SHARE = 0.3
"""The most of the event loop's time the repaints may take. A repaint's cost is the wall time
from its start to the end of the last relayout it causes (its widget updates, the Markdown
appends and mounts it starts, Textual's relayout and render); the next repaint waits at least
``cost / UI_LOOP_SHARE`` (and at least ``1 / REPAINT_HZ``, at most ``1 / MIN_REPAINT_HZ``), so
a long transcript, or a loaded machine, repaints less often instead of slowing the run down: the
runtime shares the loop."""
MIN_REPAINT_HZ = 2
"""The fewest repaints a second however dear they are."""

PILL_STYLES = {
    "written": "black on white",
    "running": "black on yellow",
    "ok": "black on green",
    "failed": "white on red",
    "cancelled": "white on bright_black",
    "unfinished": "white on bright_black",
}


def _args(arguments: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in arguments.items())


_TRAP = re.compile(r"\[TRAP\]\s*\[END\]")
_TRAP_OPEN = re.compile(r"\[TRAP\]\s*$")


def _display(text: str) -> str:
    """The answer without protocol markup: traps (one still being written too: it would show
    for a moment, then vanish and make the whole segment redraw), and a call block still being
    written."""
    text = _TRAP.sub("", text)
    opened = text.find("[CALL]")
    if opened >= 0:
        text = text[:opened]
    text = _TRAP_OPEN.sub("", text)
    return text.lstrip("\n") if not text.strip() else text


_PARSER: MarkdownIt | None = None


def _parser() -> MarkdownIt:
    """One Markdown parser for every answer segment (Textual's Markdown builds a new one for
    each update and append otherwise); warmed up once, it is only read after."""
    global _PARSER
    if _PARSER is None:
        _PARSER = MarkdownIt("gfm-like")
        _PARSER.parse("warm **up**\n\n- a\n")
    return _PARSER


def _done(update: AwaitComplete) -> Callable[[], bool]:
    return lambda: update.is_done


class CallBlock(Collapsible):
    """One call: a status pill in its title, its arguments and result inside.

    Its state is set by :class:`RunView` (which calls :meth:`mark` when it changes);
    :meth:`redraw` updates only the parts whose text changed: the title (a running call's
    elapsed time moves) and, when marked, the body. (No CSS class per status: a class change
    restyles the block and all it holds, and no rule needs one; the pill is in the title.)
    """

    DEFAULT_CSS = """
    CallBlock { margin: 0 0 0 2; }
    CallBlock Static { padding: 0 1; }
    """

    def __init__(self, call_id: str, name: str, arguments: dict[str, Any]) -> None:
        self.call_id = call_id
        self.call_name = name
        self.arguments = arguments
        self.status = "written"
        self.started_t: float | None = None
        self.elapsed_s: float | None = None
        self.progress = ""
        self.result = ""
        self.error: str | None = None
        self._call_body = Static("", classes="call-body")
        self._dirty = True
        self._shown_title = ""
        self._shown_body: Text | None = None
        super().__init__(self._call_body, title="", collapsed=True, id=f"call-{call_id}")
        self._set_title(self._title_text())

    @property
    def dirty(self) -> bool:
        """Whether its state changed since it was last drawn."""
        return self._dirty

    def mark(self) -> None:
        """Its state changed: the next :meth:`redraw` rebuilds its body."""
        self._dirty = True

    def _set_title(self, title: str) -> None:
        """Show ``title`` as plain text: as a ``str`` Textual would parse it as markup (the
        ``[running]`` pill, or brackets in the arguments: slow, and a call's arguments could
        style the title)."""
        self._shown_title = title
        self.set_reactive(Collapsible.title, title)
        self._title.label = Content(title)

    def _title_text(self, now: float | None = None) -> str:
        elapsed = self.elapsed_s
        if self.status == "running" and self.started_t is not None and now is not None:
            elapsed = max(0.0, now - self.started_t)
        when = f" {elapsed:.2f}s" if elapsed is not None else ""
        extra = f" · {self.progress}" if self.progress and self.status == "running" else ""
        return (
            f"[{self.status}{when}] {self.call_id} {self.call_name}({_args(self.arguments)}){extra}"
        )

    def redraw(self, now: float | None = None) -> bool:
        """Draw the current state; whether anything was updated (nothing is when nothing
        changed: an update costs a relayout)."""
        changed = False
        title = self._title_text(now)
        if title != self._shown_title:
            self._set_title(title)
            changed = True
        if self._dirty:
            self._dirty = False
            body = self._body_text()
            if body != self._shown_body:
                self._shown_body = body
                self._call_body.update(body)
                changed = True
        return changed

    def _body_text(self) -> Text:
        body = Text()
        body.append("arguments ", "bold")
        body.append(json.dumps(self.arguments, ensure_ascii=False) + "\n")
        if self.result or self.error:
            body.append("result ", "bold")
            body.append(self.result, "red" if self.status == "failed" else "")
            if self.error and self.error not in self.result:
                body.append(f"\nerror {self.error}", "red")
        elif self.progress:
            body.append(f"progress {self.progress}", "italic")
        return body


class StatusBar(Static):
    DEFAULT_CSS = """
    StatusBar { height: 1; background: $panel; color: $text; padding: 0 1; }
    """

    _shown: Text | None = None

    def show(self, text: Text) -> bool:
        """Show ``text`` unless it is already shown (one line of a fixed height: no relayout);
        whether it was updated."""
        if text == self._shown:
            return False
        self._shown = text
        self.update(text, layout=self.styles.auto_dimensions)
        return True


@dataclass
class _Segment:
    start: int
    end: int | None = None
    widget: Markdown | None = None
    shown: str = ""
    final: bool = False
    """Closed and drawn since: its text can no longer change."""
    updating: AwaitComplete | None = None
    """Its widget's last update or append (one at a time)."""


@dataclass
class RunState:
    """What the events of one run say, folded (the status bar's numbers)."""

    run_id: str = ""
    status: str = "idle"
    tokens_out: int = 0
    tokens_in: int = 0
    first_token_t: float | None = None
    last_t: float = 0.0
    done_t: float | None = None
    calls_running: int = 0
    calls_done: int = 0
    tool_time_s: float = 0.0
    """The finished calls' run times added up (ΣE of the latency model)."""
    interrupts: int = 0
    text: str = ""
    segments: list[_Segment] = field(default_factory=list)


class RunView(Vertical):
    """The transcript, the timeline and the status bar of the current run (fed events).

    :meth:`feed` is cheap and never blocks (it folds the event and marks what changed); the
    repaint timer, or :meth:`flush`, draws what was marked.
    """

    DEFAULT_CSS = """
    RunView { height: 1fr; }
    RunView #transcript { height: 1fr; padding: 0 1; }
    RunView .prompt { color: $accent; text-style: bold; margin: 1 0 0 0; }
    RunView .user-interrupt { color: $secondary; margin: 0 0 0 2; }
    RunView .note { color: $text-muted; margin: 0 0 0 2; }
    RunView Markdown { margin: 0; padding: 0; }
    """

    def __init__(self, *, clock: Callable[[], float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clock = clock
        self.state = RunState()
        self.calls: dict[str, CallBlock] = {}
        self.transcript = VerticalScroll(id="transcript")
        self.timeline = Timeline(id="timeline")
        self.status_bar = StatusBar(id="status")
        self._run_clock0: float | None = None
        self._dirty = False
        """Something was fed since the last repaint."""
        self._to_mount: list[Widget] = []
        self._mounting: list[tuple[AwaitMount, list[Widget]]] = []
        """Mounts started and not yet done, with their widgets."""
        self._follow = True
        """Anchor the transcript once it overflows: it then follows its end as it grows (in
        the relayout itself, no second frame) until the user scrolls up, and again once they
        scroll back down. (Anchored before it overflows, Textual draws it at the bottom.)"""
        self._dirty_blocks: dict[str, CallBlock] = {}
        self._text_dirty = False
        self._timeline_dirty = False
        self._ticked_at = float("-inf")
        self._timeline_at = float("-inf")
        self._flush_lock = asyncio.Lock()
        self._painted_at = float("-inf")
        """When the last timer repaint began (perf_counter)."""
        self._measuring: list[Callable[[], bool]] | None = None
        """While the last repaint's cost is measured: whether what it started is done."""
        self.repaint_cost_s = 0.0
        """What a timer repaint costs (smoothed; see ``UI_LOOP_SHARE``)."""
        self._draw_s = 0.0

    def compose(self) -> ComposeResult:
        yield self.transcript
        yield self.timeline
        yield self.status_bar

    def on_mount(self) -> None:
        self.set_interval(1 / REPAINT_HZ, self._repaint)
        self.screen.screen_layout_refresh_signal.subscribe(self, self._laid_out, immediate=True)
        self._draw_status()

    @property
    def repaint_interval(self) -> float:
        """The time between two timer repaints now (see ``UI_LOOP_SHARE``)."""
        interval = self.repaint_cost_s / UI_LOOP_SHARE
        return min(1 / MIN_REPAINT_HZ, max(1 / REPAINT_HZ, interval))

    def _laid_out(self, _screen: Screen[Any]) -> None:
        """After a relayout: if it is the last the last repaint causes (what that started is
        done), that repaint's cost is known."""
        if self._measuring is not None and all(done() for done in self._measuring):
            self._measuring = None
            self._measured(time.perf_counter() - self._painted_at)

    def _measured(self, cost: float) -> None:
        self.repaint_cost_s = 0.6 * self.repaint_cost_s + 0.4 * cost

    def now(self) -> float | None:
        """The current run time (seconds since run_started), from the injected clock."""
        if self.state.done_t is not None:
            return self.state.done_t
        if self._run_clock0 is None:
            return None
        return max(self.state.last_t, self.clock() - self._run_clock0)

    # -- events -----------------------------------------------------------------------------

    def feed(self, event: BaseEvent) -> None:
        """Fold one event into the state and mark what it changed (O(1), draws nothing)."""
        state = self.state
        state.last_t = max(state.last_t, event.t)
        if self.timeline.model.apply(event):
            self._timeline_dirty = True
        self._dirty = True
        if isinstance(event, TokenEvent):  # the common case first
            state.tokens_out += 1
            if state.first_token_t is None:
                state.first_token_t = event.t
            state.text += event.text
            self._text_dirty = True
        elif isinstance(event, RunStarted):
            self.state = RunState(run_id=event.run_id, status="running", last_t=event.t)
            self.timeline.model.reset()
            self.timeline.model.apply(event)
            self._timeline_dirty = True
            self._run_clock0 = self.clock() - event.t
            self.calls = {}
            self._dirty_blocks = {}
            self._follow = True
            self._mount(Static(Text(f"› {event.prompt}"), classes="prompt"))
            self._new_segment(0)
        elif isinstance(event, CallWritten):
            self._call_written(event)
        elif isinstance(event, CallStarted):
            block = self._block(event.call_id, event.name, event.arguments)
            block.status, block.started_t = "running", event.t
            state.calls_running += 1
        elif isinstance(event, CallProgress):
            block = self._block(event.call_id, event.name, {})
            block.progress = event.message
        elif isinstance(event, CallFinished):
            block = self._block(event.call_id, event.name, {})
            if block.status == "running":
                state.calls_running = max(0, state.calls_running - 1)
            state.calls_done += 1
            state.tool_time_s += event.duration_s
            block.status = (
                "ok" if event.ok else ("cancelled" if event.error == "cancelled" else "failed")
            )
            block.elapsed_s = event.duration_s
            block.result, block.error = event.result, event.error
        elif isinstance(event, InterruptInjected):
            state.interrupts += 1
            ids = ", ".join(event.call_ids) or "user"
            self._note(f"⇢ {event.t:.2f}s interrupt [{ids}] injected ({event.tokens} tokens)")
        elif isinstance(event, UserMessage):
            self._close_segment()
            self._mount(
                Static(
                    Text(f"» you, mid-run at {event.t:.2f}s: {event.text}"),
                    classes="user-interrupt",
                )
            )
            self._new_segment(len(state.text))
        elif isinstance(event, ProtocolViolation):
            self._note(f"! protocol: {event.message}")
        elif isinstance(event, Done):
            state.status = event.status
            state.done_t = event.t
            state.tokens_in = event.usage.input_tokens
            state.tokens_out = max(state.tokens_out, event.usage.output_tokens)
            state.calls_running = 0
            for block in self.calls.values():
                if block.status in ("written", "running"):
                    block.status = "unfinished"
                    self._touch(block)
            if event.error and event.status != "ok":
                self._note(f"■ {event.status}: {event.error}")
            else:
                self._note(f"■ {event.status} in {event.t:.2f}s")

    def _mount(self, widget: Widget) -> None:
        """Mount ``widget`` at the end of the transcript on the next repaint (in one batch)."""
        self._to_mount.append(widget)

    def _touch(self, block: CallBlock) -> None:
        block.mark()
        self._dirty_blocks[block.call_id] = block

    def _new_segment(self, start: int) -> None:
        widget = Markdown("", classes="answer", parser_factory=_parser)
        widget.display = False  # until it shows some text (many stay empty: not laid out)
        self.state.segments.append(_Segment(start, widget=widget))
        self._mount(widget)
        self._text_dirty = True

    def _close_segment(self, end: int | None = None) -> None:
        if self.state.segments and self.state.segments[-1].end is None:
            seg = self.state.segments[-1]
            seg.end = len(self.state.text) if end is None else end
            self._text_dirty = True

    def _call_written(self, event: CallWritten) -> None:
        text = self.state.text
        end = min(len(text), event.offset)
        opened = text.rfind("[CALL]", 0, end)
        block_start = opened if opened >= 0 else max(0, end - len(event.raw))
        if event.call_id in self.calls:
            return
        self._close_segment(block_start)
        block = self.calls[event.call_id] = CallBlock(event.call_id, event.name, event.arguments)
        self._touch(block)
        self._mount(block)
        self._new_segment(end)

    def _block(self, call_id: str, name: str, arguments: dict[str, Any]) -> CallBlock:
        """The call's block (made and mounted if no call_written came first), marked changed."""
        block = self.calls.get(call_id)
        if block is None:
            block = self.calls[call_id] = CallBlock(call_id, name, arguments)
            self._close_segment()
            self._mount(block)
            self._new_segment(len(self.state.text))
        elif arguments and not block.arguments:
            block.arguments = arguments
        self._touch(block)
        return block

    def _note(self, text: str) -> None:
        self._close_segment()
        self._mount(Static(Text(text), classes="note"))
        self._new_segment(len(self.state.text))

    # -- drawing ----------------------------------------------------------------------------

    def _repaint(self) -> None:
        """The timer: draw what changed; while the run goes on, tick the clocks now and then.

        It never awaits: what it starts (mounts, Markdown appends) finishes in the background;
        what it costs in all sets how soon the next one may come (``UI_LOOP_SHARE``)."""
        if self._flush_lock.locked():
            return  # a flush() is drawing: this one is coalesced into it
        wall = time.perf_counter()
        if wall - self._painted_at < self.repaint_interval:
            return
        running = self.state.status == "running"
        due = running and time.monotonic() - self._ticked_at >= 1 / TICK_HZ
        if not (self._dirty or self._timeline_dirty or due):
            return
        if self._measuring is not None:  # no relayout came of the last one: its own time
            self._measured(self._draw_s)
        self._painted_at = wall
        self._measuring = []
        self._draw(full=False, started=self._measuring)
        self._draw_s = time.perf_counter() - wall

    async def flush(self, *, full: bool = True) -> None:
        """Draw the state now and wait until it is on the screen's widgets: the new widgets
        mounted, the answer segments updated. ``full`` (the default): also redraw the timeline
        and the running calls' elapsed times now (the repaint timer has them follow at
        ``TIMELINE_HZ`` / ``TICK_HZ``)."""
        async with self._flush_lock:
            if not self.transcript.is_attached:
                return  # not mounted yet: the marks stay for the first repaint
            with self.app.batch_update():  # one relayout for all of it
                for _ in range(10):  # a segment still busy with its last update is drawn again
                    pending = self._draw(full=full)
                    if pending:
                        await asyncio.gather(*pending)
                    if not self._text_dirty or not pending:
                        break
            self.screen.check_idle()

    def _draw(
        self, full: bool, started: list[Callable[[], bool]] | None = None
    ) -> list[Awaitable[Any]]:
        """Update the widgets whose state changed (synchronously); what is left to await (and,
        in ``started``, whether each of those is done)."""
        if not self.transcript.is_attached:
            return []  # not mounted yet: the marks stay for the first repaint
        pending: list[Awaitable[Any]] = []
        self._dirty = False
        wall = time.monotonic()
        now = self.now()
        running = self.state.status == "running"
        self._mounting = [m for m in self._mounting if not all(w.is_mounted for w in m[1])]
        if self._to_mount:
            widgets, self._to_mount = self._to_mount, []
            self._mounting.append((self.transcript.mount_all(widgets), widgets))
            if started is not None:
                started.append(lambda: all(widget.is_mounted for widget in widgets))
        pending.extend(mounting for mounting, _ in self._mounting)  # (a repaint's, not yet)
        if self._follow and self.transcript.max_scroll_y > 0:
            self._follow = False
            self.transcript.anchor()
        if self._text_dirty:
            self._text_dirty = False
            updates = self._draw_segments()
            pending.extend(updates)
            if started is not None:
                started.extend(_done(update) for update in updates)
        tick = full or wall - self._ticked_at >= 1 / TICK_HZ
        if tick:
            self._ticked_at = wall
        blocks, self._dirty_blocks = self._dirty_blocks, {}
        if tick:  # running calls' titles show their elapsed time
            blocks.update((b.call_id, b) for b in self.calls.values() if b.status == "running")
        for block in blocks.values():
            block.redraw(now)
        if (self._timeline_dirty or running or full) and (
            full or not running or wall - self._timeline_at >= 1 / TIMELINE_HZ
        ):
            self._timeline_dirty = False
            self._timeline_at = wall
            self.timeline.refresh_model(now if self.state.done_t is None else None)
        self._draw_status()
        return pending

    def _draw_segments(self) -> list[AwaitComplete]:
        """Start updating the answer segments whose shown text changed; their updates.

        A segment's Markdown is updated once it is mounted and its last update is done (two at
        once would parse from a stale line), else it is left marked for the next repaint."""
        text = self.state.text
        pending: list[AwaitComplete] = []
        for seg in self.state.segments:
            widget = seg.widget
            if seg.final or widget is None:
                continue
            if not widget.is_mounted or (seg.updating is not None and not seg.updating.is_done):
                self._text_dirty = True
                if seg.updating is not None:
                    pending.append(seg.updating)
                continue
            if seg.end is not None:
                seg.final = True
            shown = _display(text[seg.start : seg.end if seg.end is not None else len(text)])
            if shown == seg.shown:
                continue
            before, seg.shown = seg.shown, shown
            visible = bool(shown.strip())
            if widget.display != visible:
                widget.display = visible
            if shown.startswith(before):  # it grew: only its last block is parsed again
                seg.updating = widget.append(shown[len(before) :])
            else:
                seg.updating = widget.update(shown)
            pending.append(seg.updating)
        return pending

    def _draw_status(self) -> None:
        s = self.state
        now = self.now()
        gen_s = (
            (s.last_t if s.done_t is None else s.done_t) - s.first_token_t
            if s.first_token_t is not None
            else 0.0
        )
        rate = s.tokens_out / gen_s if gen_s > 0 else 0.0
        elapsed = f"{now:.2f}s" if now is not None else "–"
        bar = Text()
        bar.append(f" {s.status} ", PILL_STYLES.get(s.status, "black on cyan"))
        bar.append(
            f"  tokens in {s.tokens_in} out {s.tokens_out}  {rate:.0f} tok/s"
            f"  calls running {s.calls_running} done {s.calls_done}"
            f"  interrupts {s.interrupts}  elapsed {elapsed}"
        )
        saved = self.saved_s()
        if saved is not None:
            bar.append(f"  saved {saved:.2f}s vs sync", "green" if saved > 0 else "")
        self.status_bar.show(bar)

    def saved_s(self) -> float | None:
        """The time this run saved against the sync bound of the latency model so far:
        ``ΣG + ΣE`` (the decode lane's active time plus the finished calls' run times) minus
        the time from the first token to now. None before a call has finished."""
        s = self.state
        now = self.now()
        if s.calls_done == 0 or s.first_token_t is None or now is None:
            return None
        lane = self.timeline.model.lanes.get("decode")
        spans = lane.intervals if lane is not None else []
        generating = sum((i.end if i.end is not None else now) - i.start for i in spans)
        return generating + s.tool_time_s - (now - s.first_token_t)


class RunScreen(Screen[None]):
    """Type a prompt, watch the run; type again while it writes to interrupt it."""

    AUTO_FOCUS = "#prompt"  # typing goes to the prompt, not to the transcript

    BINDINGS: ClassVar[list[BindingType]] = [
        # priority: the prompt has the focus, and its own ctrl+k / ctrl+e would take them
        Binding("escape", "cancel_run", "Cancel run", priority=True),
        Binding("ctrl+k", "cancel_call", "Cancel call", priority=True),
        Binding("ctrl+e", "toggle_calls", "Expand calls", priority=True),
    ]

    def __init__(self, agent: Agent | None, *, clock: Callable[[], float]) -> None:
        super().__init__(id="run")
        self.agent = agent
        self.clock = clock
        self.view = RunView(clock=clock, id="run-view")
        self.handle: RunHandle | None = None
        self._pump: asyncio.Task[None] | None = None

    def compose(self) -> ComposeResult:
        yield self.view
        yield Input(
            placeholder="Ask the agent… (type while it writes to interrupt it)", id="prompt"
        )
        yield Footer()

    @property
    def running(self) -> bool:
        return self.handle is not None and not self.handle.done

    async def on_input_submitted(self, message: Input.Submitted) -> None:
        text = message.value.strip()
        message.input.value = ""
        if not text:
            return
        if self.running and self.handle is not None:
            try:
                self.handle.interrupt(text)
            except Exception as exc:  # the run just ended, or empty text
                self.notify(str(exc), severity="warning")
            return
        self.start_run(text)

    def start_run(self, prompt: str) -> None:
        if self.agent is None:
            self.notify("No agent: start `counterpoint tui` with --model.", severity="error")
            return
        # what is alive now (the app, a loaded model's modules and weights) leaves the cyclic
        # collector's reach while the run goes on: a full collection of it mid-run stalls the
        # loop for 100+ ms. The run's end gives it back (gc.unfreeze), so nothing leaks.
        gc.freeze()
        try:
            self.handle = self.agent.start(prompt)
        except Exception as exc:  # a model that fails to load: a message, not a traceback
            gc.unfreeze()
            self.notify(f"could not start the run: {exc}", severity="error")
            return
        self._pump = asyncio.get_running_loop().create_task(self._read(self.handle))

    async def _read(self, handle: RunHandle) -> None:
        try:
            async for event in handle:
                self.view.feed(event)
                await asyncio.sleep(0)
        finally:
            try:
                await handle.result()
            except asyncio.CancelledError:
                if not handle.done:  # this reader itself is being cancelled
                    raise
            except Exception:  # the run's own failure: its done event says so
                pass
            finally:
                gc.unfreeze()
            await self.view.flush()

    async def wait_run(self) -> None:
        """Wait for the current run to end and its last events to be drawn."""
        if self._pump is not None:
            with contextlib.suppress(Exception):
                await self._pump

    def action_cancel_run(self) -> None:
        """Cancel the run (in the background: the screen keeps drawing its last events)."""
        if self.handle is None or self.handle.done:
            self.notify("No run is going.", severity="information")
            return
        self.run_worker(self.cancel_run(), group="cancel", exclusive=True)

    async def cancel_run(self) -> None:
        if self.handle is not None and not self.handle.done:
            await self.handle.cancel()
            await self.wait_run()
            self.notify("Run cancelled.")

    def action_cancel_call(self) -> None:
        """Cancel one running tool call: the focused one, else the latest started; the model
        gets a ``cancelled`` result and goes on."""
        running = [b for b in self.view.calls.values() if b.status == "running"]
        if self.handle is None or self.handle.done or not running:
            self.notify("No tool call is running.", severity="information")
            return
        focused = self.focused
        chosen = next(
            (b for b in running if focused is not None and b in focused.ancestors_with_self), None
        )
        block = chosen or max(running, key=lambda b: b.started_t or 0.0)
        if self.handle.cancel_call(block.call_id):
            self.notify(f"Cancelled {block.call_id} {block.call_name}.")

    def action_toggle_calls(self) -> None:
        blocks = list(self.view.calls.values())
        expand = any(block.collapsed for block in blocks)
        for block in blocks:
            block.collapsed = not expand
