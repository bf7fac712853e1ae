"""The run screen: a prompt, the answer streaming, call blocks, the timeline and a status bar.

Every widget is fed by :meth:`RunView.feed` with the run's events and nothing else; the screen
starts runs and forwards what the user types while the model writes as user interrupts. Repaints
are coalesced: events only change state, a timer redraws at most ``REPAINT_HZ`` times a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
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


def _display(text: str) -> str:
    """The answer without protocol markup: traps, and a call block still being written."""
    text = _TRAP.sub("", text)
    opened = text.find("[CALL]")
    if opened >= 0:
        text = text[:opened]
    return text.lstrip("\n") if not text.strip() else text


class CallBlock(Collapsible):
    """One call: a status pill in its title, its arguments and result inside."""

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
        super().__init__(
            self._call_body, title=self._title_text(), collapsed=True, id=f"call-{call_id}"
        )

    def _title_text(self, now: float | None = None) -> str:
        elapsed = self.elapsed_s
        if self.status == "running" and self.started_t is not None and now is not None:
            elapsed = max(0.0, now - self.started_t)
        when = f" {elapsed:.2f}s" if elapsed is not None else ""
        extra = f" · {self.progress}" if self.progress and self.status == "running" else ""
        return (
            f"[{self.status}{when}] {self.call_id} {self.call_name}({_args(self.arguments)}){extra}"
        )

    def redraw(self, now: float | None = None) -> None:
        self.title = self._title_text(now)
        self.set_classes(f"-{self.status}")
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
        self._call_body.update(body)


class StatusBar(Static):
    DEFAULT_CSS = """
    StatusBar { height: 1; background: $panel; color: $text; padding: 0 1; }
    """


@dataclass
class _Segment:
    start: int
    end: int | None = None
    widget: Markdown | None = None
    shown: str = ""


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
    interrupts: int = 0
    text: str = ""
    segments: list[_Segment] = field(default_factory=list)


class RunView(Vertical):
    """The transcript, the timeline and the status bar of the current run (fed events)."""

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

    def compose(self) -> ComposeResult:
        yield self.transcript
        yield self.timeline
        yield self.status_bar

    def on_mount(self) -> None:
        self.set_interval(1 / REPAINT_HZ, self._repaint)
        self._draw_status()

    def now(self) -> float | None:
        """The current run time (seconds since run_started), from the injected clock."""
        if self.state.done_t is not None:
            return self.state.done_t
        if self._run_clock0 is None:
            return None
        return max(self.state.last_t, self.clock() - self._run_clock0)

    # -- events -----------------------------------------------------------------------------

    def feed(self, event: BaseEvent) -> None:
        """Fold one event into the state; widgets are created here, redrawn by the timer."""
        state = self.state
        state.last_t = max(state.last_t, event.t)
        self.timeline.model.apply(event)
        self._dirty = True
        if isinstance(event, RunStarted):
            self.state = RunState(run_id=event.run_id, status="running", last_t=event.t)
            self.timeline.model.reset()
            self.timeline.model.apply(event)
            self._run_clock0 = self.clock() - event.t
            self.calls = {}
            self.transcript.mount(Static(Text(f"› {event.prompt}"), classes="prompt"))
            self._new_segment(0)
        elif isinstance(event, TokenEvent):
            state.tokens_out += 1
            if state.first_token_t is None:
                state.first_token_t = event.t
            state.text += event.text
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
            self.transcript.mount(
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
            if event.error and event.status != "ok":
                self._note(f"■ {event.status}: {event.error}")
            else:
                self._note(f"■ {event.status} in {event.t:.2f}s")

    def _new_segment(self, start: int) -> None:
        widget = Markdown("", classes="answer")
        self.state.segments.append(_Segment(start, widget=widget))
        self.transcript.mount(widget)

    def _close_segment(self, end: int | None = None) -> None:
        if self.state.segments and self.state.segments[-1].end is None:
            seg = self.state.segments[-1]
            seg.end = len(self.state.text) if end is None else end

    def _call_written(self, event: CallWritten) -> None:
        text = self.state.text
        end = min(len(text), event.offset)
        opened = text.rfind("[CALL]", 0, end)
        block_start = opened if opened >= 0 else max(0, end - len(event.raw))
        if event.call_id in self.calls:
            return
        self._close_segment(block_start)
        block = self.calls[event.call_id] = CallBlock(event.call_id, event.name, event.arguments)
        self.transcript.mount(block)
        self._new_segment(end)

    def _block(self, call_id: str, name: str, arguments: dict[str, Any]) -> CallBlock:
        block = self.calls.get(call_id)
        if block is None:
            block = self.calls[call_id] = CallBlock(call_id, name, arguments)
            self._close_segment()
            self.transcript.mount(block)
            self._new_segment(len(self.state.text))
        elif arguments and not block.arguments:
            block.arguments = arguments
        return block

    def _note(self, text: str) -> None:
        self._close_segment()
        self.transcript.mount(Static(Text(text), classes="note"))
        self._new_segment(len(self.state.text))

    # -- drawing ----------------------------------------------------------------------------

    async def _repaint(self) -> None:
        running = self.state.status == "running"
        if not self._dirty and not running:
            return
        self._dirty = False
        await self.flush()

    async def flush(self) -> None:
        """Redraw everything from the state now (the timer does this ~20 times a second)."""
        now = self.now()
        text = self.state.text
        for seg in self.state.segments:
            shown = _display(text[seg.start : seg.end if seg.end is not None else len(text)])
            if seg.widget is not None and shown != seg.shown:
                seg.shown = shown
                seg.widget.display = bool(shown.strip())
                await seg.widget.update(shown)
        for block in self.calls.values():
            block.redraw(now)
        self.timeline.refresh_model(now if self.state.done_t is None else None)
        self._draw_status()
        if self.state.status == "running":
            self.transcript.scroll_end(animate=False)

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
        self.status_bar.update(bar)


class RunScreen(Screen[None]):
    """Type a prompt, watch the run; type again while it writes to interrupt it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel_run", "Cancel run"),
        Binding("ctrl+k", "cancel_call", "Cancel call"),
        Binding("ctrl+e", "toggle_calls", "Expand calls"),
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
        try:
            self.handle = self.agent.start(prompt)
        except Exception as exc:  # a model that fails to load: a message, not a traceback
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
